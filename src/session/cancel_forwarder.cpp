// CancelForwarder: delivers one CancelRequest to one or more nodes, then releases the client.
#include "session/cancel_forwarder.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cstring>

#include "core/socket.h"

namespace pgkeel::session {

CancelForwarder::CancelForwarder(core::EventLoop& loop, core::Fd client, protocol::CancelKey key,
                                 std::vector<discovery::Endpoint> targets,
                                 std::chrono::milliseconds timeout,
                                 std::function<void(CancelForwarder*)> done)
    : loop_(loop),
      client_(std::move(client)),
      packet_(protocol::cancelRequestBytes(key)),
      timeout_(timeout),
      done_(std::move(done)) {
  for (auto& target : targets) {
    auto attempt = std::make_unique<Attempt>();
    attempt->owner = this;
    attempt->target = std::move(target);
    attempts_.push_back(std::move(attempt));
  }
}

CancelForwarder::~CancelForwarder() {
  loop_.cancelTimer(timer_);
  for (auto& attempt : attempts_)
    if (attempt->fd) loop_.remove(attempt->fd.get());
}

void CancelForwarder::start() {
  for (auto& attempt : attempts_) {
    std::string error;
    auto address = core::resolve(attempt->target.host, attempt->target.port, &error);
    auto started = address ? core::connectNonBlocking(*address) : core::ConnectStart{};
    if (!started.fd) {
      spdlog::debug("cancel: cannot reach {}: {}", attempt->target.str(),
                    address ? std::strerror(started.error) : error);
      continue;
    }
    attempt->fd = std::move(started.fd);
    loop_.add(attempt->fd.get(), EPOLLOUT, attempt.get());
    ++open_;
  }
  if (open_ == 0) return finishAll();
  timer_ = loop_.addTimer(timeout_, [this] {
    timer_ = 0;
    finishAll();
  });
}

void CancelForwarder::Attempt::onIo(std::uint32_t events) {
  if (core::connectError(fd.get()) == 0) {
    const auto n = ::send(fd.get(), owner->packet_.data(), owner->packet_.size(), MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(owner->packet_.size()))
      spdlog::debug("cancel: short write to {}", target.str());
  } else {
    spdlog::debug("cancel: connect to {} failed", target.str());
  }
  owner->finish(*this);
}

void CancelForwarder::finish(Attempt& attempt) {
  loop_.remove(attempt.fd.get());
  attempt.fd.reset();
  if (--open_ == 0) finishAll();
}

void CancelForwarder::finishAll() {
  if (finished_) return;
  finished_ = true;
  client_.reset();
  done_(this);
}

}  // namespace pgkeel::session
