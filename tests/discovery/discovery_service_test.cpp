// Tests for DiscoveryService: ids, publishing, listeners, and the thread's wake-ups (no server).
#include "discovery/discovery_service.h"

#include <gtest/gtest.h>

#include <atomic>

#include "fake_postgres.h"
#include "test_ports.h"

namespace pgkeel::discovery {
namespace {

using std::chrono::milliseconds;
using testing::closedPort;
using testing::FakePostgres;

// A source whose candidates a test sets, and which records start/stop and can report a change.
class FakeSource : public Source {
 public:
  explicit FakeSource(std::vector<Endpoint> endpoints) { set(std::move(endpoints)); }
  std::string name() const override { return "fake"; }
  SourceSnapshot snapshot() override {
    std::lock_guard lock(mutex_);
    SourceSnapshot snapshot{candidates_, opinion_, leader_};
    snapshot.moving = moving_;
    snapshot.probeUser = user_;
    snapshot.probePassword = password_;
    return snapshot;
  }
  void start(std::function<void()> changed) override {
    std::lock_guard lock(mutex_);
    changed_ = std::move(changed);
    ++starts;
  }
  void stop() override { ++stops; }
  void set(std::vector<Endpoint> endpoints) {
    std::lock_guard lock(mutex_);
    candidates_.clear();
    for (Endpoint& endpoint : endpoints) candidates_.push_back(Candidate{std::move(endpoint)});
  }
  // The control plane names `leader` (one of the candidates) as primary, moving or not.
  void name(const Endpoint& leader, bool moving) {
    std::lock_guard lock(mutex_);
    opinion_ = LeaderOpinion::Named;
    leader_ = leader;
    moving_ = moving;
  }
  // The probe credentials the control plane hands out (as from a Secret); empty: none.
  void credentials(std::string user, std::string password) {
    std::lock_guard lock(mutex_);
    user_ = std::move(user);
    password_ = std::move(password);
  }
  void reportChange() {
    std::function<void()> changed;
    {
      std::lock_guard lock(mutex_);
      changed = changed_;
    }
    changed();
  }
  std::atomic<int> starts{0};
  std::atomic<int> stops{0};

