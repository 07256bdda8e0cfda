// Session: one client connection and its server connection, from start-up packet to close.
#include "session/session.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/socket.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"
#include "session/session_manager.h"

namespace pgkeel::session {
namespace {

using namespace std::chrono_literals;
using core::Clock;
using core::SplicePump;

constexpr std::uint32_t kRead = EPOLLIN;
constexpr std::uint32_t kWrite = EPOLLOUT;
constexpr std::uint32_t kHangup = EPOLLRDHUP;  // while the client only waits for us
constexpr std::size_t kReadChunk = 16384;

long long millisSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

std::chrono::milliseconds until(Clock::time_point deadline) {
  return std::max(0ms, std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()));
}

}  // namespace

const char* toString(Session::State state) {
  switch (state) {
    case Session::State::ReadingStartup:
      return "reading_startup";
    case Session::State::WaitingForNode:
      return "waiting_for_node";
    case Session::State::Connecting:
      return "connecting";
    case Session::State::ConnectBackoff:
      return "connect_backoff";
    case Session::State::AwaitingEncryptionAnswer:
      return "awaiting_encryption_answer";
    case Session::State::Authenticating:
      return "authenticating";
    case Session::State::Streaming:
      return "streaming";
    case Session::State::Closing:
      return "closing";
    case Session::State::Closed:
      return "closed";
  }
  return "?";
}

Session::Session(SessionManager& manager, std::uint64_t id, core::Fd client,
                 const sockaddr_storage& peer, router::ListenerRole role)
    : manager_(manager),
      id_(id),
      role_(role),
      client_(std::move(client)),
      peer_(peer),
      started_(Clock::now()) {}

Session::~Session() = default;

void Session::Side::onIo(std::uint32_t events) {
  if (client)
    session->onClientIo(events);
  else
    session->onServerIo(events);
  if (session->state_ != State::Closed) session->updateInterest();
}

void Session::start(std::string refusal) {
  refusal_ = std::move(refusal);
  core::setNoDelay(client_.get());
  core::setKeepalive(client_.get(), manager_.settings().tcpKeepalive);
  clientInterest_ = kRead;
  manager_.loop().add(client_.get(), clientInterest_, &clientSide_);
  setTimer(manager_.settings().loginTimeout, &Session::onLoginTimeout);
}

// Like PostgreSQL's authentication_timeout for the part pgkeel serves: a silent client goes.
void Session::onLoginTimeout() {
  close(CloseReason::LoginTimeout);
}

// ---- client side ---------------------------------------------------------------------------

void Session::onClientIo(std::uint32_t events) {
  switch (state_) {
    case State::ReadingStartup:
      return readStartup();
    case State::Authenticating:
    case State::Streaming:
      // A reset: what the pipes still hold cannot be delivered, and level-triggered ERR repeats.
      if (events & EPOLLERR) return close(CloseReason::ClientError);
      if (events & kWrite) onClientWritable();
      if (state_ != State::Closed && (events & (kRead | EPOLLHUP | EPOLLERR))) pumpClientToServer();
      return;
    case State::Closing:
      if (flushToClient() || (events & (EPOLLHUP | EPOLLERR))) close(closingReason_);
      return;
    default:  // the client hung up while waiting for a node or a connection
      return close(CloseReason::ClientClosed);
  }
}

void Session::onClientWritable() {
  if (!flushToClient() || state_ != State::Streaming) return;
  if (serverToClient_->flush(client_.get()) == SplicePump::Status::DestError)
    close(CloseReason::ClientError);
}

