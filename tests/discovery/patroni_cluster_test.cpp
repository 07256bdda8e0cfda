// Tests for the pure Patroni decisions: /cluster parsing, and replays of the real lab captures.
#include "../../discovery/src/patroni/cluster_view.h"  // private to the library; reached on purpose

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace pgkeel::discovery::patroni {
namespace {

using nlohmann::json;

std::string readFixture(const std::string& name) {
  std::ifstream in(std::string(PGKEEL_SHARED_DIR) + "/fixtures/k8s/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

ClusterAnswer parseOrFail(const std::string& body) {
  std::string error;
  std::optional<ClusterAnswer> answer = parseCluster(body, &error);
  EXPECT_TRUE(answer.has_value()) << error;
  return answer.value_or(ClusterAnswer{});
}

SourceSnapshot viewOf(const std::string& body) {
  ClusterTracker tracker;
  tracker.onAnswer(parseOrFail(body));
  return tracker.snapshot();
}

RoleHint hintOf(const SourceSnapshot& snapshot, const std::string& name) {
  for (const Candidate& candidate : snapshot.candidates) {
    if (candidate.name == name) return candidate.hint;
  }
  ADD_FAILURE() << name << " is not a candidate";
  return RoleHint::None;
}

// A real 3.0.2 answer with synchronous_mode: every field read, the leader named.
TEST(PatroniCluster, ParsesTheSyncClusterFixture) {
  ClusterAnswer answer = parseOrFail(readFixture("patroni-cluster.json"));
  ASSERT_EQ(answer.members.size(), 3u);
  EXPECT_EQ(answer.members[0],
            (Member{"pg0", "sync_standby", "running", "127.0.0.1", 15430, 3u, 0u}));
  EXPECT_EQ(answer.members[2], (Member{"pg2", "leader", "running", "127.0.0.1", 15432, 3u, {}}));
  EXPECT_FALSE(answer.paused);
  SourceSnapshot snapshot = viewOf(readFixture("patroni-cluster.json"));
  EXPECT_EQ(snapshot.opinion, LeaderOpinion::Named);
  EXPECT_EQ(snapshot.leader, (Endpoint{"127.0.0.1", 15432}));
  EXPECT_EQ(snapshot.leaderName, "pg2");
  EXPECT_FALSE(snapshot.moving);
  EXPECT_EQ(snapshot.detail, "patroni: leader pg2 (127.0.0.1:15432)");
  EXPECT_EQ(snapshot.candidates,
            (std::vector<Candidate>{{{"127.0.0.1", 15430}, RoleHint::Replica, "pg0"},
                                    {{"127.0.0.1", 15431}, RoleHint::Replica, "pg1"},
                                    {{"127.0.0.1", 15432}, RoleHint::Primary, "pg2"}}));
}

// A real 3.0.2 answer without sync mode.
TEST(PatroniCluster, ParsesTheAsyncClusterFixture) {
  SourceSnapshot snapshot = viewOf(readFixture("patroni-cluster-async.json"));
  EXPECT_EQ(snapshot.opinion, LeaderOpinion::Named);
  EXPECT_EQ(snapshot.leaderName, "pg0");
  EXPECT_EQ(snapshot.leader, (Endpoint{"127.0.0.1", 15430}));
  EXPECT_EQ(hintOf(snapshot, "pg1"), RoleHint::Replica);
  EXPECT_EQ(hintOf(snapshot, "pg2"), RoleHint::Replica);
}

// Patroni >= 4.1: replication states instead of "running", lsn strings, lag "unknown" elsewhere.
TEST(PatroniCluster, ParsesTheVersion4Fixture) {
  ClusterAnswer answer = parseOrFail(readFixture("patroni-cluster-v4.json"));
  ASSERT_EQ(answer.members.size(), 3u);
  EXPECT_EQ(answer.members[0].state, "streaming");
  EXPECT_EQ(answer.members[2].state, "in archive recovery");
  EXPECT_EQ(answer.members[2].lag, 16777216u);
  EXPECT_EQ(answer.members[2].timeline, 2u);
  SourceSnapshot snapshot = viewOf(readFixture("patroni-cluster-v4.json"));
  EXPECT_EQ(snapshot.leaderName, "acid-main-1");
  EXPECT_EQ(snapshot.leader, (Endpoint{"10.244.2.31", 5432}));
  EXPECT_EQ(hintOf(snapshot, "acid-main-0"), RoleHint::Replica);
  EXPECT_EQ(hintOf(snapshot, "acid-main-2"), RoleHint::Replica);
}

// "unknown" lag, members without a name or an address, and quorum_standby (4.x).
TEST(PatroniCluster, ToleratesPartialMembers) {
  ClusterAnswer answer = parseOrFail(R"({"members":[
    {"name":"a","role":"leader","state":"running","host":"10.0.0.1","port":5432,"timeline":7},
    {"name":"b","role":"quorum_standby","state":"streaming","host":"10.0.0.2","port":5432,
     "lag":"unknown"},
    {"name":"c","role":"replica","state":"starting"},
    {"name":"d","role":"replica","state":"running","host":"10.0.0.4","port":"5432"},
    {"role":"replica","host":"10.0.0.5","port":5432}, 17]})");
  ASSERT_EQ(answer.members.size(), 4u);
  EXPECT_FALSE(answer.members[1].lag.has_value());
  EXPECT_TRUE(answer.members[2].host.empty());
  EXPECT_EQ(answer.members[3].port, 0);
  EXPECT_TRUE(answer.members[3].host.empty()) << "no usable port, no address";
  ClusterTracker tracker;
  tracker.onAnswer(answer);
  SourceSnapshot snapshot = tracker.snapshot();
  EXPECT_EQ(snapshot.candidates,
            (std::vector<Candidate>{{{"10.0.0.1", 5432}, RoleHint::Primary, "a"},
                                    {{"10.0.0.2", 5432}, RoleHint::Replica, "b"}}));
}

// Not JSON, or no members array: an error, never a view.
TEST(PatroniCluster, RejectsBadBodies) {
  for (const char* body : {"", "<html>", "[]", R"({"members":3})", R"({"pause":true})"}) {
    std::string error;
    EXPECT_FALSE(parseCluster(body, &error).has_value()) << body;
    EXPECT_FALSE(error.empty()) << body;
  }
}

// A leader that holds the lock while Postgres is not running is still the only one who may
// take writes; discovery is told the primary is moving.
TEST(PatroniCluster, LeaderNotRunningIsNamedAndMoving) {
  SourceSnapshot snapshot = viewOf(R"({"members":[
    {"name":"a","role":"leader","state":"starting","host":"10.0.0.1","port":5432},
    {"name":"b","role":"replica","state":"running","host":"10.0.0.2","port":5432}],
    "pause":true})");
  EXPECT_EQ(snapshot.opinion, LeaderOpinion::Named);
  EXPECT_EQ(snapshot.leaderName, "a");
  EXPECT_TRUE(snapshot.moving);
  EXPECT_EQ(snapshot.detail, "patroni: leader a (10.0.0.1:5432) state starting (paused)");
  EXPECT_EQ(hintOf(snapshot, "a"), RoleHint::None);
}

