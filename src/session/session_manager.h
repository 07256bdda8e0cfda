// SessionManager: one worker's sessions, listeners, cancel forwarders and view of the routing
// table.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/event_loop.h"
#include "core/splice_pump.h"
#include "discovery/routing_table.h"
#include "pool/node_load.h"
#include "router/routing_policy.h"
#include "session/cancel_registry.h"
#include "session/close_reason.h"

namespace pgkeel::session {

class Acceptor;
class CancelForwarder;
class Session;

// Caps on client connections open at once; 0 means no cap.
struct ClientLimits {
  int total = 10000;
  std::array<int, 2> perListener{};  // by ListenerRole
};

// Client connections open now, shared by workers (one atomic add at accept and at close).
struct ClientCounts {
  std::atomic<int> total{0};
  std::array<std::atomic<int>, 2> perListener{};
};

struct SessionSettings {
  std::chrono::milliseconds primaryWait{5000};
  std::chrono::milliseconds connectTimeout{5000};
  std::chrono::milliseconds loginTimeout{60000};
  router::RouteOptions route;
  ClientLimits limits;
  bool tcpKeepalive = true;
};

// What all workers share: read-mostly, or atomics, or (the registry) touched outside the hot path.
struct SharedState {
  const discovery::RoutingTableHandle& tables;
  pool::NodeLoad& load;
  CancelRegistry& cancels;
  ClientCounts& clients;
  // Thread-safe: a connect to a node failed; discovery should look again now, not next interval.
  std::function<void()> nodeSuspect = [] {};
};

// Counters owned by one worker: only its thread writes them (bump), the metrics scrape reads
// them from another thread, hence atomics with relaxed order (a plain load/add/store, no lock).
struct WorkerCounters {
  using Counter = std::atomic<std::uint64_t>;
  std::array<Counter, 2> accepted{};                               // by ListenerRole
  std::array<std::array<Counter, kCloseReasonCount>, 2> closed{};  // by ListenerRole, CloseReason
  Counter bytesClientToServer{0};                                  // added as the pumps move them
  Counter bytesServerToClient{0};
  std::array<Counter, 2> waited{};  // by ListenerRole: new connections that waited for a node
  // By NodeId: server connections opened, and connect attempts that failed.
  std::array<Counter, discovery::kMaxNodes> serverOpened{};
  std::array<Counter, discovery::kMaxNodes> serverFailed{};
  // Connect latency of successful attempts: per bucket (not cumulative; +Inf last), sum in µs;
  // the same buckets as the probe-duration histogram.
  static constexpr auto kConnectBoundsMicros = discovery::kProbeBoundsMicros;
  std::array<Counter, kConnectBoundsMicros.size() + 1> connectBuckets{};
  Counter connectMicrosSum{0};
  void observeConnect(std::uint64_t micros) {
    std::size_t bucket = 0;
    while (bucket < kConnectBoundsMicros.size() && micros > kConnectBoundsMicros[bucket]) ++bucket;
    bump(connectBuckets[bucket]);
    bump(connectMicrosSum, micros);
  }

  // Owner thread only: a single writer needs no read-modify-write instruction.
  static void bump(Counter& counter, std::uint64_t by = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
  static std::uint64_t read(const Counter& counter) {
    return counter.load(std::memory_order_relaxed);
  }
};

class SessionManager {
 public:
  SessionManager(core::EventLoop& loop, SharedState shared, SessionSettings settings);
  ~SessionManager();

  // All of these run on the worker's thread (use loop().post from elsewhere).
  void addListener(core::Fd listener, router::ListenerRole role);
  void stopAccepting();
  // A listener moved (reload): starts accepting on `listener` (none when the listener is switched
  // off), then takes in the old sockets' queued clients and closes them.
  void replaceListener(core::Fd listener, router::ListenerRole role);
  void applySettings(const SessionSettings& settings) { settings_ = settings; }
  void onTableChanged(discovery::RoutingTablePtr table);
  void closeAll(CloseReason reason);

  // Thread-safe.
  std::size_t sessionCount() const { return count_.load(std::memory_order_relaxed); }

  // For sessions and acceptors.
  void adopt(core::Fd client, const sockaddr_storage& peer, router::ListenerRole role);
  void finished(Session* session, CloseReason reason);
  std::string admit(router::ListenerRole role);
  void forwardCancel(core::Fd client, const protocol::CancelKey& key);
  core::EventLoop& loop() { return loop_; }
  const SharedState& shared() const { return shared_; }
  const SessionSettings& settings() const { return settings_; }
  core::PipeCache& pipes() { return pipes_; }
  WorkerCounters& counters() { return counters_; }
  // Thread-safe to read (relaxed atomics), for the metrics scrape.
  const WorkerCounters& counters() const { return counters_; }

 private:
  core::EventLoop& loop_;
  SharedState shared_;
  SessionSettings settings_;
  core::PipeCache pipes_;
  WorkerCounters counters_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  bool accepting_ = true;  // false once stopAccepting ran (shutdown)
  std::unordered_map<Session*, std::unique_ptr<Session>> sessions_;
  std::unordered_map<CancelForwarder*, std::unique_ptr<CancelForwarder>> cancels_;
  std::atomic<std::size_t> count_{0};
  std::uint64_t nextId_ = 1;
};

}  // namespace pgkeel::session
