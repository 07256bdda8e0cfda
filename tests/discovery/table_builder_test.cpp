// Tests for the pure routing decisions: hysteresis, roles, primary election, lag and versions.
#include "discovery/table_builder.h"

#include <gtest/gtest.h>

namespace pgkeel::discovery {
namespace {

Endpoint local(std::uint16_t port) {
  return Endpoint{"127.0.0.1", port};
}

// Node id N listens on 127.0.0.1:5432+N in these tests.
ProbeResult answer(NodeId id, bool in_recovery, std::uint32_t timeline, std::uint64_t lsn) {
  ProbeResult result;
  result.id = id;
  result.endpoint = local(static_cast<std::uint16_t>(5432 + id));
  result.ok = true;
  result.inRecovery = in_recovery;
  result.timeline = timeline;
  result.lsn = lsn;
  result.latency = std::chrono::microseconds(300 + id);
  result.at = std::chrono::system_clock::time_point(std::chrono::seconds(1000 + id));
  return result;
}

ProbeResult primary(NodeId id, std::uint32_t timeline = 1, std::uint64_t lsn = 1000) {
  return answer(id, false, timeline, lsn);
}

ProbeResult replica(NodeId id, std::uint64_t lsn = 1000, std::optional<double> delay = 0.5) {
  ProbeResult result = answer(id, true, 1, lsn);
  result.replayDelaySeconds = delay;
  return result;
}

ProbeResult down(NodeId id, std::string error = "connection refused") {
  ProbeResult result;
  result.id = id;
  result.endpoint = local(static_cast<std::uint16_t>(5432 + id));
  result.error = std::move(error);
  return result;
}

// Feeds rounds to one builder, each against the table the previous round produced.
class Rounds {
 public:
  explicit Rounds(HealthPolicy policy = {}) : builder_(policy) {}
  const RoutingTable& run(const std::vector<ProbeResult>& round, const ControlView& view = {}) {
    table_ = builder_.apply(table_, round, view);
    return table_;
  }
  const RoutingTable& table() const { return table_; }
  TableBuilder& builder() { return builder_; }
  const NodeState& node(NodeId id) const {
    const NodeState* found = table_.find(id);
    EXPECT_NE(found, nullptr) << "node " << id;
    return *found;
  }
  std::optional<NodeId> primaryId() const {
    const NodeState* node = table_.primaryNode();
    return node ? std::optional<NodeId>(node->id) : std::nullopt;
  }