void Session::readStartup() {
  const std::size_t have = startupBytes_.size();
  startupBytes_.resize(have + 4096);
  const ssize_t n = ::recv(client_.get(), startupBytes_.data() + have, 4096, 0);
  startupBytes_.resize(have + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
  if (n == 0) return close(CloseReason::ClientClosed);
  if (n < 0) {
    if (errno != EAGAIN && errno != EINTR) close(CloseReason::ClientError);
    return;
  }
  const auto parsed = protocol::parseStartup(startupBytes_);
  if (parsed.status == protocol::ParseStatus::NeedMore) return;
  if (parsed.status == protocol::ParseStatus::Invalid)
    return failWith(CloseReason::BadStartup, protocol::sqlstate::kProtocolViolation, parsed.error);
  if (parsed.packet.kind != protocol::StartupKind::Startup && parsed.length != startupBytes_.size())
    return failWith(CloseReason::BadStartup, protocol::sqlstate::kProtocolViolation,
                    "unexpected data after an encryption request");
  handleStartupPacket(parsed);
}

void Session::handleStartupPacket(const protocol::StartupParse& parsed) {
  clearTimer();
  startupKind_ = parsed.packet.kind;
  // Like PostgreSQL over max_connections: cancels still pass; the refusal answers the
  // StartupMessage (after an 'N' to an encryption request, see failWith).
  if (!refusal_.empty() && startupKind_ != protocol::StartupKind::CancelRequest) {
    deferredError_ = DeferredError{CloseReason::TooManyClients,
                                   protocol::sqlstate::kTooManyConnections, std::move(refusal_)};
    refusal_.clear();
  }
  if (deferredError_ && startupKind_ != protocol::StartupKind::CancelRequest) {
    auto error = std::move(*deferredError_);
    deferredError_.reset();
    return failWith(error.reason, error.state, std::move(error.message));
  }
  if (startupKind_ == protocol::StartupKind::CancelRequest) {
    manager_.loop().remove(client_.get());
    manager_.forwardCancel(std::move(client_), parsed.packet.cancelKey);
    return close(CloseReason::CancelForwarded);
  }
  if (server_) return sendStartupToServer();  // after the server refused encryption
  route();
}

// Adds what the pumps moved since the last call to the worker's byte counters, so /metrics shows
// long sessions' traffic while it flows.
void Session::countMoved() {
  auto& counters = manager_.counters();
  if (clientToServer_ && clientToServer_->moved() != countedToServer_) {
    WorkerCounters::bump(counters.bytesClientToServer, clientToServer_->moved() - countedToServer_);
    countedToServer_ = clientToServer_->moved();
  }
  if (serverToClient_ && serverToClient_->moved() != countedToClient_) {
    WorkerCounters::bump(counters.bytesServerToClient, serverToClient_->moved() - countedToClient_);
    countedToClient_ = serverToClient_->moved();
  }
}

void Session::pumpClientToServer() {
  SplicePump::Status status = clientToServer_->pump(client_.get(), server_.get());
  countMoved();
  switch (status) {
    case SplicePump::Status::Idle:
    case SplicePump::Status::DestBlocked:
      return;
    case SplicePump::Status::SourceClosed:
      return close(CloseReason::ClientClosed);
    case SplicePump::Status::SourceError:
      return close(CloseReason::ClientError);
    case SplicePump::Status::DestError:
      return close(CloseReason::ServerError);
  }
}

// Sends toClient_; true when it is empty. On a socket error the session is closed.
bool Session::flushToClient() {
  while (!toClient_.empty()) {
    const ssize_t n = ::send(client_.get(), toClient_.data(), toClient_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      toClient_.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
    close(CloseReason::ClientError);
    return false;
  }
  return true;
}

// ---- routing and connecting ------------------------------------------------------------------

void Session::route() {
  const discovery::RoutingTablePtr table = manager_.shared().tables.load();
  const auto decision = router::chooseNode(role_, *table, manager_.shared().load,
                                           manager_.settings().route, failedNodes_);
  if (!decision.node) return waitForNode(decision.missing);
  fallback_ = decision.fallback;
  connectTo(*decision.node);
}

void Session::waitForNode(const std::string& missing) {
  const auto now = Clock::now();
  // connect_timeout bounds the attempts at one node choice; a new node after the wait gets its own.
  connectDeadline_.reset();
  connectAttempts_ = 0;
  if (!waitDeadline_) {
    waitDeadline_ = now + manager_.settings().primaryWait;
    WorkerCounters::bump(manager_.counters().waited[static_cast<std::size_t>(role_)]);
    spdlog::debug("{}: waiting up to {} ms: {}", describe(),
                  manager_.settings().primaryWait.count(), missing);
  }
  if (now >= *waitDeadline_)
    return failWith(CloseReason::NoNode, protocol::sqlstate::kCannotConnectNow,
                    "pgkeel: " + missing + " (waited " + std::to_string(millisSince(started_)) +
                        " ms for a " + router::toString(role_) + " node)");
  state_ = State::WaitingForNode;
  setTimer(until(*waitDeadline_), &Session::onWaitExpired);
}

void Session::onWaitExpired() {
  route();
}

void Session::connectTo(const discovery::NodeState& node) {
  if (!connectDeadline_) connectDeadline_ = Clock::now() + manager_.settings().connectTimeout;
  // The address the probe verified (numeric: no DNS on a worker); the name before any probe.
  nodeEndpoint_ = {node.address.empty() ? node.endpoint.host : node.address, node.endpoint.port};
  node_ = node.id;
  manager_.shared().load.acquire(node.id);
  std::string error;
  auto address = core::resolve(nodeEndpoint_.host, nodeEndpoint_.port, &error);
  if (!address) return retryConnect(error);
  connectStarted_ = Clock::now();
  auto started = core::connectNonBlocking(*address);
  if (!started.fd) return retryConnect(std::strerror(started.error));
  server_ = std::move(started.fd);
  state_ = State::Connecting;
  serverInterest_ = kWrite;
  manager_.loop().add(server_.get(), serverInterest_, &serverSide_);
  if (!started.inProgress) return onConnected();
  setTimer(std::min(until(*connectDeadline_), manager_.settings().connectTimeout),
           &Session::onConnectTimeout);
}

void Session::onConnectTimeout() {
  retryConnect("timed out");
}

void Session::onConnectResult(int error) {
  if (error != 0) return retryConnect(std::strerror(error));
  onConnected();
}

void Session::retryConnect(const std::string& why) {
  spdlog::debug("{}: connect to {} failed: {}", describe(), nodeEndpoint_.str(), why);
  if (node_) {
    failedNodes_.push_back(*node_);
    WorkerCounters::bump(manager_.counters().serverFailed[*node_ % discovery::kMaxNodes]);
  }
  manager_.shared().nodeSuspect();
  detachServer();
  clearTimer();
  if (Clock::now() >= *connectDeadline_)
    return failWith(CloseReason::ConnectFailed, protocol::sqlstate::kConnectionFailure,
                    "pgkeel: could not connect to " + std::string(router::toString(role_)) +
                        " node " + nodeEndpoint_.str() + ": " + why);
  ++connectAttempts_;
  const auto backoff =
      std::min<std::chrono::milliseconds>(25ms * (1 << std::min(connectAttempts_, 6)), 1s);
  state_ = State::ConnectBackoff;
  setTimer(std::min(backoff, until(*connectDeadline_)), &Session::route);
}

void Session::onConnected() {
  clearTimer();
  WorkerCounters::bump(manager_.counters().serverOpened[*node_ % discovery::kMaxNodes]);
  manager_.counters().observeConnect(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - connectStarted_)
          .count()));
  core::setNoDelay(server_.get());
  core::setKeepalive(server_.get(), manager_.settings().tcpKeepalive);
  core::Pipe pipe = manager_.pipes().take();
  if (!pipe.valid()) {
    spdlog::error("{}: cannot create a pipe: {}", describe(), std::strerror(errno));
    return failWith(CloseReason::ServerError, protocol::sqlstate::kConnectionFailure,
                    "pgkeel: out of resources (pipe)");
  }
  clientToServer_.emplace(std::move(pipe));
  sendStartupToServer();
}

