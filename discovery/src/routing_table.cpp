// Names for node roles and health, and the read-side queries on a RoutingTable.
#include "discovery/routing_table.h"

#include <algorithm>

namespace pgkeel::discovery {

void ProbeHistogram::add(std::chrono::microseconds latency) {
  auto micros = static_cast<std::uint64_t>(std::max<std::int64_t>(latency.count(), 0));
  std::size_t bucket = 0;
  while (bucket < kProbeBoundsMicros.size() && micros > kProbeBoundsMicros[bucket]) ++bucket;
  ++counts[bucket];
  microsSum += micros;
}

const char* toString(NodeRole role) {
  switch (role) {
    case NodeRole::Unknown:
      return "unknown";
    case NodeRole::Primary:
      return "primary";
    case NodeRole::Replica:
      return "replica";
  }
  return "unknown";
}

const char* toString(NodeHealth health) {
  switch (health) {
    case NodeHealth::Unknown:
      return "unknown";
    case NodeHealth::Healthy:
      return "healthy";
    case NodeHealth::Unhealthy:
      return "unhealthy";
  }
  return "unknown";
}

const NodeState* RoutingTable::find(NodeId id) const {
  for (const NodeState& node : nodes) {
    if (node.id == id) return &node;
  }
  return nullptr;
}

std::vector<const NodeState*> RoutingTable::healthyReplicas() const {
  std::vector<const NodeState*> replicas;
  for (const NodeState& node : nodes) {
    if (node.healthy() && node.role == NodeRole::Replica) replicas.push_back(&node);
  }
  return replicas;
}

bool RoutingTable::isPrimary(NodeId id) const {
  const NodeState* node = primaryNode();
  return node != nullptr && node->id == id;
}

bool RoutingTable::isHealthyMember(NodeId id) const {
  const NodeState* node = find(id);
  return node != nullptr && node->healthy();
}

}  // namespace pgkeel::discovery