 private:
  TableBuilder builder_;
  RoutingTable table_;
};

// An LSN's two hex halves become the high and low 32 bits of one byte position.
TEST(ParseLsn, CombinesBothHalves) {
  EXPECT_EQ(parseLsn("16/B374D848"), (std::uint64_t{0x16} << 32) | 0xB374D848);
  EXPECT_EQ(parseLsn("0/0"), 0u);
  EXPECT_EQ(parseLsn("0/3000B88"), 0x3000B88u);
  EXPECT_EQ(parseLsn("FFFFFFFF/FFFFFFFF"), UINT64_MAX);
  EXPECT_EQ(parseLsn("a/b"), (std::uint64_t{0xA} << 32) | 0xB);
}

// Text that is not exactly hex/hex with 32-bit halves is rejected.
TEST(ParseLsn, RejectsMalformedText) {
  for (const char* text : {"", "/", "16/", "/B374D848", "16B374D848", "16/B374D848/1", "1G/0",
                           "100000000/0", "0/100000000", " 1/2", "1/2 ", "-1/2", "0x1/2"}) {
    EXPECT_FALSE(parseLsn(text).has_value()) << "accepted \"" << text << "\"";
  }
}

// One node answering f becomes the primary; nodes answering t are replicas, in round order.
TEST(TableBuilder, ElectsTheSingleNodeAnsweringF) {
  Rounds rounds;
  const RoutingTable& table = rounds.run({replica(2), primary(1), replica(3)});
  ASSERT_EQ(table.nodes.size(), 3u);
  EXPECT_EQ(table.nodes[0].id, 2u);
  EXPECT_EQ(table.nodes[1].id, 1u);
  EXPECT_EQ(table.nodes[2].id, 3u);
  EXPECT_EQ(rounds.primaryId(), 1u);
  EXPECT_EQ(table.primaryProblem, "");
  EXPECT_EQ(table.healthyReplicas().size(), 2u);
  EXPECT_EQ(rounds.node(1).role, NodeRole::Primary);
  EXPECT_EQ(rounds.node(2).role, NodeRole::Replica);
  EXPECT_TRUE(rounds.node(2).healthy());
}

// Probe facts land in the node state: time, latency, timeline, LSN, and a cleared error.
TEST(TableBuilder, CopiesProbeFactsIntoNodes) {
  Rounds rounds;
  rounds.run({primary(1, 4, 777)});
  const NodeState& node = rounds.node(1);
  EXPECT_EQ(node.endpoint, local(5433));
  EXPECT_EQ(node.timeline, 4u);
  EXPECT_EQ(node.walLsn, 777u);
  EXPECT_EQ(node.lastProbe, std::chrono::system_clock::time_point(std::chrono::seconds(1001)));
  EXPECT_EQ(node.probeLatency, std::chrono::microseconds(301));
  EXPECT_EQ(node.lastError, "");
  EXPECT_EQ(node.consecutiveFailures, 0);
  EXPECT_FALSE(node.lagBytes.has_value());
}

// Replica lag is the primary's LSN minus the replica's, floored at 0; seconds come from the probe.
TEST(TableBuilder, ComputesReplicaLag) {
  Rounds rounds;
  rounds.run({primary(1, 1, 5000), replica(2, 4000, 1.25), replica(3, 6000, std::nullopt)});
  EXPECT_EQ(rounds.node(2).lagBytes, 1000u);
  EXPECT_EQ(rounds.node(2).lagSeconds, 1.25);
  EXPECT_EQ(rounds.node(3).lagBytes, 0u);
  EXPECT_FALSE(rounds.node(3).lagSeconds.has_value());
  EXPECT_FALSE(rounds.node(1).lagBytes.has_value());
}

// Without a primary there is no LSN to compare with, so lagBytes stays empty but seconds remain.
TEST(TableBuilder, LeavesLagBytesEmptyWithoutPrimary) {
  Rounds rounds;
  rounds.run({replica(2, 4000, 3.0)});
  EXPECT_FALSE(rounds.node(2).lagBytes.has_value());
  EXPECT_EQ(rounds.node(2).lagSeconds, 3.0);
}

// Two nodes answering f on the same timeline: no primary, and the problem names both nodes.
TEST(TableBuilder, RefusesWritesOnSplitBrainWithEqualTimelines) {
  Rounds rounds;
  const RoutingTable& table = rounds.run({primary(0, 3), primary(1, 3), replica(2)});
  EXPECT_FALSE(table.primary.has_value());
  EXPECT_EQ(table.primaryProblem,
            "split brain: 127.0.0.1:5432 and 127.0.0.1:5433 both answer pg_is_in_recovery() = "
            "false on timeline 3; refusing writes");
  EXPECT_EQ(rounds.node(0).role, NodeRole::Primary);
  EXPECT_EQ(rounds.node(1).role, NodeRole::Primary);
  EXPECT_EQ(table.healthyReplicas().size(), 1u);
  EXPECT_FALSE(rounds.node(2).lagBytes.has_value());
}

// Three nodes tied on the highest timeline are all named; a lower-timeline one is not.
TEST(TableBuilder, NamesEveryNodeTiedOnTheHighestTimeline) {
  Rounds rounds;
  const RoutingTable& table =
      rounds.run({primary(0, 5), primary(1, 4), primary(2, 5), primary(3, 5)});
  EXPECT_FALSE(table.primary.has_value());
  EXPECT_EQ(table.primaryProblem,
            "split brain: 127.0.0.1:5432, 127.0.0.1:5434 and 127.0.0.1:5435 all answer "
            "pg_is_in_recovery() = false on timeline 5; refusing writes");
}

// Two nodes answering f on different timelines: the higher timeline wins whatever the order.
TEST(TableBuilder, PrefersHigherTimelineWhenTwoNodesAnswerF) {
  for (bool newer_first : {false, true}) {
    Rounds rounds;
    std::vector<ProbeResult> round = {primary(1, 5, 9000), primary(2, 6, 100), replica(3, 50)};
    if (newer_first) std::swap(round[0], round[1]);
    const RoutingTable& table = rounds.run(round);
    EXPECT_EQ(rounds.primaryId(), 2u);
    EXPECT_EQ(table.primaryProblem, "");
    // The loser keeps its role but is neither the primary nor a replica.
    EXPECT_EQ(rounds.node(1).role, NodeRole::Primary);
    EXPECT_FALSE(table.isPrimary(1));
    ASSERT_EQ(table.healthyReplicas().size(), 1u);
    EXPECT_EQ(table.healthyReplicas()[0]->id, 3u);
    EXPECT_EQ(rounds.node(3).lagBytes, 50u);  // measured against the elected primary
  }
}

// A stale primary is not elected while the node that was primary on a later timeline is merely
// unhealthy; it is once that node leaves the round or comes back as a replica.
TEST(TableBuilder, RefusesStalePrimaryWhileNewerOneIsUnhealthy) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 1, .healthyAfter = 1});
  rounds.run({primary(0, 5), primary(1, 6)});
  EXPECT_EQ(rounds.primaryId(), 1u);
  rounds.run({primary(0, 5), down(1)});
  EXPECT_EQ(rounds.primaryId(), std::nullopt);
  EXPECT_EQ(rounds.table().primaryProblem,
            "stale primary: 127.0.0.1:5432 answers pg_is_in_recovery() = false on timeline 5 but "
            "127.0.0.1:5433 (unhealthy) was primary on later timeline 6; refusing writes");
  rounds.run({primary(0, 5), answer(1, true, 6, 0)});  // back, but as a replica
  EXPECT_EQ(rounds.primaryId(), 0u);
  rounds.run({primary(0, 5), primary(1, 7)});
  rounds.run({primary(0, 5), down(1)});
  EXPECT_EQ(rounds.primaryId(), std::nullopt);
  rounds.run({primary(0, 5)});  // removed from the candidates
  EXPECT_EQ(rounds.primaryId(), 0u);
}

