// RoutingPolicy: which node a new connection gets, and whether an open session may stay on its
// node.
#pragma once

#include <span>
#include <string>

#include "discovery/routing_table.h"
#include "pool/node_load.h"

namespace pgkeel::router {

enum class ListenerRole { Primary, Replica };
const char* toString(ListenerRole role);

struct RouteOptions {
  bool replicaFallback = true;  // replica port: use the primary when no replica is healthy
};

struct RouteDecision {
  const discovery::NodeState* node = nullptr;  // points into the table it was made from
  bool fallback = false;                       // replica port served by the primary
  std::string missing;                         // when !node: what is missing, for the client
};

// `avoid` lists nodes that just failed to connect: chosen only when nothing else fits.
RouteDecision chooseNode(ListenerRole role, const discovery::RoutingTable& table,
                         const pool::NodeLoad& load, const RouteOptions& options,
                         std::span<const discovery::NodeId> avoid = {});

enum class Verdict { Stay, NodeDemoted, NodeLeft, NodePromoted };
const char* toString(Verdict verdict);

// Primary port: the node must still be the elected primary. Replica port: it must still be a
// healthy member, and a replica unless the session is a fallback to the primary.
Verdict reviewSession(ListenerRole role, discovery::NodeId node, bool fallback,
                      const discovery::RoutingTable& table);

}  // namespace pgkeel::router
