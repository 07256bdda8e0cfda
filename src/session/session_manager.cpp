// SessionManager: one worker's sessions, listeners, cancel forwarders and view of the routing
// table.
#include "session/session_manager.h"

#include <spdlog/spdlog.h>

#include "session/acceptor.h"
#include "session/cancel_forwarder.h"
#include "session/session.h"

namespace pgkeel::session {

SessionManager::SessionManager(core::EventLoop& loop, SharedState shared, SessionSettings settings)
    : loop_(loop), shared_(shared), settings_(settings) {}

SessionManager::~SessionManager() {
  acceptors_.clear();
  closeAll(CloseReason::Shutdown);
  sessions_.clear();
  cancels_.clear();
}

void SessionManager::addListener(core::Fd listener, router::ListenerRole role) {
  acceptors_.push_back(std::make_unique<Acceptor>(*this, std::move(listener), role));
}

void SessionManager::stopAccepting() {
  accepting_ = false;
  // The current epoll batch may still name an acceptor: close now, destroy after the batch.
  for (auto& acceptor : acceptors_) acceptor->close();
  loop_.defer([old = std::make_shared<decltype(acceptors_)>(std::move(acceptors_))] {});
  acceptors_.clear();
}

void SessionManager::replaceListener(core::Fd listener, router::ListenerRole role) {
  std::vector<std::unique_ptr<Acceptor>> old;
  for (auto it = acceptors_.begin(); it != acceptors_.end();) {
    if ((*it)->role() == role) {
      old.push_back(std::move(*it));
      it = acceptors_.erase(it);
    } else {
      ++it;
    }
  }
  // After stopAccepting (shutdown) a late reload only closes the old sockets.
  if (listener && accepting_) addListener(std::move(listener), role);
  for (auto& acceptor : old) acceptor->drainAndClose();
  loop_.defer([old = std::make_shared<decltype(old)>(std::move(old))] {});
}

void SessionManager::adopt(core::Fd client, const sockaddr_storage& peer,
                           router::ListenerRole role) {
  WorkerCounters::bump(counters_.accepted[static_cast<std::size_t>(role)]);
  auto session = std::make_unique<Session>(*this, nextId_++, std::move(client), peer, role);
  Session* raw = session.get();
  sessions_.emplace(raw, std::move(session));
  count_.fetch_add(1, std::memory_order_relaxed);
  raw->start(admit(role));
}

void SessionManager::finished(Session* session, CloseReason reason) {
  WorkerCounters::bump(counters_.closed[static_cast<std::size_t>(session->role())]
                                       [static_cast<std::size_t>(reason)]);
  count_.fetch_sub(1, std::memory_order_relaxed);
  shared_.clients.total.fetch_sub(1, std::memory_order_relaxed);
  shared_.clients.perListener[static_cast<std::size_t>(session->role())].fetch_sub(
      1, std::memory_order_relaxed);
  // The loop may still hold events naming this session in the current batch.
  loop_.defer([this, session] { sessions_.erase(session); });
}

// Counts the new client in; "" when it is within every cap, else the 53300 message it gets.
std::string SessionManager::admit(router::ListenerRole role) {
  const auto r = static_cast<std::size_t>(role);
  const int total = shared_.clients.total.fetch_add(1, std::memory_order_relaxed) + 1;
  const int mine = shared_.clients.perListener[r].fetch_add(1, std::memory_order_relaxed) + 1;
  const auto& limits = settings_.limits;
  if (limits.total > 0 && total > limits.total)
    return "sorry, too many clients already (max_client_connections " +
           std::to_string(limits.total) + ")";
  if (limits.perListener[r] > 0 && mine > limits.perListener[r])
    return "sorry, too many clients already (max_" + std::string(router::toString(role)) +
           "_connections " + std::to_string(limits.perListener[r]) + ")";
  return "";
}

void SessionManager::onTableChanged(discovery::RoutingTablePtr table) {
  // Posts can queue up; sessions may already have routed with a newer table than this one.
  if (auto newest = shared_.tables.load(); newest->version > table->version) table = newest;
  for (auto& [raw, session] : sessions_)
    if (session->state() != Session::State::Closed) session->onTable(*table);
}

void SessionManager::closeAll(CloseReason reason) {
  for (auto& [raw, session] : sessions_) session->close(reason);
}

// Sends the request to the node that issued the key, or to every node when the key is unknown
// (a TLS session, whose BackendKeyData pgkeel cannot read); PostgreSQL ignores unknown keys.
void SessionManager::forwardCancel(core::Fd client, const protocol::CancelKey& key) {
  std::vector<discovery::Endpoint> targets;
  if (auto node = shared_.cancels.find(key)) {
    targets.push_back(*node);
  } else {
    const discovery::RoutingTablePtr table = shared_.tables.load();  // keeps the table alive
    for (const auto& node : table->nodes)
      targets.push_back(
          {node.address.empty() ? node.endpoint.host : node.address, node.endpoint.port});
  }
  spdlog::debug("cancel request for pid {} sent to {} node(s)", key.processId, targets.size());
  auto forwarder = std::make_unique<CancelForwarder>(
      loop_, std::move(client), key, std::move(targets), settings_.connectTimeout,
      [this](CancelForwarder* done) { loop_.defer([this, done] { cancels_.erase(done); }); });
  CancelForwarder* raw = forwarder.get();
  cancels_.emplace(raw, std::move(forwarder));
  raw->start();
}

}  // namespace pgkeel::session