// An unhealthy former primary on an older timeline does not block the newer primary.
TEST(TableBuilder, OlderUnhealthyPrimaryDoesNotBlockElection) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 1, .healthyAfter = 1});
  rounds.run({primary(0, 3), replica(1)});
  rounds.run({down(0), primary(1, 4)});
  EXPECT_EQ(rounds.primaryId(), 1u);
  EXPECT_EQ(rounds.table().primaryProblem, "");
}

// No node answering f: no primary, and the problem says so and lists unhealthy nodes.
TEST(TableBuilder, ReportsNoPrimaryWhenNoNodeAnswersF) {
  Rounds rounds;
  const RoutingTable& table = rounds.run({replica(1), replica(2)});
  EXPECT_FALSE(table.primary.has_value());
  EXPECT_EQ(table.primaryProblem, "no node answers pg_is_in_recovery() = false");
  Rounds with_down;
  with_down.run({down(0), replica(1)});
  EXPECT_EQ(with_down.table().primaryProblem,
            "no node answers pg_is_in_recovery() = false; unhealthy: 127.0.0.1:5432");
  EXPECT_EQ(Rounds().run({}).primaryProblem, "no candidate nodes to probe");
}

// A new node is healthy on its first good probe; one whose first probe fails is unhealthy.
TEST(TableBuilder, FirstProbeDecidesANewNodesHealth) {
  Rounds rounds;
  rounds.run({primary(1), down(2, "refused")});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Healthy);
  EXPECT_EQ(rounds.node(2).health, NodeHealth::Unhealthy);
  EXPECT_EQ(rounds.node(2).role, NodeRole::Unknown);
  EXPECT_EQ(rounds.node(2).lastError, "refused");
  EXPECT_EQ(rounds.node(2).consecutiveFailures, 1);
}