// A standby cluster's standby_leader is in recovery: no writes, and nothing is moving.
TEST(PatroniCluster, StandbyClusterHasNoPrimary) {
  SourceSnapshot snapshot = viewOf(R"({"members":[
    {"name":"a","role":"standby_leader","state":"streaming","host":"10.0.0.1","port":5432},
    {"name":"b","role":"replica","state":"streaming","host":"10.0.0.2","port":5432}]})");
  EXPECT_EQ(snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_FALSE(snapshot.moving);
  EXPECT_EQ(hintOf(snapshot, "a"), RoleHint::Replica);
}

// Before any answer the source has no candidates and no opinion.
TEST(PatroniCluster, NothingBeforeTheFirstAnswer) {
  ClusterTracker tracker;
  EXPECT_FALSE(tracker.answered());
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::NoOpinion);
  EXPECT_TRUE(tracker.snapshot().candidates.empty());
  tracker.onAnswer(ClusterAnswer{});  // {"members": []} first: still nothing known
  EXPECT_FALSE(tracker.answered());
  EXPECT_TRUE(tracker.snapshot().candidates.empty());
}

// ---------------------------------------------------------------------------------------------
// Replays of the lab captures: each line is one poll (the /cluster body, or none when every
// member failed) and what each node answered to pg_is_in_recovery() at that moment.

struct PollLine {
  double t = 0;
  std::optional<std::string> cluster;
  std::map<std::string, std::string> recovery;  // "t", "f", "conn_refused"
};

std::vector<PollLine> readPoll(const std::string& name) {
  std::vector<PollLine> lines;
  std::istringstream in(readFixture(name));
  std::string text;
  while (std::getline(in, text)) {
    if (text.empty()) continue;
    json line = json::parse(text);
    PollLine poll;
    poll.t = line["t"];
    if (line.contains("cluster")) poll.cluster = line["cluster"].dump();
    poll.recovery = line["recovery"].get<std::map<std::string, std::string>>();
    lines.push_back(std::move(poll));
  }
  EXPECT_GE(lines.size(), 4u) << name;
  return lines;
}

void feed(ClusterTracker& tracker, const PollLine& line) {
  if (line.cluster) {
    tracker.onAnswer(parseOrFail(*line.cluster));
  } else {
    tracker.onNoAnswer(NoAnswer::Unreachable);
  }
}

