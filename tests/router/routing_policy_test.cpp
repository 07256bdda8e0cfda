// Tests for the routing policy: primary port, replica port with least connections, fallback,
// reviews.
#include "router/routing_policy.h"

#include <gtest/gtest.h>

namespace pgkeel::router {
namespace {

using discovery::NodeHealth;
using discovery::NodeRole;
using discovery::NodeState;
using discovery::RoutingTable;

NodeState node(discovery::NodeId id, NodeRole role, NodeHealth health = NodeHealth::Healthy) {
  NodeState n;
  n.id = id;
  n.endpoint = {"10.0.0." + std::to_string(id), 5432};
  n.role = role;
  n.health = health;
  return n;
}

RoutingTable table(std::vector<NodeState> nodes, std::optional<std::size_t> primary) {
  RoutingTable t;
  t.nodes = std::move(nodes);
  t.primary = primary;
  return t;
}

// The primary port gets the elected primary, never a replica.
TEST(RoutingPolicy, PrimaryPortGetsElectedPrimary) {
  pool::NodeLoad load;
  auto t = table({node(1, NodeRole::Replica), node(2, NodeRole::Primary)}, 1);
  auto d = chooseNode(ListenerRole::Primary, t, load, {});
  ASSERT_TRUE(d.node);
  EXPECT_EQ(d.node->id, 2u);
}

// Without an elected primary the decision names what is missing, including discovery's reason.
TEST(RoutingPolicy, NoPrimaryNamesTheProblem) {
  pool::NodeLoad load;
  auto t = table({node(1, NodeRole::Primary), node(2, NodeRole::Primary)}, std::nullopt);
  t.primaryProblem = "split brain";
  auto d = chooseNode(ListenerRole::Primary, t, load, {});
  EXPECT_FALSE(d.node);
  EXPECT_NE(d.missing.find("no primary"), std::string::npos);
  EXPECT_NE(d.missing.find("split brain"), std::string::npos);
}

// Replicas are chosen by least active connections.
TEST(RoutingPolicy, ReplicaPortPicksLeastLoaded) {
  pool::NodeLoad load;
  auto t = table(
      {node(1, NodeRole::Primary), node(2, NodeRole::Replica), node(3, NodeRole::Replica)}, 0);
  load.acquire(2);
  EXPECT_EQ(chooseNode(ListenerRole::Replica, t, load, {}).node->id, 3u);
  load.acquire(3);
  load.acquire(3);
  EXPECT_EQ(chooseNode(ListenerRole::Replica, t, load, {}).node->id, 2u);
}

// Unhealthy replicas are skipped; with none left the primary serves reads when fallback is on.
TEST(RoutingPolicy, FallsBackToPrimaryWhenNoReplicaIsHealthy) {
  pool::NodeLoad load;
  auto t =
      table({node(1, NodeRole::Primary), node(2, NodeRole::Replica, NodeHealth::Unhealthy)}, 0);
  auto d = chooseNode(ListenerRole::Replica, t, load, {});
  ASSERT_TRUE(d.node);
  EXPECT_EQ(d.node->id, 1u);
  EXPECT_TRUE(d.fallback);
  auto off = chooseNode(ListenerRole::Replica, t, load, {.replicaFallback = false});
  EXPECT_FALSE(off.node);
  EXPECT_NE(off.missing.find("replica"), std::string::npos);
}

// A replica that just failed to connect is avoided while another one exists, but not excluded.
TEST(RoutingPolicy, AvoidsRecentlyFailedReplica) {
  pool::NodeLoad load;
  auto t = table({node(2, NodeRole::Replica), node(3, NodeRole::Replica)}, std::nullopt);
  std::vector<discovery::NodeId> avoid{2};
  EXPECT_EQ(chooseNode(ListenerRole::Replica, t, load, {}, avoid).node->id, 3u);
  avoid.push_back(3);
  EXPECT_TRUE(chooseNode(ListenerRole::Replica, t, load, {}, avoid).node);
}

// A primary-port session must leave a node that is no longer primary; a replica-port one stays.
TEST(RoutingPolicy, ReviewClosesDemotedAndDepartedNodes) {
  auto t = table({node(1, NodeRole::Replica), node(2, NodeRole::Primary)}, 1);
  EXPECT_EQ(reviewSession(ListenerRole::Primary, 2, false, t), Verdict::Stay);
  EXPECT_EQ(reviewSession(ListenerRole::Primary, 1, false, t), Verdict::NodeDemoted);
  EXPECT_EQ(reviewSession(ListenerRole::Replica, 1, false, t), Verdict::Stay);
  EXPECT_EQ(reviewSession(ListenerRole::Replica, 9, false, t), Verdict::NodeLeft);
  t.nodes[0].health = NodeHealth::Unhealthy;
  EXPECT_EQ(reviewSession(ListenerRole::Replica, 1, false, t), Verdict::NodeLeft);
}

// A replica-port session leaves a replica that was promoted, unless it was sent there as fallback.
TEST(RoutingPolicy, ReviewClosesReplicaSessionsOnAPromotedNode) {
  auto t = table({node(1, NodeRole::Primary), node(2, NodeRole::Replica)}, 0);
  EXPECT_EQ(reviewSession(ListenerRole::Replica, 1, false, t), Verdict::NodePromoted);
  EXPECT_EQ(reviewSession(ListenerRole::Replica, 1, true, t), Verdict::Stay);
}

}  // namespace
}  // namespace pgkeel::router