// A healthy node stays healthy, primary and routable until exactly unhealthyAfter failures.
TEST(TableBuilder, HealthyNodeLeavesAfterExactlyUnhealthyAfterFailures) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 3, .healthyAfter = 2});
  rounds.run({primary(1, 2, 900), replica(2)});
  for (int failures = 1; failures <= 2; ++failures) {
    rounds.run({down(1), replica(2)});
    EXPECT_EQ(rounds.node(1).health, NodeHealth::Healthy) << failures;
    EXPECT_EQ(rounds.node(1).role, NodeRole::Primary);
    EXPECT_EQ(rounds.node(1).consecutiveFailures, failures);
    EXPECT_EQ(rounds.node(1).lastError, "connection refused");
    EXPECT_EQ(rounds.node(1).walLsn, 900u);  // last known position
    EXPECT_EQ(rounds.primaryId(), 1u);
  }
  rounds.run({down(1), replica(2)});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Unhealthy);
  EXPECT_EQ(rounds.node(1).role, NodeRole::Primary);  // last known role, for /status
  EXPECT_EQ(rounds.primaryId(), std::nullopt);
  EXPECT_EQ(rounds.table().primaryProblem,
            "no node answers pg_is_in_recovery() = false; unhealthy: 127.0.0.1:5433 (was primary)");
}

// An unhealthy node returns after exactly healthyAfter consecutive good probes.
TEST(TableBuilder, UnhealthyNodeReturnsAfterExactlyHealthyAfterSuccesses) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 1, .healthyAfter = 3});
  rounds.run({replica(2)});
  rounds.run({down(2)});
  EXPECT_EQ(rounds.node(2).health, NodeHealth::Unhealthy);
  rounds.run({replica(2)});
  rounds.run({replica(2)});
  EXPECT_EQ(rounds.node(2).health, NodeHealth::Unhealthy);
  EXPECT_TRUE(rounds.table().healthyReplicas().empty());
  rounds.run({replica(2)});
  EXPECT_EQ(rounds.node(2).health, NodeHealth::Healthy);
  EXPECT_EQ(rounds.table().healthyReplicas().size(), 1u);
}

// A failure in between restarts the count of good probes (and a success restarts failures).
TEST(TableBuilder, InterruptedStreaksStartOver) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 2, .healthyAfter = 2});
  rounds.run({down(1)});
  rounds.run({primary(1)});
  rounds.run({down(1)});
  rounds.run({primary(1)});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Unhealthy);
  rounds.run({primary(1)});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Healthy);
  rounds.run({down(1)});
  rounds.run({primary(1)});
  rounds.run({down(1)});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Healthy);
  EXPECT_EQ(rounds.node(1).consecutiveFailures, 1);
}

// A node that was never healthy needs healthyAfter good probes too, once it has failed.
TEST(TableBuilder, NodeThatStartedDownNeedsHealthyAfterSuccesses) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 3, .healthyAfter = 2});
  rounds.run({down(1)});
  rounds.run({primary(1)});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Unhealthy);
  EXPECT_EQ(rounds.node(1).role, NodeRole::Primary);  // role is known even while unhealthy
  EXPECT_EQ(rounds.primaryId(), std::nullopt);
  rounds.run({primary(1)});
  EXPECT_EQ(rounds.primaryId(), 1u);
}

// Policy values below 1 behave as 1.
TEST(TableBuilder, TreatsZeroThresholdsAsOne) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 0, .healthyAfter = 0});
  rounds.run({primary(1)});
  rounds.run({down(1)});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Unhealthy);
  rounds.run({primary(1)});
  EXPECT_EQ(rounds.node(1).health, NodeHealth::Healthy);
}

