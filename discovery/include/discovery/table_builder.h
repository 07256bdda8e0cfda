// Pure decisions from one probe round to the next routing table: hysteresis, roles, election.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "discovery/routing_table.h"
#include "discovery/source.h"

namespace pgkeel::discovery {

struct ProbeResult {
  NodeId id = 0;
  Endpoint endpoint;
  std::string address;  // the numeric address the probe reached (PQhostaddr)
  bool ok = false;
  std::string error;  // when !ok
  bool inRecovery = false;
  std::uint64_t lsn = 0;
  std::uint32_t timeline = 0;
  std::optional<double> replayDelaySeconds;
  std::chrono::system_clock::time_point at{};
  std::chrono::microseconds latency{0};
};

// The control plane's opinion for one round, with endpoints resolved to ids (see source.h).
struct ControlView {
  LeaderOpinion opinion = LeaderOpinion::NoOpinion;
  std::optional<NodeId> leader;  // Named: the node the control plane names (absent: not probed)
  std::string leaderName;        // Named: for messages when `leader` is absent
  std::string detail;
  std::map<NodeId, std::string> names;  // candidate names by id
};

struct HealthPolicy {
  int unhealthyAfter = 3;  // consecutive failed probes before a healthy node leaves
  int healthyAfter = 2;    // consecutive good probes before an unhealthy node returns
};

// Keeps per-node hysteresis across rounds. Not thread-safe; owned by the discovery thread.
class TableBuilder {
 public:
  explicit TableBuilder(HealthPolicy policy = {}) : policy_(policy) {}
  void setPolicy(HealthPolicy policy) { policy_ = policy; }

  // One result per current candidate. Nodes absent from `round` leave the table. The returned
  // table's version is previous.version, or previous.version + 1 if routing changed. When an id
  // appears twice in `round`, its first result counts. With an opinion, only the named node can be
  // primary (and only while it answers f); Nobody gives no primary.
  RoutingTable apply(const RoutingTable& previous, const std::vector<ProbeResult>& round,
                     const ControlView& view = {});
  // A round that probed only some nodes (a fast round on the named primary): the others keep
  // their state from `previous`, as they were.
  RoutingTable applyPartial(const RoutingTable& previous, const std::vector<ProbeResult>& round,
                            const ControlView& view);

 private:
  struct Tracker {
    NodeHealth health = NodeHealth::Unknown;
    int failures = 0;
    std::uint64_t failuresTotal = 0;
    int successes = 0;
    // From the last successful probe:
    NodeRole role = NodeRole::Unknown;
    std::uint32_t timeline = 0;
    std::string address;
    std::uint64_t lsn = 0;
    std::optional<double> replayDelaySeconds;
    ProbeHistogram durations;
  };
  RoutingTable build(const RoutingTable& previous, const std::vector<ProbeResult>& round,
                     const ControlView& view, bool partial);
  NodeState observe(const ProbeResult& result);
  void updateHealth(Tracker& tracker, bool ok) const;

  HealthPolicy policy_;
  std::map<NodeId, Tracker> trackers_;
};

// True when the two tables route differently (members, roles, health or primary differ).
bool routingDiffers(const RoutingTable& a, const RoutingTable& b);

// Parses a PostgreSQL LSN text "16/B374D848" into a byte position; empty on bad input.
std::optional<std::uint64_t> parseLsn(std::string_view text);

}  // namespace pgkeel::discovery