// Where writes would go with this snapshot and these probe answers: the named node if it
// answers f; with no opinion the only node answering f; otherwise nowhere ("").
std::string writer(const SourceSnapshot& snapshot, const std::map<std::string, std::string>& rec) {
  if (snapshot.opinion == LeaderOpinion::Named) {
    auto it = rec.find(snapshot.leaderName);
    return it != rec.end() && it->second == "f" ? snapshot.leaderName : "";
  }
  if (snapshot.opinion == LeaderOpinion::Nobody) return "";
  std::string only;
  for (const auto& [name, answer] : rec) {
    if (answer != "f") continue;
    if (!only.empty()) return "";
    only = name;
  }
  return only;
}

struct Expected {
  LeaderOpinion opinion;
  std::string leader;  // Named: the member
  bool moving = false;
};

void replay(const std::string& fixture, const std::function<Expected(double)>& expected) {
  ClusterTracker tracker;
  for (const PollLine& line : readPoll(fixture)) {
    feed(tracker, line);
    SourceSnapshot snapshot = tracker.snapshot();
    Expected want = expected(line.t);
    SCOPED_TRACE(fixture + " t=" + std::to_string(line.t) + ": " + snapshot.detail);
    EXPECT_EQ(snapshot.opinion, want.opinion);
    EXPECT_EQ(snapshot.leaderName, want.leader);
    EXPECT_EQ(snapshot.moving, want.moving);
    std::string to = writer(snapshot, line.recovery);
    if (!to.empty()) {
      EXPECT_EQ(to, want.leader) << "writes would go to the wrong node";
    }
  }
}

Expected named(const std::string& leader) {
  return {LeaderOpinion::Named, leader, false};
}

// Switchover pg0 -> pg1: /cluster names pg0 until pg1 holds the lock (about 1.3 s without a
// writable node in between, which the probe shows); never two names.
TEST(PatroniReplay, Switchover) {
  replay("patroni-switchover-poll.jsonl",
         [](double t) { return t < 3.6 ? named("pg0") : named("pg1"); });
}

// kill -9 of the leader: a replica keeps listing the dead leader until its key expires, then
// pg2 is named; the dead pg1 leaves the candidates with its member key.
TEST(PatroniReplay, Failover) {
  replay("patroni-failover-poll.jsonl",
         [](double t) { return t < 21 ? named("pg1") : named("pg2"); });
  ClusterTracker tracker;
  for (const PollLine& line : readPoll("patroni-failover-poll.jsonl")) feed(tracker, line);
  EXPECT_EQ(tracker.snapshot().candidates.size(), 2u);
}

// Only pg0's Patroni was killed; its Postgres still answers f after pg1 took the lock. Once the
// lock is gone pg0 is never named again, though it is the only f for a while, and once pg1 holds
// the lock only pg1 is.
TEST(PatroniReplay, SplitBrainNeverNamesTheLockLoser) {
  replay("patroni-split-brain-poll.jsonl", [](double t) {
    if (t < 20) return named("pg0");
    if (t < 21.5) return Expected{LeaderOpinion::Nobody, "", true};
    return named("pg1");
  });
  int twoPrimaries = 0;
  for (const PollLine& line : readPoll("patroni-split-brain-poll.jsonl")) {
    twoPrimaries += line.recovery.at("pg0") == "f" && line.recovery.at("pg1") == "f";
  }
  EXPECT_GT(twoPrimaries, 0) << "the capture has two nodes answering f";
}

// etcd frozen: while /cluster is unreachable or empty the last members stay candidates and the
// probe decides (Patroni demoted pg2 itself; every node answered t). A partial answer with no
// leader is Nobody; then pg2 is promoted again.
TEST(PatroniReplay, DcsOutageKeepsTheLastMembersAndDefersToTheProbe) {
  replay("patroni-dcs-outage-poll.jsonl", [](double t) {
    if (t < 15) return named("pg2");
    if (t < 29) return Expected{LeaderOpinion::NoOpinion, "", false};
    if (t < 30) return Expected{LeaderOpinion::Nobody, "", true};
    return named("pg2");
  });
  ClusterTracker tracker;
  for (const PollLine& line : readPoll("patroni-dcs-outage-poll.jsonl")) {
    feed(tracker, line);
    if (line.t > 18 && line.t < 29) {
      EXPECT_EQ(tracker.snapshot().candidates.size(), 3u) << "t=" << line.t;
      EXPECT_NE(tracker.snapshot().detail.find(line.cluster ? "DCS unreachable" : "no REST API"),
                std::string::npos)
          << tracker.snapshot().detail;
    }
  }
}

