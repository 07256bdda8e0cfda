// Acceptor: one listening socket of one worker; hands accepted clients to its SessionManager.
#pragma once

#include "core/event_loop.h"
#include "core/fd.h"
#include "router/routing_policy.h"

namespace pgkeel::session {

class SessionManager;

class Acceptor : public core::IoHandler {
 public:
  Acceptor(SessionManager& manager, core::Fd listener, router::ListenerRole role);
  ~Acceptor();
  void onIo(std::uint32_t events) override;
  // Stops listening now; the object may still receive an event of the current batch (ignored).
  void close();
  // Accepts what waits in the queue now (so a moved listener loses no queued client), then closes.
  void drainAndClose();
  router::ListenerRole role() const { return role_; }

 private:
  void pauseAfterFdExhaustion();

  SessionManager& manager_;
  core::Fd listener_;
  router::ListenerRole role_;
  core::EventLoop::TimerId resume_ = 0;
};

}  // namespace pgkeel::session