// A role change in a successful probe applies in the same round, without hysteresis.
TEST(TableBuilder, RoleChangeTakesEffectAtOnce) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 3, .healthyAfter = 3});
  rounds.run({primary(1), replica(2)});
  std::uint64_t version = rounds.table().version;
  rounds.run({replica(1), primary(2, 2)});
  EXPECT_EQ(rounds.node(1).role, NodeRole::Replica);
  EXPECT_EQ(rounds.node(2).role, NodeRole::Primary);
  EXPECT_EQ(rounds.primaryId(), 2u);
  EXPECT_EQ(rounds.table().version, version + 1);
}

// The version moves only when members, roles, health or the primary change, not with lag.
TEST(TableBuilder, BumpsVersionOnlyOnRoutingChange) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 2, .healthyAfter = 1});
  EXPECT_EQ(rounds.run({primary(1, 1, 100), replica(2, 50)}).version, 1u);
  auto changed_at = rounds.table().changedAt;
  EXPECT_NE(changed_at, std::chrono::system_clock::time_point{});
  EXPECT_EQ(rounds.run({primary(1, 1, 900), replica(2, 100, 9.0)}).version, 1u);
  EXPECT_EQ(rounds.table().changedAt, changed_at);
  EXPECT_EQ(rounds.node(2).lagBytes, 800u);                  // lag still refreshed
  EXPECT_EQ(rounds.run({primary(1), down(2)}).version, 1u);  // failure within hysteresis
  EXPECT_EQ(rounds.run({primary(1), down(2)}).version, 2u);  // replica leaves
  EXPECT_EQ(rounds.run({primary(1), replica(2)}).version, 3u);
  EXPECT_EQ(rounds.run({primary(1), replica(2), replica(3)}).version, 4u);  // member joins
  EXPECT_EQ(rounds.run({replica(3), primary(1), replica(2)}).version, 4u);  // order is not routing
}

// routingDiffers compares members, roles, health and the primary, nothing else.
TEST(TableBuilder, RoutingDiffersIgnoresNonRoutingFields) {
  RoutingTable a = TableBuilder().apply({}, {primary(1), replica(2, 10)});
  RoutingTable b = TableBuilder().apply({}, {replica(2, 999, 7.0), primary(1, 9, 5)});
  EXPECT_FALSE(routingDiffers(a, b));
  RoutingTable c = TableBuilder().apply({}, {primary(1), primary(2, 0)});
  EXPECT_TRUE(routingDiffers(a, c));
  RoutingTable d = a;
  d.primary.reset();
  EXPECT_TRUE(routingDiffers(a, d));
  EXPECT_TRUE(routingDiffers(a, RoutingTable{}));
}

// A node missing from the round leaves the table, and comes back as new (healthy on first success).
TEST(TableBuilder, NodeRemovedFromRoundLeavesTable) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 1, .healthyAfter = 5});
  rounds.run({primary(1), replica(2)});
  rounds.run({primary(1), down(2)});
  EXPECT_EQ(rounds.node(2).health, NodeHealth::Unhealthy);
  std::uint64_t version = rounds.table().version;
  rounds.run({primary(1)});
  EXPECT_EQ(rounds.table().find(2), nullptr);
  EXPECT_EQ(rounds.table().nodes.size(), 1u);
  EXPECT_EQ(rounds.table().version, version + 1);
  rounds.run({primary(1), replica(2)});
  EXPECT_EQ(rounds.node(2).health, NodeHealth::Healthy);
}

// An id repeated within one round counts once, with its first result.
TEST(TableBuilder, RepeatedIdInRoundCountsOnce) {
  Rounds rounds;
  rounds.run({primary(1), replica(1)});
  ASSERT_EQ(rounds.table().nodes.size(), 1u);
  EXPECT_EQ(rounds.node(1).role, NodeRole::Primary);
}

