// CancelRegistry: which node issued each cancel key, so a CancelRequest reaches the right server.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "discovery/endpoint.h"
#include "protocol/startup.h"

namespace pgkeel::session {

// Shared by all workers; touched at session start-up, session end and cancel, never per message.
class CancelRegistry {
 public:
  void add(const protocol::CancelKey& key, const discovery::Endpoint& node);
  void remove(const protocol::CancelKey& key);
  std::optional<discovery::Endpoint> find(const protocol::CancelKey& key) const;
  std::size_t size() const;

 private:
  static std::string pack(const protocol::CancelKey& key);
  mutable std::mutex mutex_;
  std::unordered_map<std::string, discovery::Endpoint> nodes_;
};

}  // namespace pgkeel::session