void Session::sendStartupToServer() {
  // At most 10000 bytes on a fresh socket: it fits the send buffer in one call.
  const ssize_t n = ::send(server_.get(), startupBytes_.data(), startupBytes_.size(), MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(startupBytes_.size()))
    return retryConnect(n < 0 ? std::strerror(errno) : "short write of the start-up packet");
  startupBytes_.clear();
  startupBytes_.shrink_to_fit();
  state_ = startupKind_ == protocol::StartupKind::Startup ? State::Authenticating
                                                          : State::AwaitingEncryptionAnswer;
}

void Session::detachServer() {
  if (server_) {
    manager_.loop().remove(server_.get());
    server_.reset();
  }
  serverInterest_ = 0;
  if (node_) manager_.shared().load.release(*node_);
  node_.reset();
}

// ---- server side -----------------------------------------------------------------------------

void Session::onServerIo(std::uint32_t events) {
  switch (state_) {
    case State::Connecting:
      return onConnectResult(core::connectError(server_.get()));
    case State::AwaitingEncryptionAnswer:
      return readEncryptionAnswer();
    case State::Authenticating:
    case State::Streaming:
      if (events & EPOLLERR) return close(CloseReason::ServerError);
      if ((events & kWrite) &&
          clientToServer_->flush(server_.get()) == SplicePump::Status::DestError)
        return close(CloseReason::ServerError);
      if (!(events & (kRead | EPOLLHUP | EPOLLERR))) return;
      if (state_ == State::Authenticating) return readAuthenticating();
      return pumpServerToClient();
    default:  // connected but not read from (the client is choosing its next packet)
      if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) close(CloseReason::ServerClosed);
      return;
  }
}