 private:
  std::mutex mutex_;
  std::vector<Candidate> candidates_;
  LeaderOpinion opinion_ = LeaderOpinion::NoOpinion;
  Endpoint leader_;
  bool moving_ = false;
  std::string user_;
  std::string password_;
  std::function<void()> changed_;
};

DiscoveryOptions fastOptions(milliseconds interval) {
  DiscoveryOptions options;
  options.probeDsn = "dbname=postgres user=nobody";
  options.probeInterval = interval;
  options.probeTimeout = milliseconds(500);
  options.health = HealthPolicy{.unhealthyAfter = 1, .healthyAfter = 1};
  return options;
}

// Polls `condition` for up to 5 s.
template <typename Condition>
bool eventually(Condition condition) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return condition();
}

// Ids are handed out in order of first sight, stay with their endpoint, and are never reused.
TEST(DiscoveryService, AssignsStableIds) {
  DiscoveryService service(std::make_unique<StaticSource>(std::vector<Endpoint>{}),
                           fastOptions(milliseconds(1000)));
  EXPECT_EQ(service.idFor(Endpoint{"a", 1}), 0u);
  EXPECT_EQ(service.idFor(Endpoint{"b", 1}), 1u);
  EXPECT_EQ(service.idFor(Endpoint{"a", 2}), 2u);
  EXPECT_EQ(service.idFor(Endpoint{"a", 1}), 0u);
  EXPECT_EQ(service.source().name(), "static");
}

// Once kMaxNodes ids are taken, new endpoints get kMaxNodes and known ones keep theirs.
TEST(DiscoveryService, RunsOutOfIdsAtMaxNodes) {
  DiscoveryService service(std::make_unique<StaticSource>(std::vector<Endpoint>{}),
                           fastOptions(milliseconds(1000)));
  for (NodeId id = 0; id < kMaxNodes; ++id) {
    ASSERT_EQ(service.idFor(Endpoint{"h" + std::to_string(id), 5432}), id);
  }
  EXPECT_EQ(service.idFor(Endpoint{"one-too-many", 5432}), kMaxNodes);
  EXPECT_EQ(service.idFor(Endpoint{"h7", 5432}), 7u);
}

// probeOnce publishes a table; listeners hear of version changes only, yet every round is stored.
TEST(DiscoveryService, ProbeOncePublishesAndNotifiesOnVersionChange) {
  Endpoint dead{"127.0.0.1", closedPort()};
  DiscoveryService service(std::make_unique<StaticSource>(std::vector<Endpoint>{dead}),
                           fastOptions(milliseconds(1000)));
  std::vector<std::uint64_t> heard;
  service.subscribe([&](const RoutingTablePtr& table) { heard.push_back(table->version); });
  service.probeOnce();
  RoutingTablePtr first = service.current();
  ASSERT_EQ(first->nodes.size(), 1u);
  EXPECT_EQ(first->version, 1u);
  EXPECT_EQ(first->nodes[0].endpoint, dead);
  EXPECT_EQ(first->nodes[0].health, NodeHealth::Unhealthy);
  EXPECT_FALSE(first->nodes[0].lastError.empty());
  EXPECT_EQ(first->primaryNode(), nullptr);
  EXPECT_EQ(heard, (std::vector<std::uint64_t>{1}));
  service.probeOnce();
  EXPECT_NE(service.current().get(), first.get());  // stored again, same version
  EXPECT_EQ(service.current()->version, 1u);
  EXPECT_EQ(service.current()->nodes[0].consecutiveFailures, 2);
  EXPECT_EQ(heard.size(), 1u);
  EXPECT_EQ(&service.handle(), &service.handle());
}

// A node the source stops offering leaves the next table, and listeners are told.
TEST(DiscoveryService, DropsNodesTheSourceNoLongerOffers) {
  Endpoint a{"127.0.0.1", closedPort()};
  Endpoint b{"127.0.0.1", closedPort()};
  auto source = std::make_unique<FakeSource>(std::vector<Endpoint>{a, b, a});
  FakeSource& fake = *source;
  DiscoveryService service(std::move(source), fastOptions(milliseconds(1000)));
  service.probeOnce();
  ASSERT_EQ(service.current()->nodes.size(), 2u);  // the repeated candidate counts once
  fake.set({b});
  service.probeOnce();
  ASSERT_EQ(service.current()->nodes.size(), 1u);
  EXPECT_EQ(service.current()->nodes[0].id, 1u);
  EXPECT_EQ(service.current()->version, 2u);
}

// start() runs a first round at once, starts the source, and a source change wakes the thread
// long before the interval; stop() stops the source and joins.
TEST(DiscoveryService, ThreadProbesAtStartAndWhenTheSourceChanges) {
  auto source = std::make_unique<FakeSource>(std::vector<Endpoint>{{"127.0.0.1", closedPort()}});
  FakeSource& fake = *source;
  DiscoveryService service(std::move(source), fastOptions(std::chrono::hours(1)));
  std::atomic<int> notified{0};
  service.subscribe([&](const RoutingTablePtr&) { ++notified; });
  service.start();
  EXPECT_EQ(fake.starts, 1);
  EXPECT_TRUE(eventually([&] { return notified == 1; }));
  fake.set({{"127.0.0.1", closedPort()}, {"127.0.0.1", closedPort()}});
  fake.reportChange();
  EXPECT_TRUE(eventually([&] { return notified == 2; }));
  EXPECT_EQ(service.current()->nodes.size(), 2u);
  auto start = std::chrono::steady_clock::now();
  service.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(fake.stops, 1);
  service.stop();  // a second stop is harmless
  EXPECT_EQ(fake.stops, 1);
}

// The thread probes every interval; setOptions changes the policy from the next round.
TEST(DiscoveryService, ProbesEachIntervalAndAppliesNewOptions) {
  Endpoint dead{"127.0.0.1", closedPort()};
  DiscoveryService service(std::make_unique<StaticSource>(std::vector<Endpoint>{dead}),
                           fastOptions(milliseconds(20)));
  service.start();
  EXPECT_TRUE(eventually([&] {
    return service.current()->nodes.size() == 1 &&
           service.current()->nodes[0].consecutiveFailures >= 3;
  }));
  DiscoveryOptions options = fastOptions(milliseconds(20));
  options.probeDsn = "not_an_option=1";
  service.setOptions(options);
  EXPECT_TRUE(eventually([&] {
    return service.current()->nodes[0].lastError.find("invalid probe DSN") != std::string::npos;
  }));
  service.stop();
}

// probeNow wakes a thread that would otherwise sleep for an hour.
TEST(DiscoveryService, ProbeNowWakesTheThread) {
  auto source = std::make_unique<StaticSource>(std::vector<Endpoint>{{"127.0.0.1", closedPort()}});
  StaticSource& endpoints = *source;
  DiscoveryService service(std::move(source), fastOptions(std::chrono::hours(1)));
  service.probeOnce();  // table exists: start() does not probe at once
  service.start();
  endpoints.setEndpoints({});
  service.probeNow();
  EXPECT_TRUE(eventually([&] { return service.current()->nodes.empty(); }));
  EXPECT_EQ(service.current()->primaryProblem, "no candidate nodes to probe");
}

// While the control plane names a primary the table does not have (it has not answered f yet),
// rounds run every fast_probe_interval instead of every probe_interval; without an opinion they
// do not.
TEST(DiscoveryService, FastRoundsWhileTheNamedPrimaryIsUnconfirmed) {
  Endpoint dead{"127.0.0.1", closedPort()};
  DiscoveryOptions options = fastOptions(std::chrono::hours(1));
  options.fastProbeInterval = milliseconds(10);

  auto quiet = std::make_unique<FakeSource>(std::vector<Endpoint>{dead});
  DiscoveryService still(std::move(quiet), options);
  still.start();
  EXPECT_TRUE(eventually([&] { return still.current()->nodes.size() == 1; }));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(still.current()->nodes[0].consecutiveFailures, 1) << "no opinion: one round per hour";
  still.stop();

  auto source = std::make_unique<FakeSource>(std::vector<Endpoint>{dead});
  source->name(dead, true);
  DiscoveryService moving(std::move(source), options);
  moving.start();
  EXPECT_TRUE(eventually([&] {
    return moving.current()->nodes.size() == 1 &&
           moving.current()->nodes[0].consecutiveFailures >= 5;
  }));
  EXPECT_NE(moving.current()->primaryProblem.find("is unhealthy"), std::string::npos)
      << moving.current()->primaryProblem;
  moving.stop();
}

// The snapshot's credentials replace the probe DSN's user and password, and a rotation is
// followed: the next round logs in with the new password. Without credentials the DSN's own are
// used again (and here rejected).
TEST(DiscoveryService, ProbesWithTheSnapshotsCredentialsAndFollowsRotation) {
  FakePostgres server("first");
  ASSERT_TRUE(server.ok());
  Endpoint node{"127.0.0.1", server.port()};
  auto source = std::make_unique<FakeSource>(std::vector<Endpoint>{node});
  FakeSource& fake = *source;
  fake.credentials("app", "first");
  DiscoveryOptions options = fastOptions(std::chrono::hours(1));
  options.probeDsn = "dbname=postgres user=nobody password=dsn-password";
  options.probeTimeout = milliseconds(3000);
  DiscoveryService service(std::move(source), options);
  using Login = FakePostgres::Login;

  service.probeOnce();
  ASSERT_NE(service.current()->primaryNode(), nullptr) << service.current()->nodes[0].lastError;
  EXPECT_EQ(server.logins(), (std::vector<Login>{{"app", "first"}}));

  server.setPassword("second");  // ALTER ROLE app PASSWORD 'second', then the Secret changes
  fake.credentials("app", "second");
  service.probeOnce();
  ASSERT_NE(service.current()->primaryNode(), nullptr) << service.current()->nodes[0].lastError;
  EXPECT_EQ(server.logins(), (std::vector<Login>{{"app", "first"}, {"app", "second"}}));
  service.probeOnce();  // the new session is kept
  EXPECT_EQ(server.logins().size(), 2u);

  fake.credentials("", "");
  service.probeOnce();
  EXPECT_EQ(server.logins().back(), (Login{"nobody", "dsn-password"}));
  EXPECT_EQ(service.current()->primaryNode(), nullptr);
  EXPECT_NE(service.current()->nodes[0].lastError.find("password authentication failed"),
            std::string::npos)
      << service.current()->nodes[0].lastError;
}

// Fast rounds leave out nodes whose last probe failed, except the named primary: a silent old
// primary (it accepts TCP and never answers, as a lost node does until probe_timeout) is not
// probed again, so the new primary is confirmed without waiting for it.
TEST(DiscoveryService, FastRoundsLeaveOutFailingNodesButTheNamedOne) {
  FakePostgres server("right");
  ASSERT_TRUE(server.ok());
  std::uint16_t silentPort = 0;
  int silentFd = testing::openLoopbackSocket(&silentPort, 16);
  ASSERT_GE(silentFd, 0);
  Endpoint silent{"127.0.0.1", silentPort};
  Endpoint leader{"127.0.0.1", server.port()};
  auto source = std::make_unique<FakeSource>(std::vector<Endpoint>{silent, leader});
  FakeSource& fake = *source;
  fake.name(leader, true);
  fake.credentials("app", "wrong");  // the named primary refuses the probe for now
  DiscoveryOptions options = fastOptions(std::chrono::hours(1));
  options.probeTimeout = milliseconds(300);
  options.fastProbeInterval = milliseconds(10);
  options.health = HealthPolicy{.unhealthyAfter = 1, .healthyAfter = 1};
  DiscoveryService service(std::move(source), options);
  service.start();
  auto node = [&](const Endpoint& endpoint) -> NodeState {
    for (const NodeState& n : service.current()->nodes)
      if (n.endpoint == endpoint) return n;
    return NodeState{};
  };
  ASSERT_TRUE(eventually([&] { return node(leader).consecutiveFailures >= 3; }));
  EXPECT_EQ(node(silent).consecutiveFailures, 1) << "only the first, full round probed it";
  auto silentProbe = node(silent).lastProbe;

  fake.credentials("app", "right");
  fake.reportChange();
  ASSERT_TRUE(eventually([&] {
    const NodeState* primary = service.current()->primaryNode();
    return primary != nullptr && primary->endpoint == leader;
  }));
  EXPECT_EQ(node(silent).lastProbe, silentProbe);
  EXPECT_EQ(node(silent).consecutiveFailures, 1);
  service.stop();
  ::close(silentFd);
}

}  // namespace
}  // namespace pgkeel::discovery
