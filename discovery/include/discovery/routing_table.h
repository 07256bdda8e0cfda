// The immutable, versioned routing table that discovery publishes and the data plane reads.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "discovery/endpoint.h"

namespace pgkeel::discovery {

enum class NodeRole { Unknown, Primary, Replica };
enum class NodeHealth { Unknown, Healthy, Unhealthy };

const char* toString(NodeRole role);
const char* toString(NodeHealth health);

// Upper bounds (µs) of the latency histograms' buckets (probe durations here, connect times in
// the workers); a +Inf bucket follows the last. They match metrics::kLatencyBuckets.
inline constexpr std::array<std::uint32_t, 15> kProbeBoundsMicros{
    100,   250,    500,    1000,   2500,    5000,    10000,  25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000};

struct ProbeHistogram {
  std::array<std::uint64_t, kProbeBoundsMicros.size() + 1> counts{};  // not cumulative
  std::uint64_t microsSum = 0;
  void add(std::chrono::microseconds latency);
};

struct NodeState {
  NodeId id = 0;
  Endpoint endpoint;
  std::string name;  // the control plane's name (pod or Patroni member); empty for static lists
  // Numeric address the last good probe reached; clients connect here, so a name never needs
  // resolving on a worker and the data plane reaches exactly the server the probe verified.
  std::string address;
  NodeRole role = NodeRole::Unknown;  // from the last successful probe
  NodeHealth health = NodeHealth::Unknown;
  std::uint32_t timeline = 0;
  std::uint64_t walLsn = 0;               // replay LSN on replicas, current LSN on a primary
  std::optional<std::uint64_t> lagBytes;  // replicas: primary LSN - replay LSN
  std::optional<double> lagSeconds;       // replicas: now() - pg_last_xact_replay_timestamp()
  std::chrono::system_clock::time_point lastProbe{};  // last probe attempt
  std::chrono::microseconds probeLatency{0};
  ProbeHistogram probeDurations;  // successful probes since the node joined the table
  std::string lastError;          // empty when the last probe succeeded
  int consecutiveFailures = 0;
  std::uint64_t probeFailures = 0;  // failed probes since pgkeel started

  bool healthy() const { return health == NodeHealth::Healthy; }
};

struct RoutingTable {
  // Bumped only when something routing depends on changes (members, roles, health, primary).
  std::uint64_t version = 0;
  std::chrono::system_clock::time_point changedAt{};
  std::vector<NodeState> nodes;
  std::optional<std::size_t> primary;  // index into nodes; set only for a healthy node answering f
  // Why there is no primary, e.g. "2 nodes answer pg_is_in_recovery() = false on timeline 3".
  std::string primaryProblem;
  // The source's word on the primary, for logs and /status: "static" or e.g.
  // "cnpg db/pg-main: switchover pg-main-1 -> pg-main-2".
  std::string controlPlane;

  const NodeState* primaryNode() const { return primary ? &nodes[*primary] : nullptr; }
  const NodeState* find(NodeId id) const;
  std::vector<const NodeState*> healthyReplicas() const;
  bool isPrimary(NodeId id) const;
  bool isHealthyMember(NodeId id) const;  // present in the table and healthy
};

using RoutingTablePtr = std::shared_ptr<const RoutingTable>;

// One atomic slot holding the current table. Readers never see a half-built table.
class RoutingTableHandle {
 public:
  RoutingTableHandle() : table_(std::make_shared<const RoutingTable>()) {}
  RoutingTablePtr load() const { return table_.load(std::memory_order_acquire); }
  void store(RoutingTablePtr table) { table_.store(std::move(table), std::memory_order_release); }

 private:
  std::atomic<RoutingTablePtr> table_;
};

}  // namespace pgkeel::discovery