// Failover: the primary stops answering, a replica is promoted onto a higher timeline, and the
// old primary comes back still answering f on the old timeline without taking writes back.
TEST(TableBuilder, FollowsFailoverToPromotedReplica) {
  Rounds rounds(HealthPolicy{.unhealthyAfter = 2, .healthyAfter = 2});
  rounds.run({primary(0, 3, 1000), replica(1, 990), replica(2, 980)});
  EXPECT_EQ(rounds.primaryId(), 0u);
  rounds.run({down(0), replica(1, 1000), replica(2, 1000)});
  EXPECT_EQ(rounds.primaryId(), 0u);  // one failure: still within hysteresis
  rounds.run({down(0), replica(1, 1000), replica(2, 1000)});
  EXPECT_EQ(rounds.primaryId(), std::nullopt);
  EXPECT_NE(rounds.table().primaryProblem.find("127.0.0.1:5432 (was primary)"), std::string::npos);
  rounds.run({down(0), primary(1, 4, 1200), replica(2, 1100)});
  EXPECT_EQ(rounds.primaryId(), 1u);
  EXPECT_EQ(rounds.node(2).lagBytes, 100u);
  rounds.run({primary(0, 3, 1000), primary(1, 4, 1300), replica(2, 1300)});
  EXPECT_EQ(rounds.primaryId(), 1u);
  rounds.run({primary(0, 3, 1000), primary(1, 4, 1300), replica(2, 1300)});
  EXPECT_EQ(rounds.node(0).health, NodeHealth::Healthy);
  EXPECT_EQ(rounds.primaryId(), 1u);  // old timeline 3 loses to 4
  EXPECT_FALSE(rounds.table().isPrimary(0));
  rounds.run({replica(0, 1300), primary(1, 4, 1300), replica(2, 1300)});  // rewound, rejoined
  EXPECT_EQ(rounds.table().healthyReplicas().size(), 2u);
}

// The address a probe reached is what clients are sent to, and it survives a failed probe.
TEST(TableBuilder, KeepsTheAddressTheProbeReached) {
  Rounds rounds;
  ProbeResult named = primary(1);
  named.endpoint = Endpoint{"pg-0.pg.svc", 5432};
  named.address = "10.1.2.3";
  rounds.run({named});
  EXPECT_EQ(rounds.node(1).address, "10.1.2.3");
  ProbeResult failed = down(1);
  failed.endpoint = named.endpoint;
  rounds.run({failed});
  EXPECT_EQ(rounds.node(1).address, "10.1.2.3");
}

ControlView named(NodeId leader, std::string detail = "patroni lab: leader m0") {
  ControlView view;
  view.opinion = LeaderOpinion::Named;
  view.leader = leader;
  view.leaderName = "m" + std::to_string(leader);
  view.detail = std::move(detail);
  return view;
}

// Split brain after Patroni was killed: both answer f, the newer timeline is the unnamed one, yet
// only the node holding the leader lock is primary; the other gets nothing.
TEST(TableBuilderWithControlPlane, OnlyTheNamedNodeIsPrimary) {
  Rounds rounds;
  rounds.run({primary(0, 5), primary(1, 6), replica(2)}, named(1));
  EXPECT_EQ(rounds.primaryId(), NodeId{1});
  rounds.run({primary(0, 5), primary(1, 6), replica(2)}, named(0));
  EXPECT_EQ(rounds.primaryId(), NodeId{0}) << "the control plane decides a tie in its favour";
  EXPECT_EQ(rounds.table().controlPlane, "patroni lab: leader m0");
}