// The killed node comes back: listed stopped (no hint), then a running replica.
TEST(PatroniReplay, Rejoin) {
  replay("patroni-rejoin-poll.jsonl", [](double) { return named("pg2"); });
  ClusterTracker tracker;
  auto lines = readPoll("patroni-rejoin-poll.jsonl");
  feed(tracker, lines[1]);
  EXPECT_EQ(hintOf(tracker.snapshot(), "pg1"), RoleHint::None);
  feed(tracker, lines.back());
  EXPECT_EQ(hintOf(tracker.snapshot(), "pg1"), RoleHint::Replica);
}

// ---------------------------------------------------------------------------------------------
// The etcd leader key refining /cluster.

LeaderKey held(const std::string& holder) {
  return {LeaderKey::State::Held, holder, ""};
}

LeaderKey absent(const std::string& deleted) {
  return {LeaderKey::State::Absent, "", deleted};
}

// A deleted key is Nobody while /cluster still names the old leader, and a new leader in
// /cluster (or the key written again) ends it.
TEST(PatroniLeaderKey, DeletedKeyMeansNobodyUntilANewLeader) {
  ClusterTracker tracker;
  tracker.onAnswer(parseOrFail(readFixture("patroni-cluster-async.json")));  // pg0 leads
  tracker.onLeaderKey(held("pg0"));
  EXPECT_EQ(tracker.snapshot().leaderName, "pg0");
  tracker.onLeaderKey(absent("pg0"));
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Nobody);
  EXPECT_TRUE(tracker.snapshot().moving);
  tracker.onAnswer(parseOrFail(readFixture("patroni-cluster.json")));  // pg2 leads
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Named);
  EXPECT_EQ(tracker.snapshot().leaderName, "pg2");
  tracker.onLeaderKey(absent(""));  // deleted, and we do not know whose: nobody at all
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Nobody);
  tracker.onLeaderKey(held("pg2"));
  EXPECT_EQ(tracker.snapshot().leaderName, "pg2");
}

// /cluster naming a node other than the key's holder is stale: nobody, moving.
TEST(PatroniLeaderKey, StaleClusterAnswerIsOverruled) {
  ClusterTracker tracker;
  tracker.onAnswer(parseOrFail(readFixture("patroni-cluster-async.json")));  // pg0 leads
  tracker.onLeaderKey(held("pg1"));
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Nobody);
  EXPECT_TRUE(tracker.snapshot().moving);
  EXPECT_EQ(tracker.snapshot().detail, "patroni: /cluster names pg0 but the leader key holds pg1");
  tracker.onLeaderKey(LeaderKey{});  // watch down: /cluster alone again
  EXPECT_EQ(tracker.snapshot().leaderName, "pg0");
}

// Without a usable /cluster the key does not bring back an opinion: the probe decides.
// Without a /cluster answer the watched leader key still decides: held by a known member names it,
// deleted names nobody; with no key news the probe elects among the last known members.
TEST(PatroniLeaderKey, NoAnswerFollowsTheKeyElseTheProbe) {
  ClusterTracker tracker;
  ClusterAnswer answer = parseOrFail(readFixture("patroni-cluster-async.json"));
  const std::string leader =
      answer.members[0].role == "leader" ? answer.members[0].name : answer.members[1].name;
  tracker.onAnswer(answer);
  tracker.onNoAnswer(NoAnswer::Unreachable);
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::NoOpinion);
  EXPECT_EQ(tracker.snapshot().candidates.size(), 3u);
  tracker.onLeaderKey(held(leader));
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Named);
  EXPECT_EQ(tracker.snapshot().leaderName, leader);
  tracker.onLeaderKey(held("stranger"));
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Nobody);
  LeaderKey gone;
  gone.state = LeaderKey::State::Absent;
  tracker.onLeaderKey(gone);
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Nobody);
  EXPECT_EQ(tracker.snapshot().candidates.size(), 3u);
}

// A failover under way (no leader in /cluster) is not undone by a poll that fails: the last
// "nobody" holds, so the probe cannot elect an orphaned old primary still answering f.
TEST(PatroniLeaderKey, NoLeaderHoldsThroughAFailedPoll) {
  ClusterTracker tracker;
  ClusterAnswer answer = parseOrFail(readFixture("patroni-cluster-async.json"));
  for (Member& member : answer.members) {
    if (member.role == "leader") member.role = "replica";
  }
  tracker.onAnswer(answer);
  ASSERT_EQ(tracker.snapshot().opinion, LeaderOpinion::Nobody);
  tracker.onNoAnswer(NoAnswer::Unreachable);
  EXPECT_EQ(tracker.snapshot().opinion, LeaderOpinion::Nobody);
  EXPECT_TRUE(tracker.snapshot().moving);
}

}  // namespace
}  // namespace pgkeel::discovery::patroni
