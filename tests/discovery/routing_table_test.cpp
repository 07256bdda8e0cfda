// Tests for the RoutingTable read-side queries and role/health names.
#include "discovery/routing_table.h"

#include <gtest/gtest.h>

namespace pgkeel::discovery {
namespace {

NodeState node(NodeId id, NodeRole role, NodeHealth health) {
  NodeState state;
  state.id = id;
  state.endpoint = Endpoint{"n" + std::to_string(id), 5432};
  state.role = role;
  state.health = health;
  return state;
}

RoutingTable sampleTable() {
  RoutingTable table;
  table.nodes = {node(4, NodeRole::Primary, NodeHealth::Healthy),
                 node(7, NodeRole::Replica, NodeHealth::Healthy),
                 node(9, NodeRole::Replica, NodeHealth::Unhealthy),
                 node(2, NodeRole::Unknown, NodeHealth::Unknown),
                 node(5, NodeRole::Replica, NodeHealth::Healthy)};
  table.primary = 0;
  return table;
}

// Roles and health have the lower-case names used in logs, metrics and /status.
TEST(RoutingTable, NamesRolesAndHealth) {
  EXPECT_STREQ(toString(NodeRole::Unknown), "unknown");
  EXPECT_STREQ(toString(NodeRole::Primary), "primary");
  EXPECT_STREQ(toString(NodeRole::Replica), "replica");
  EXPECT_STREQ(toString(NodeHealth::Unknown), "unknown");
  EXPECT_STREQ(toString(NodeHealth::Healthy), "healthy");
  EXPECT_STREQ(toString(NodeHealth::Unhealthy), "unhealthy");
}

// find() looks nodes up by id, not by position.
TEST(RoutingTable, FindsNodesById) {
  RoutingTable table = sampleTable();
  ASSERT_NE(table.find(9), nullptr);
  EXPECT_EQ(table.find(9)->endpoint.host, "n9");
  EXPECT_EQ(table.find(3), nullptr);
}

// healthyReplicas() lists healthy replicas only, in table order.
TEST(RoutingTable, ListsHealthyReplicas) {
  RoutingTable table = sampleTable();
  std::vector<const NodeState*> replicas = table.healthyReplicas();
  ASSERT_EQ(replicas.size(), 2u);
  EXPECT_EQ(replicas[0]->id, 7u);
  EXPECT_EQ(replicas[1]->id, 5u);
}

// isPrimary() is true only for the elected primary; isHealthyMember() for present, healthy nodes.
TEST(RoutingTable, AnswersPrimaryAndMembership) {
  RoutingTable table = sampleTable();
  EXPECT_TRUE(table.isPrimary(4));
  EXPECT_FALSE(table.isPrimary(7));
  EXPECT_TRUE(table.isHealthyMember(7));
  EXPECT_FALSE(table.isHealthyMember(9));
  EXPECT_FALSE(table.isHealthyMember(2));
  EXPECT_FALSE(table.isHealthyMember(100));
  table.primary.reset();
  EXPECT_FALSE(table.isPrimary(4));
  EXPECT_EQ(RoutingTable{}.primaryNode(), nullptr);
}

// The handle starts with an empty table and hands out exactly what was stored.
TEST(RoutingTableHandle, StoresAndLoadsSnapshots) {
  RoutingTableHandle handle;
  EXPECT_EQ(handle.load()->version, 0u);
  auto table = std::make_shared<RoutingTable>(sampleTable());
  table->version = 3;
  handle.store(table);
  EXPECT_EQ(handle.load().get(), table.get());
}

}  // namespace
}  // namespace pgkeel::discovery
