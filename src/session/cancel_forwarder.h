// CancelForwarder: delivers one CancelRequest to one or more nodes, then releases the client.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "core/event_loop.h"
#include "core/fd.h"
#include "discovery/endpoint.h"
#include "protocol/startup.h"

namespace pgkeel::session {

// Like PostgreSQL, the client's connection is closed only once the request was handed to the
// server(s), so a client that waits for the close knows the cancel was delivered.
class CancelForwarder {
 public:
  CancelForwarder(core::EventLoop& loop, core::Fd client, protocol::CancelKey key,
                  std::vector<discovery::Endpoint> targets, std::chrono::milliseconds timeout,
                  std::function<void(CancelForwarder*)> done);
  ~CancelForwarder();
  void start();

 private:
  struct Attempt : core::IoHandler {
    CancelForwarder* owner = nullptr;
    discovery::Endpoint target;
    core::Fd fd;
    void onIo(std::uint32_t events) override;
  };
  void finish(Attempt& attempt);
  void finishAll();

  core::EventLoop& loop_;
  core::Fd client_;
  std::vector<std::uint8_t> packet_;
  std::vector<std::unique_ptr<Attempt>> attempts_;
  std::chrono::milliseconds timeout_;
  std::function<void(CancelForwarder*)> done_;
  std::size_t open_ = 0;
  core::EventLoop::TimerId timer_ = 0;
  bool finished_ = false;
};

}  // namespace pgkeel::session
