// NodeLoad: active server connections per node, shared by all workers without locks.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "discovery/endpoint.h"

namespace pgkeel::pool {

class NodeLoad {
 public:
  void acquire(discovery::NodeId id) { slot(id).fetch_add(1, std::memory_order_relaxed); }
  void release(discovery::NodeId id) { slot(id).fetch_sub(1, std::memory_order_relaxed); }
  std::int32_t active(discovery::NodeId id) const {
    return active_[id % discovery::kMaxNodes].load(std::memory_order_relaxed);
  }

 private:
  std::atomic<std::int32_t>& slot(discovery::NodeId id) {
    return active_[id % discovery::kMaxNodes];
  }
  std::array<std::atomic<std::int32_t>, discovery::kMaxNodes> active_{};
};

}  // namespace pgkeel::pool
