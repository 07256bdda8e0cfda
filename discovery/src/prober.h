// Prober: probes many PostgreSQL nodes concurrently on one thread with libpq's asynchronous API.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "discovery/endpoint.h"
#include "discovery/table_builder.h"

typedef struct pg_conn PGconn;  // libpq-fe.h's handle; kept out of this header

namespace pgkeel::discovery {

// How much of the timeline the probe asks for. A role lacking EXECUTE on a function steps down
// one level (SQLSTATE 42501) instead of failing the probe.
enum class ProbeQueryLevel {
  Full,          // replica: received_tli, else pg_control_checkpoint(); primary: pg_walfile_name()
  NoCheckpoint,  // without pg_control_checkpoint()
  NoTimeline,    // timeline 0 everywhere
};

// The one-round-trip probe. Columns: in_recovery, lsn (text), timeline, replay_delay (seconds).
const std::string& probeQuery(ProbeQueryLevel level);

// Keeps one connection per node between rounds; a failed or timed-out probe discards it.
// Not thread-safe: owned by the discovery thread.
class Prober {
 public:
  // `dsn`: libpq conninfo (key=value or URI). Its host, hostaddr, port and target_session_attrs
  // are replaced by each node's endpoint; PG* environment variables fill what it leaves unset.
  Prober(std::string dsn, std::chrono::milliseconds timeout);
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Applies from the next probeAll; a changed DSN closes the kept connections.
  void setOptions(std::string dsn, std::chrono::milliseconds timeout);

  // Probes all nodes at once and returns one result per node, in order, within about `timeout`.
  // Node ids must be distinct.
  std::vector<ProbeResult> probeAll(const std::vector<std::pair<NodeId, Endpoint>>& nodes);
  // Probes only `nodes`, keeping the other nodes' connections (a fast round on one node).
  std::vector<ProbeResult> probeSome(const std::vector<std::pair<NodeId, Endpoint>>& nodes);

  // Any thread: ends the round in progress (or the next one, if none is) at once. Its unfinished
  // probes give no result and their connections are closed; interrupted() says it happened.
  void interrupt();
  bool interrupted() const { return interrupted_; }
  // Forgets interrupts so far (call before reading what the next round will act on).
  void clearInterrupt();

  // Connections kept open for the next round.
  std::size_t openConnections() const;

 private:
  struct ConnCloser {
    void operator()(PGconn* conn) const;
  };
  using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;
  struct Link {
    Endpoint endpoint;
    ConnPtr conn;
    ProbeQueryLevel queryLevel = ProbeQueryLevel::Full;
  };
  class Attempt;

  void parseDsn();
  Link& linkFor(NodeId id, const Endpoint& endpoint);
  void dropLinksNotIn(const std::vector<std::pair<NodeId, Endpoint>>& nodes);
  ConnPtr startConnection(const Endpoint& endpoint) const;
  bool waitOnce(std::vector<Attempt>& attempts, std::chrono::steady_clock::time_point deadline);

  std::string dsn_;
  std::vector<std::pair<std::string, std::string>> params_;  // from dsn_, minus what we override
  std::string dsnError_;                                     // non-empty when dsn_ is invalid
  std::chrono::milliseconds timeout_;
  std::map<NodeId, Link> links_;
  int wakeFd_ = -1;  // eventfd written by interrupt()
  bool interrupted_ = false;
};

}  // namespace pgkeel::discovery
