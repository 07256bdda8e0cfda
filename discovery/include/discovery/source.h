// The Source interface: where the list of candidate nodes comes from; and the static source.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "discovery/endpoint.h"

namespace pgkeel::discovery {

// A control plane's opinion of a node. Hints make discovery fast; the probe decides.
enum class RoleHint { None, Primary, Replica };

struct Candidate {
  Endpoint endpoint;
  RoleHint hint = RoleHint::None;
  std::string name;  // the control plane's name for the node (pod or member name); may be empty
  bool operator==(const Candidate&) const = default;
};

// What the control plane says about the primary. The probe stays the authority: a node gets
// writes only while it answers pg_is_in_recovery() = false, and with an opinion other than
// NoOpinion only the named node may get them.
enum class LeaderOpinion {
  NoOpinion,  // static lists: election by probe alone (timelines, stale-primary guard)
  Named,      // the control plane names the primary (leader lock, currentPrimary == targetPrimary)
  Nobody,     // no primary now (CNPG targetPrimary "pending", Patroni leader key gone or expired)
};

struct SourceSnapshot {
  std::vector<Candidate> candidates;
  LeaderOpinion opinion = LeaderOpinion::NoOpinion;
  Endpoint leader;  // the named primary's endpoint when opinion == Named
  std::string leaderName;
  // The primary is moving (switchover or failover under way, or the named leader differs from the
  // probed primary): discovery re-probes every fast_probe_interval until the table agrees.
  bool moving = false;
  std::string detail;  // one line for logs and /status, e.g. "cnpg pg-main: pg-main-1 -> pending"
  std::string probeUser;      // from the control plane (a Secret); empty: the probe DSN's own
  std::string probePassword;  // never logged
  bool operator==(const SourceSnapshot&) const = default;
};

// Counters an event-driven source keeps for /metrics and /status (read from any thread).
struct SourceStats {
  bool synced = false;  // the first full view has arrived (every list done, or a poll answered)
  std::uint64_t events = 0;     // watch events or poll answers applied
  std::uint64_t relists = 0;    // full re-lists after 410 Gone or a stream that could not resume
  std::uint64_t rewatches = 0;  // watches restarted from the last resourceVersion
  // Failed requests by kind: "401", "403", "410", "429", "5xx", "other_http", "network", "parse".
  std::map<std::string, std::uint64_t> errors;
};

class Source {
 public:
  virtual ~Source() = default;
  virtual std::string name() const = 0;
  // The nodes to probe now and the control plane's view. Called from the discovery thread once
  // per round; must not block on the network (event-driven sources return their cached view).
  virtual SourceSnapshot snapshot() = 0;
  // Event-driven sources call `changed` when the candidate set or the view moves; static ones
  // never. `changed` may be called from any thread and only wakes the discovery thread.
  virtual void start(std::function<void()> changed) {}
  virtual void stop() {}
  virtual SourceStats stats() const { return SourceStats{true}; }
};

// A fixed list (from --candidates, CANDIDATES or the config file); replaceable on reload.
class StaticSource : public Source {
 public:
  explicit StaticSource(std::vector<Endpoint> endpoints);
  std::string name() const override { return "static"; }
  SourceSnapshot snapshot() override;
  void setEndpoints(std::vector<Endpoint> endpoints);

 private:
  std::mutex mutex_;
  std::vector<Endpoint> endpoints_;
};

}  // namespace pgkeel::discovery
