// Tests for PatroniSource's poll loop against fake Patroni REST APIs on loopback.
#include "discovery/patroni_source.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "patroni_fake_rest.h"
#include "test_ports.h"

namespace pgkeel::discovery {
namespace {

using namespace std::chrono_literals;
using testing::closedPort;
using testing::eventually;
using testing::FakePatroniRest;
using testing::SilentServer;

std::string readFixture(const std::string& name) {
  std::ifstream in(std::string(PGKEEL_SHARED_DIR) + "/fixtures/k8s/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string closedUrl() {
  return "http://127.0.0.1:" + std::to_string(closedPort());
}

PatroniOptions options(std::vector<std::string> urls, std::chrono::milliseconds poll = 20ms) {
  PatroniOptions result;
  result.restUrls = std::move(urls);
  result.pollInterval = poll;
  result.requestTimeout = 500ms;
  return result;
}

// Bad URLs and options are refused when the source is made, each with a message.
TEST(PatroniSource, RejectsBadOptions) {
  for (const char* url : {"", "10.0.0.1:8008", "ftp://h:1", "http://", "http://h:0",
                          "http://h:99999", "http://h:8008/cluster", "http://u@h:8008"}) {
    EXPECT_THROW(makePatroniSource(options({url})), std::invalid_argument) << url;
  }
  EXPECT_THROW(makePatroniSource(options({})), std::invalid_argument);
  PatroniOptions noKey = options({"http://h:8008"});
  noKey.etcdUrl = "http://h:2379";
  EXPECT_THROW(makePatroniSource(noKey), std::invalid_argument);
  noKey.etcdUrl = "h:2379";
  noKey.etcdLeaderKey = "/service/lab/leader";
  EXPECT_THROW(makePatroniSource(noKey), std::invalid_argument);
  EXPECT_THROW(makePatroniSource(options({"http://h:8008"}, 0ms)), std::invalid_argument);
  EXPECT_NO_THROW(makePatroniSource(options({"http://h:8008/", "https://[::1]:8008", "http://h"})));
}

// Members are asked in the configured order; one that is down, one that answers 500 and one
// that answers garbage are skipped, and the first good answer wins over later ones.
TEST(PatroniSource, TakesTheFirstGoodAnswerInOrder) {
  FakePatroniRest failing("oops", 503);
  FakePatroniRest garbage("<html>");
  FakePatroniRest good(readFixture("patroni-cluster.json"));         // pg2 leads
  FakePatroniRest later(readFixture("patroni-cluster-async.json"));  // pg0 leads
  auto source = makePatroniSource(
      options({closedUrl(), failing.url(), garbage.url(), good.url(), later.url()}));
  EXPECT_EQ(source->name(), "patroni");
  EXPECT_FALSE(source->stats().synced);
  std::atomic<int> changes{0};
  source->start([&] { ++changes; });
  ASSERT_TRUE(eventually([&] { return source->stats().synced; }));
  source->stop();
  SourceSnapshot snapshot = source->snapshot();
  EXPECT_EQ(snapshot.opinion, LeaderOpinion::Named);
  EXPECT_EQ(snapshot.leaderName, "pg2");
  EXPECT_EQ(snapshot.leader, (Endpoint{"127.0.0.1", 15432}));
  EXPECT_EQ(later.requests(), 0);
  SourceStats stats = source->stats();
  EXPECT_GE(stats.errors["network"], 1u);
  EXPECT_GE(stats.errors["5xx"], 1u);
  EXPECT_GE(stats.errors["parse"], 1u);
  EXPECT_GE(stats.events, 1u);
  EXPECT_EQ(changes, 1);
}

// changed() fires once per different snapshot, not once per poll.
TEST(PatroniSource, CallsChangedOnlyWhenTheSnapshotDiffers) {
  FakePatroniRest rest(readFixture("patroni-cluster-async.json"));
  auto source = makePatroniSource(options({rest.url()}, 10ms));
  std::atomic<int> changes{0};
  source->start([&] { ++changes; });
  ASSERT_TRUE(eventually([&] { return rest.requests() >= 10; }));
  EXPECT_EQ(changes, 1);
  rest.set(readFixture("patroni-cluster.json"));
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg2"; }));
  int seen = rest.requests();
  ASSERT_TRUE(eventually([&] { return rest.requests() >= seen + 5; }));
  EXPECT_EQ(changes, 2);
  source->stop();
  EXPECT_GE(source->stats().events, 10u);
}

// {"members": []} (the DCS outage answer) and then no answer at all: the last members stay
// candidates and the probe elects (NoOpinion); a good answer brings the leader back.
TEST(PatroniSource, KeepsTheLastMembersWhenPatroniCannotTell) {
  FakePatroniRest rest(readFixture("patroni-cluster.json"));
  auto source = makePatroniSource(options({rest.url()}, 10ms));
  source->start([] {});
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg2"; }));
  rest.set(R"({"members": []})");
  ASSERT_TRUE(eventually([&] { return source->snapshot().opinion == LeaderOpinion::NoOpinion; }));
  EXPECT_EQ(source->snapshot().candidates.size(), 3u);
  EXPECT_NE(source->snapshot().detail.find("DCS unreachable"), std::string::npos);
  rest.set("down", 502);
  ASSERT_TRUE(eventually(
      [&] { return source->snapshot().detail.find("no REST API") != std::string::npos; }));
  EXPECT_EQ(source->snapshot().candidates.size(), 3u);
  rest.set(readFixture("patroni-cluster-async.json"));
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg0"; }));
  source->stop();
  EXPECT_GE(source->stats().errors["5xx"], 1u);
}

// A REST API on an IPv6 address is reached (the URL's host is bracketed).
TEST(PatroniSource, ReachesAnIpv6RestApi) {
  FakePatroniRest rest(readFixture("patroni-cluster.json"), 200, "::1");
  if (!rest.ok()) GTEST_SKIP() << "no IPv6 loopback";
  auto source = makePatroniSource(options({rest.url()}));
  source->start([] {});
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg2"; })) << rest.url();
  source->stop();
}

// stop() interrupts a request that is waiting on a server that never answers.
TEST(PatroniSource, StopsPromptlyDuringARequest) {
  SilentServer silent;
  ASSERT_TRUE(silent.ok());
  PatroniOptions slow = options({"http://127.0.0.1:" + std::to_string(silent.port())});
  slow.requestTimeout = 5000ms;
  auto source = makePatroniSource(slow);
  source->start([] {});
  std::this_thread::sleep_for(100ms);  // the first GET is now waiting for an answer
  auto begin = std::chrono::steady_clock::now();
  source->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1000ms);
  EXPECT_FALSE(source->stats().synced);
  EXPECT_EQ(source->snapshot().opinion, LeaderOpinion::NoOpinion);
}

// Destroying a running source stops it.
TEST(PatroniSource, DestructorStops) {
  FakePatroniRest rest(readFixture("patroni-cluster.json"));
  auto source = makePatroniSource(options({rest.url()}, 5ms));
  source->start([] {});
  ASSERT_TRUE(eventually([&] { return rest.requests() >= 2; }));
  source.reset();
  int after = rest.requests();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(rest.requests(), after);
}

}  // namespace
}  // namespace pgkeel::discovery
