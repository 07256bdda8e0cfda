// Acceptor: one listening socket of one worker; hands accepted clients to its SessionManager.
#include "session/acceptor.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "session/session_manager.h"

namespace pgkeel::session {

Acceptor::Acceptor(SessionManager& manager, core::Fd listener, router::ListenerRole role)
    : manager_(manager), listener_(std::move(listener)), role_(role) {
  manager_.loop().add(listener_.get(), EPOLLIN, this);
}

Acceptor::~Acceptor() {
  close();
}

void Acceptor::close() {
  manager_.loop().cancelTimer(resume_);
  resume_ = 0;
  if (listener_) manager_.loop().remove(listener_.get());
  listener_.reset();
}

void Acceptor::drainAndClose() {
  while (listener_) {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    manager_.adopt(core::Fd(fd), peer, role_);
  }
  close();
}

void Acceptor::onIo(std::uint32_t) {
  if (!listener_) return;
  // Bounded so one busy listener cannot starve the sessions of this worker.
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      manager_.adopt(core::Fd(fd), peer, role_);
      continue;
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
      pauseAfterFdExhaustion();
    return;  // EAGAIN, or a connection that died in the queue
  }
}

// Out of descriptors: stop polling the listener for a moment instead of spinning on it.
void Acceptor::pauseAfterFdExhaustion() {
  spdlog::warn("accept on {} listener failed: {}; pausing accepts for 100 ms",
               router::toString(role_), std::strerror(errno));
  manager_.loop().remove(listener_.get());
  resume_ = manager_.loop().addTimer(std::chrono::milliseconds(100), [this] {
    resume_ = 0;
    manager_.loop().add(listener_.get(), EPOLLIN, this);
  });
}

}  // namespace pgkeel::session
