// Tests for readiness and the /status document.
#include "admin/status.h"

#include <gtest/gtest.h>

namespace pgkeel::admin {
namespace {

discovery::NodeState node(discovery::NodeId id, const char* host, discovery::NodeRole role) {
  discovery::NodeState n;
  n.id = id;
  n.endpoint = {host, 5432};
  n.role = role;
  n.health = discovery::NodeHealth::Healthy;
  return n;
}

discovery::RoutingTable primaryOnly() {
  discovery::RoutingTable table;
  table.version = 3;
  table.nodes = {node(0, "a", discovery::NodeRole::Primary)};
  table.primary = 0;
  return table;
}

// A primary makes pgkeel ready unless a replica is also required.
TEST(Readiness, NeedsPrimaryAndOptionallyReplica) {
  EXPECT_EQ(readinessProblem(primaryOnly(), false), "");
  EXPECT_EQ(readinessProblem(primaryOnly(), true), "no healthy replica");
  discovery::RoutingTable both = primaryOnly();
  both.nodes.push_back(node(1, "b", discovery::NodeRole::Replica));
  EXPECT_EQ(readinessProblem(both, true), "");
}

// Without a primary the reason is one line naming the table's problem.
TEST(Readiness, NoPrimaryNamesTheProblem) {
  discovery::RoutingTable table;
  table.primaryProblem = "no node answers pg_is_in_recovery() = false";
  EXPECT_EQ(readinessProblem(table, false),
            "no primary: no node answers pg_is_in_recovery() = false");
}

// /status carries the table, every node and the listeners.
TEST(Status, ListsTableNodesAndListeners) {
  discovery::RoutingTable table = primaryOnly();
  table.nodes.push_back(node(1, "b", discovery::NodeRole::Replica));
  table.nodes[1].lagBytes = 10;
  auto json = statusJson(table, {2, {{"primary", "127.0.0.1:6432", 4}}});
  EXPECT_EQ(json["version"], 3);
  EXPECT_EQ(json["primary"], "a:5432");
  EXPECT_EQ(json["changedAt"], nullptr);
  ASSERT_EQ(json["nodes"].size(), 2u);
  EXPECT_EQ(json["nodes"][1]["role"], "replica");
  EXPECT_EQ(json["nodes"][1]["lagBytes"], 10);
  EXPECT_EQ(json["nodes"][0]["lagBytes"], nullptr);
  EXPECT_EQ(json["listeners"][0]["activeSessions"], 4);
  EXPECT_EQ(json["workers"], 2);
}

}  // namespace
}  // namespace pgkeel::admin