void Session::readEncryptionAnswer() {
  char answer = 0;
  const ssize_t n = ::recv(server_.get(), &answer, 1, 0);
  if (n == 0) return close(CloseReason::ServerClosed);
  if (n < 0) {
    if (errno != EAGAIN && errno != EINTR) close(CloseReason::ServerError);
    return;
  }
  toClient_.push_back(answer);
  if (answer == protocol::kEncryptionRefused) {
    state_ = State::ReadingStartup;  // the client sends its next packet in plaintext
    startupKind_ = protocol::StartupKind::Startup;
    setTimer(manager_.settings().loginTimeout, &Session::onLoginTimeout);
  } else {
    startStreaming();  // TLS or GSS end to end between client and server
  }
  flushToClient();
}

void Session::readAuthenticating() {
  std::uint8_t buffer[kReadChunk];
  const ssize_t n = ::recv(server_.get(), buffer, sizeof buffer, 0);
  if (n == 0) {
    flushToClient();  // usually an authentication ErrorResponse
    return close(CloseReason::ServerClosed);
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EINTR) close(CloseReason::ServerError);
    return;
  }
  const auto feed = scanner_.feed({buffer, static_cast<std::size_t>(n)});
  toClient_.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(n));
  if (feed.state == protocol::BackendScanner::State::Invalid) {
    spdlog::warn("{}: {}", describe(), scanner_.invalidReason());
    return close(CloseReason::BadServerMessage);
  }
  if (feed.state == protocol::BackendScanner::State::Ready) {
    cancelKey_ = scanner_.cancelKey();
    if (cancelKey_) manager_.shared().cancels.add(*cancelKey_, nodeEndpoint_);
    startStreaming();
  }
  flushToClient();
}

void Session::startStreaming() {
  state_ = State::Streaming;
  if (!clientToServer_) clientToServer_.emplace(manager_.pipes().take());
  serverToClient_.emplace(manager_.pipes().take());
}

void Session::pumpServerToClient() {
  if (!flushToClient()) return;
  SplicePump::Status status = serverToClient_->pump(server_.get(), client_.get());
  countMoved();
  switch (status) {
    case SplicePump::Status::Idle:
    case SplicePump::Status::DestBlocked:
      return;
    case SplicePump::Status::SourceClosed:
      return close(CloseReason::ServerClosed);
    case SplicePump::Status::SourceError:
      return close(CloseReason::ServerError);
    case SplicePump::Status::DestError:
      return close(CloseReason::ClientError);
  }
}

// ---- table changes, errors, timers, interest, close ------------------------------------------

void Session::onTable(const discovery::RoutingTable& table) {
  if (state_ == State::WaitingForNode) {
    clearTimer();
    route();
  } else if (node_ && state_ != State::Closing && state_ != State::Closed) {
    const auto verdict = router::reviewSession(role_, *node_, fallback_, table);
    if (verdict == router::Verdict::NodeDemoted)
      state_ == State::Connecting ? retryConnect("node demoted") : close(CloseReason::NodeDemoted);
    else if (verdict == router::Verdict::NodePromoted)
      state_ == State::Connecting ? retryConnect("node promoted")
                                  : close(CloseReason::NodePromoted);
    else if (verdict == router::Verdict::NodeLeft)
      state_ == State::Connecting ? retryConnect("node left") : close(CloseReason::NodeLeft);
  }
  if (state_ != State::Closed) updateInterest();
}