// A named node still answering t (not promoted yet) or unhealthy is not primary, and the problem
// says why; the moment it answers f it is.
TEST(TableBuilderWithControlPlane, NamedNodeMustAnswerFalse) {
  Rounds rounds;
  rounds.run({primary(0), replica(1)}, named(1, "cnpg db/pg: switchover pg-0 -> pg-1"));
  EXPECT_EQ(rounds.primaryId(), std::nullopt) << "the old primary gets no writes";
  EXPECT_NE(rounds.table().primaryProblem.find("answers pg_is_in_recovery() = true"),
            std::string::npos)
      << rounds.table().primaryProblem;
  rounds.run({replica(0), primary(1, 2)}, named(1));
  EXPECT_EQ(rounds.primaryId(), NodeId{1});

  ControlView absent;
  absent.opinion = LeaderOpinion::Named;
  absent.leaderName = "pg-9";
  rounds.run({replica(0), primary(1, 2)}, absent);
  EXPECT_EQ(rounds.primaryId(), std::nullopt);
  EXPECT_NE(rounds.table().primaryProblem.find("pg-9 is not among the probed nodes"),
            std::string::npos)
      << rounds.table().primaryProblem;
}

// "Nobody" (CNPG targetPrimary pending, Patroni leader key gone) means no primary even though a
// node still answers f; NoOpinion falls back to the probe-only election.
TEST(TableBuilderWithControlPlane, NobodyMeansNoPrimary) {
  Rounds rounds;
  ControlView nobody;
  nobody.opinion = LeaderOpinion::Nobody;
  nobody.detail = "cnpg db/pg: failover from pg-0, target pending";
  rounds.run({primary(0), replica(1)}, nobody);
  EXPECT_EQ(rounds.primaryId(), std::nullopt);
  EXPECT_EQ(rounds.table().primaryProblem,
            "cnpg db/pg: failover from pg-0, target pending: no primary named (failover or "
            "switchover under way)");
  rounds.run({primary(0), replica(1)});
  EXPECT_EQ(rounds.primaryId(), NodeId{0});
  EXPECT_EQ(rounds.table().controlPlane, "static");
}

// Candidate names from the control plane reach the table's nodes.
TEST(TableBuilderWithControlPlane, NodesCarryTheirNames) {
  Rounds rounds;
  ControlView view = named(0);
  view.names = {{0, "pg-main-1"}, {1, "pg-main-2"}};
  rounds.run({primary(0), replica(1), replica(2)}, view);
  EXPECT_EQ(rounds.node(0).name, "pg-main-1");
  EXPECT_EQ(rounds.node(1).name, "pg-main-2");
  EXPECT_EQ(rounds.node(2).name, "");
}

// Successful probes feed the node's duration histogram (failed ones do not); it lasts while the
// node stays in the table and starts afresh when the node leaves and returns.
TEST(TableBuilder, AccumulatesProbeDurations) {
  Rounds rounds;
  rounds.run({primary(0)});  // 300 µs: le 500 µs
  rounds.run({primary(0)});
  rounds.run({down(0)});
  const ProbeHistogram& h = rounds.node(0).probeDurations;
  EXPECT_EQ(h.counts[2], 2u);
  EXPECT_EQ(h.microsSum, 600u);
  std::uint64_t total = 0;
  for (std::uint64_t c : h.counts) total += c;
  EXPECT_EQ(total, 2u);
  rounds.run({replica(1)});
  rounds.run({primary(0)});
  EXPECT_EQ(rounds.node(0).probeDurations.microsSum, 300u);
}

// A partial round updates the nodes it probed and carries the others over unchanged; a full round
// after it still counts their failures from where they were.
TEST(TableBuilderWithControlPlane, PartialRoundKeepsTheOthersAsTheyWere) {
  Rounds rounds;
  rounds.run({primary(0), replica(1), down(2)}, named(0));
  ASSERT_EQ(rounds.node(2).consecutiveFailures, 1);
  TableBuilder& builder = rounds.builder();
  RoutingTable next = builder.applyPartial(rounds.table(), {replica(0), primary(1, 2)}, named(1));
  ASSERT_EQ(next.nodes.size(), 3u);
  ASSERT_NE(next.primaryNode(), nullptr);
  EXPECT_EQ(next.primaryNode()->id, 1u);
  EXPECT_EQ(next.find(2)->consecutiveFailures, 1);
  EXPECT_EQ(next.find(2)->lastError, "connection refused");
  EXPECT_EQ(next.version, rounds.table().version + 1);
}

}  // namespace
}  // namespace pgkeel::discovery
