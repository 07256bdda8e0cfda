// RoutingPolicy: which node a new connection gets, and whether an open session may stay on its
// node.
#include "router/routing_policy.h"

#include <algorithm>

namespace pgkeel::router {
namespace {

using discovery::NodeState;

bool contains(std::span<const discovery::NodeId> ids, discovery::NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// Least active connections; ties go to the lower lag, then table order (stable).
const NodeState* leastLoaded(const std::vector<const NodeState*>& nodes, const pool::NodeLoad& load,
                             std::span<const discovery::NodeId> avoid) {
  const NodeState* best = nullptr;
  for (bool allowAvoided : {false, true}) {
    for (const NodeState* n : nodes) {
      if (!allowAvoided && contains(avoid, n->id)) continue;
      if (!best || load.active(n->id) < load.active(best->id) ||
          (load.active(n->id) == load.active(best->id) &&
           n->lagBytes.value_or(0) < best->lagBytes.value_or(0)))
        best = n;
    }
    if (best) return best;
  }
  return nullptr;
}

std::string noPrimaryText(const discovery::RoutingTable& table) {
  std::string text = "no primary is available";
  if (!table.primaryProblem.empty()) text += ": " + table.primaryProblem;
  return text;
}

}  // namespace

const char* toString(ListenerRole role) {
  return role == ListenerRole::Primary ? "primary" : "replica";
}

const char* toString(Verdict verdict) {
  switch (verdict) {
    case Verdict::Stay:
      return "stay";
    case Verdict::NodeDemoted:
      return "node_demoted";
    case Verdict::NodePromoted:
      return "node_promoted";
    case Verdict::NodeLeft:
      return "node_left";
  }
  return "?";
}

RouteDecision chooseNode(ListenerRole role, const discovery::RoutingTable& table,
                         const pool::NodeLoad& load, const RouteOptions& options,
                         std::span<const discovery::NodeId> avoid) {
  RouteDecision decision;
  const NodeState* primary = table.primaryNode();
  if (role == ListenerRole::Primary) {
    decision.node = primary;
    if (!primary) decision.missing = noPrimaryText(table);
    return decision;
  }
  decision.node = leastLoaded(table.healthyReplicas(), load, avoid);
  if (decision.node) return decision;
  if (options.replicaFallback && primary) {
    decision.node = primary;
    decision.fallback = true;
    return decision;
  }
  decision.missing = options.replicaFallback
                         ? "no healthy replica and " + noPrimaryText(table)
                         : "no healthy replica is available (replica_fallback is off)";
  return decision;
}

Verdict reviewSession(ListenerRole role, discovery::NodeId node, bool fallback,
                      const discovery::RoutingTable& table) {
  const NodeState* state = table.find(node);
  if (!state || !state->healthy()) return Verdict::NodeLeft;
  if (role == ListenerRole::Primary && !table.isPrimary(node)) return Verdict::NodeDemoted;
  if (role == ListenerRole::Replica && !fallback && state->role == discovery::NodeRole::Primary)
    return Verdict::NodePromoted;
  return Verdict::Stay;
}

}  // namespace pgkeel::router