void Session::failWith(CloseReason reason, const protocol::SqlState& state, std::string message) {
  detachServer();
  clearTimer();
  if (startupKind_ == protocol::StartupKind::SslRequest ||
      startupKind_ == protocol::StartupKind::GssEncRequest) {
    // libpq discards an ErrorResponse sent in answer to an encryption request (CVE-2024-10977),
    // so, like PostgreSQL, refuse encryption and send the error after the StartupMessage.
    deferredError_ = DeferredError{reason, state, std::move(message)};
    toClient_.push_back(protocol::kEncryptionRefused);
    startupBytes_.clear();
    state_ = State::ReadingStartup;
    startupKind_ = protocol::StartupKind::Startup;
    closingReason_ = reason;
    flushToClient();
    if (state_ != State::Closed) setTimer(5s, &Session::onClosingTimeout);
    return;
  }
  const auto level = reason == CloseReason::BadStartup ? spdlog::level::info : spdlog::level::warn;
  spdlog::log(level, "{}: {} ({} {})", describe(), message, state.code, toString(reason));
  protocol::ErrorFields fields;
  fields.sqlState = state;
  fields.message = std::move(message);
  toClient_ += protocol::errorResponse(fields);
  closingReason_ = reason;
  state_ = State::Closing;
  if (flushToClient()) return close(reason);
  if (state_ != State::Closed) setTimer(1s, &Session::onClosingTimeout);
}

void Session::onClosingTimeout() {
  close(closingReason_);
}

void Session::setTimer(std::chrono::milliseconds after, void (Session::*handler)()) {
  clearTimer();
  timer_ = manager_.loop().addTimer(after, [this, handler] {
    timer_ = 0;
    (this->*handler)();
    if (state_ != State::Closed) updateInterest();
  });
}

void Session::clearTimer() {
  if (timer_) manager_.loop().cancelTimer(timer_);
  timer_ = 0;
}

void Session::updateInterest() {
  std::uint32_t client = 0, server = 0;
  const bool upBlocked = clientToServer_ && clientToServer_->pending() > 0;
  const bool downBlocked =
      !toClient_.empty() || (serverToClient_ && serverToClient_->pending() > 0);
  switch (state_) {
    case State::ReadingStartup:  // after the server's 'N', notice it hanging up
      client = kRead, server = kHangup;
      break;
    case State::WaitingForNode:
    case State::ConnectBackoff:
      client = kHangup;
      break;
    case State::Connecting:
      client = kHangup, server = kWrite;
      break;
    case State::AwaitingEncryptionAnswer:
      client = kHangup, server = kRead;
      break;
    case State::Authenticating:
    case State::Streaming:
      client = (upBlocked ? 0 : kRead) | (downBlocked ? kWrite : 0);
      server = (downBlocked ? 0 : kRead) | (upBlocked ? kWrite : 0);
      break;
    case State::Closing:
      client = kWrite;
      break;
    case State::Closed:
      return;
  }
  setInterest(client_.get(), clientInterest_, client, &clientSide_);
  if (server_) setInterest(server_.get(), serverInterest_, server, &serverSide_);
}

void Session::setInterest(int fd, std::uint32_t& current, std::uint32_t wanted,
                          core::IoHandler* handler) {
  if (current == wanted) return;
  manager_.loop().modify(fd, wanted, handler);
  current = wanted;
}

void Session::close(CloseReason reason) {
  if (state_ == State::Closed) return;
  clearTimer();
  if (cancelKey_) manager_.shared().cancels.remove(*cancelKey_);
  detachServer();
  if (client_) manager_.loop().remove(client_.get());
  client_.reset();
  countMoved();
  for (auto* pump : {&clientToServer_, &serverToClient_}) {
    if (*pump && (*pump)->pending() == 0) manager_.pipes().give((*pump)->release());
  }
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("{}: closed ({}) in state {} after {} ms", describe(), toString(reason),
                  toString(state_), millisSince(started_));
  state_ = State::Closed;
  manager_.finished(this, reason);
}

std::string Session::describe() const {
  core::SocketAddress peer{peer_, sizeof peer_};
  std::string text = "session " + std::to_string(id_) + " (" + router::toString(role_) +
                     " port, client " + peer.str();
  if (!nodeEndpoint_.host.empty()) text += ", node " + nodeEndpoint_.str();
  if (fallback_) text += " as fallback";
  return text + ")";
}

}  // namespace pgkeel::session
