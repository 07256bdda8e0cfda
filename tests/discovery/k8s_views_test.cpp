// Tests for the pure CNPG and Zalando views, replaying the watch fixtures event by event.
#include "../../discovery/src/k8s/views.h"  // private to the library; tests reach in on purpose

#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

namespace pgkeel::discovery::k8s {
namespace {

using nlohmann::json;
using std::chrono::system_clock;

constexpr std::uint16_t kPort = 5432;

std::string fixturePath(const std::string& name) {
  return std::string(PGKEEL_SHARED_DIR) + "/fixtures/k8s/" + name;
}

json readJson(const std::string& name) {
  std::ifstream in(fixturePath(name));
  EXPECT_TRUE(in.good()) << name;
  return json::parse(in);
}

// One watch event of a JSONL stream, and which stream it came from.
struct WatchEvent {
  std::string type;
  json object;
  long long resourceVersion = 0;  // fixtures use numbers; real clients never compare RVs
  int stream = 0;
};

std::vector<WatchEvent> readStream(const std::string& name, int stream) {
  std::ifstream in(fixturePath(name));
  EXPECT_TRUE(in.good()) << name;
  std::vector<WatchEvent> events;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json event = json::parse(line);
    std::string rv = event["object"]["metadata"]["resourceVersion"];
    events.push_back({event["type"], event["object"], std::stoll(rv), stream});
  }
  EXPECT_FALSE(events.empty()) << name;
  return events;
}

// Several streams of one scenario in the order etcd wrote them (one shared RV sequence).
std::vector<WatchEvent> mergeByResourceVersion(std::vector<std::vector<WatchEvent>> streams) {
  std::vector<WatchEvent> merged;
  for (auto& stream : streams) merged.insert(merged.end(), stream.begin(), stream.end());
  std::stable_sort(merged.begin(), merged.end(), [](const WatchEvent& a, const WatchEvent& b) {
    return a.resourceVersion < b.resourceVersion;
  });
  return merged;
}

// An informer's cache in miniature: ADDED/MODIFIED store, DELETED erases, BOOKMARK is ignored.
void apply(ObjectMap& objects, const WatchEvent& event) {
  if (event.type == "BOOKMARK") return;
  std::string name = event.object["metadata"]["name"];
  if (event.type == "DELETED") {
    objects.erase(name);
  } else {
    ASSERT_TRUE(event.type == "ADDED" || event.type == "MODIFIED") << event.type;
    objects[name] = event.object;
  }
}

ObjectMap fromList(const json& list) {
  ObjectMap objects;
  for (const json& item : list["items"]) objects[item["metadata"]["name"]] = item;
  return objects;
}

const json* find(const ObjectMap& objects, const std::string& name) {
  auto it = objects.find(name);
  return it == objects.end() ? nullptr : &it->second;
}

RoleHint hintOf(const SourceSnapshot& snapshot, const std::string& name) {
  for (const Candidate& candidate : snapshot.candidates) {
    if (candidate.name == name) return candidate.hint;
  }
  ADD_FAILURE() << name << " is not a candidate";
  return RoleHint::None;
}

system_clock::time_point at(const std::string& iso) {
  // Test-side parse of "YYYY-MM-DDTHH:MM:SS.ffffff+00:00" (UTC only), independent of the view's.
  std::tm tm{};
  std::istringstream in(iso.substr(0, 19));
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  auto seconds = system_clock::from_time_t(timegm(&tm));
  long micros = iso.size() > 20 && iso[19] == '.' ? std::stol(iso.substr(20, 6)) : 0;
  return seconds + std::chrono::microseconds(micros);
}

// ---------------------------------------------------------------------------------------------
// CloudNativePG

ObjectMap cnpgPods() {
  return fromList(readJson("cnpg-pods-list.json"));
}

json cnpgCluster() {
  return readJson("cnpg-cluster-3-instances.json");
}

// A healthy cluster names currentPrimary, with one candidate per pod hinted by its labels.
TEST(K8sViewCnpg, HealthyClusterNamesCurrentPrimary) {
  json cluster = cnpgCluster();
  View view = cnpgView(&cluster, cnpgPods(), kPort);
  const SourceSnapshot& snapshot = view.snapshot;
  EXPECT_EQ(snapshot.opinion, LeaderOpinion::Named);
  EXPECT_EQ(snapshot.leaderName, "pg-main-1");
  EXPECT_EQ(snapshot.leader, (Endpoint{"10.244.1.12", kPort}));
  EXPECT_FALSE(snapshot.moving);
  EXPECT_EQ(snapshot.detail, "cnpg db/pg-main: primary pg-main-1 (3/3 ready)");
  EXPECT_EQ(snapshot.candidates,
            (std::vector<Candidate>{{{"10.244.1.12", kPort}, RoleHint::Primary, "pg-main-1"},
                                    {{"10.244.2.15", kPort}, RoleHint::Replica, "pg-main-2"},
                                    {{"10.244.3.9", kPort}, RoleHint::Replica, "pg-main-3"}}));
  EXPECT_FALSE(view.recheckAt.has_value());
}

// The whole automated failover, cluster and pod watches merged by resourceVersion: after every
// event the view matches the rule "a primary only while currentPrimary == targetPrimary".
TEST(K8sViewCnpg, ReplaysFailoverEventByEvent) {
  ObjectMap clusters = fromList(readJson("cnpg-clusters-list.json"));
  ObjectMap pods = cnpgPods();
  auto events = mergeByResourceVersion({readStream("cnpg-watch-failover.jsonl", 0),
                                        readStream("cnpg-pods-watch-failover.jsonl", 1)});
  int applied = 0;
  bool sawNoPrimaryLabel = false;
  for (const WatchEvent& event : events) {
    apply(event.stream == 0 ? clusters : pods, event);
    applied += event.type != "BOOKMARK";
    View view = cnpgView(find(clusters, "pg-main"), pods, kPort);
    const SourceSnapshot& s = view.snapshot;
    SCOPED_TRACE("rv " + std::to_string(event.resourceVersion) + ": " + s.detail);
    long long rv = event.resourceVersion;
    if (rv < 48233) {  // targetPrimary still pg-main-1 (even with phase "Failing over")
      EXPECT_EQ(s.opinion, LeaderOpinion::Named);
      EXPECT_EQ(s.leaderName, "pg-main-1");
      EXPECT_FALSE(s.moving);
    } else if (rv < 48241) {  // targetPrimary "pending"
      EXPECT_EQ(s.opinion, LeaderOpinion::Nobody);
      EXPECT_TRUE(s.moving);
      EXPECT_NE(s.detail.find("pg-main-1 -> pending"), std::string::npos);
    } else if (rv < 48246) {  // targetPrimary pg-main-2, not promoted yet
      EXPECT_EQ(s.opinion, LeaderOpinion::Named);
      EXPECT_EQ(s.leaderName, "pg-main-2");
      EXPECT_EQ(s.leader, (Endpoint{"10.244.2.15", kPort}));
      EXPECT_TRUE(s.moving);
    } else {  // currentPrimary == targetPrimary == pg-main-2
      EXPECT_EQ(s.opinion, LeaderOpinion::Named);
      EXPECT_EQ(s.leaderName, "pg-main-2");
      EXPECT_EQ(s.leader, (Endpoint{"10.244.2.15", kPort}));
      EXPECT_FALSE(s.moving);
    }
    if (rv >= 48233) {
      EXPECT_NE(s.leaderName, "pg-main-1");
    }
    if (rv >= 48234 && rv < 48248) {  // labelled unhealthy, then restarting
      EXPECT_EQ(hintOf(s, "pg-main-1"), RoleHint::None);
    }
    bool anyPrimaryLabel =
        std::any_of(s.candidates.begin(), s.candidates.end(),
                    [](const Candidate& c) { return c.hint == RoleHint::Primary; });
    if (rv == 48248) {  // pg-main-1 relabelled replica before pg-main-2 gets primary
      EXPECT_FALSE(anyPrimaryLabel);
      sawNoPrimaryLabel = !anyPrimaryLabel && s.opinion == LeaderOpinion::Named;
    }
    EXPECT_EQ(s.candidates.size(), 3u);
  }
  EXPECT_EQ(applied, 14);
  EXPECT_TRUE(sawNoPrimaryLabel);
  // The end state is the same as the captured Cluster after the failover.
  json after = readJson("cnpg-cluster-after-failover.json");
  View finalView = cnpgView(&after, pods, kPort);
  EXPECT_EQ(finalView.snapshot.opinion, LeaderOpinion::Named);
  EXPECT_EQ(finalView.snapshot.leaderName, "pg-main-2");
  EXPECT_EQ(hintOf(finalView.snapshot, "pg-main-2"), RoleHint::Primary);
  EXPECT_EQ(hintOf(finalView.snapshot, "pg-main-1"), RoleHint::Replica);
}

// While the Cluster is unknown (not listed yet, or deleted) nobody gets writes; pods stay probed.
TEST(K8sViewCnpg, UnknownClusterNamesNobody) {
  View view = cnpgView(nullptr, cnpgPods(), kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_EQ(view.snapshot.detail, "cnpg: cluster not found");
  EXPECT_EQ(view.snapshot.candidates.size(), 3u);
}

// A target pod that has no IP (or is not listed) cannot be named: Nobody while moving.
TEST(K8sViewCnpg, TargetWithoutAddressIsNobody) {
  json cluster = cnpgCluster();
  cluster["status"]["targetPrimary"] = "pg-main-2";
  ObjectMap pods = cnpgPods();
  pods["pg-main-2"]["status"].erase("podIP");
  View view = cnpgView(&cluster, pods, kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_TRUE(view.snapshot.moving);
  EXPECT_NE(view.snapshot.detail.find("pg-main-1 -> pg-main-2 (pod has no IP)"), std::string::npos)
      << view.snapshot.detail;
  EXPECT_EQ(view.snapshot.candidates.size(), 2u);
  pods.erase("pg-main-2");
  view = cnpgView(&cluster, pods, kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_NE(view.snapshot.detail.find("(pod not found)"), std::string::npos);
}

// Pooler and job pods, and pods without an IP, are not candidates; missing role labels give no
// hint; CNPG <= 1.20 pods with only `role` are still hinted.
TEST(K8sViewCnpg, CandidatesAreInstancePodsWithAnAddress) {
  json cluster = cnpgCluster();
  ObjectMap pods = cnpgPods();
  json pooler = pods["pg-main-3"];
  pooler["metadata"]["name"] = "pg-main-pooler-rw-1";
  pooler["metadata"]["labels"]["cnpg.io/podRole"] = "pooler";
  pods["pg-main-pooler-rw-1"] = pooler;
  json job = pods["pg-main-3"];
  job["metadata"]["name"] = "pg-main-1-initdb";
  job["metadata"]["labels"].erase("cnpg.io/podRole");
  pods["pg-main-1-initdb"] = job;
  pods["pg-main-2"]["metadata"]["labels"].erase("cnpg.io/instanceRole");
  pods["pg-main-2"]["metadata"]["labels"].erase("role");
  pods["pg-main-3"]["metadata"]["labels"].erase("cnpg.io/instanceRole");  // only `role` left
  View view = cnpgView(&cluster, pods, kPort);
  ASSERT_EQ(view.snapshot.candidates.size(), 3u);
  EXPECT_EQ(hintOf(view.snapshot, "pg-main-2"), RoleHint::None);
  EXPECT_EQ(hintOf(view.snapshot, "pg-main-3"), RoleHint::Replica);
  EXPECT_EQ(view.snapshot.leaderName, "pg-main-1");
}

// readyInstances and instances are omitempty: absent reads as 0, not as unknown.
TEST(K8sViewCnpg, MissingInstanceCountsReadAsZero) {
  json cluster = cnpgCluster();
  cluster["status"].erase("readyInstances");
  View view = cnpgView(&cluster, cnpgPods(), kPort);
  EXPECT_EQ(view.snapshot.detail, "cnpg db/pg-main: primary pg-main-1 (0/3 ready)");
  cluster["status"].erase("instances");
  view = cnpgView(&cluster, cnpgPods(), kPort);
  EXPECT_EQ(view.snapshot.detail, "cnpg db/pg-main: primary pg-main-1 (0/0 ready)");
}

// A pod being deleted is still probed (without a hint) but is never named the primary.
TEST(K8sViewCnpg, TerminatingPrimaryIsNotNamed) {
  json cluster = cnpgCluster();
  ObjectMap pods = cnpgPods();
  pods["pg-main-1"]["metadata"]["deletionTimestamp"] = "2025-06-10T14:10:00Z";
  View view = cnpgView(&cluster, pods, kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_NE(view.snapshot.detail.find("(pod terminating)"), std::string::npos);
  EXPECT_EQ(hintOf(view.snapshot, "pg-main-1"), RoleHint::None);
}

// A replica cluster's designated primary is in recovery: no writes anywhere.
TEST(K8sViewCnpg, ReplicaClusterNamesNobody) {
  json cluster = cnpgCluster();
  cluster["spec"]["replica"] = {{"enabled", true}, {"source", "pg-origin"}};
  View view = cnpgView(&cluster, cnpgPods(), kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_NE(view.snapshot.detail.find("replica cluster"), std::string::npos);
}

// A new cluster with neither currentPrimary nor targetPrimary has no primary yet.
TEST(K8sViewCnpg, NewClusterHasNoPrimaryYet) {
  json cluster = cnpgCluster();
  cluster["status"].erase("currentPrimary");
  cluster["status"].erase("targetPrimary");
  View view = cnpgView(&cluster, cnpgPods(), kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_FALSE(view.snapshot.moving);
  cluster["status"]["targetPrimary"] = "pg-main-1";  // bootstrap: target chosen, not promoted
  view = cnpgView(&cluster, cnpgPods(), kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Named);
  EXPECT_TRUE(view.snapshot.moving);
}

// ---------------------------------------------------------------------------------------------
// Zalando / Patroni on Kubernetes

ObjectMap zalandoPods() {
  return fromList(readJson("zalando-pods-list.json"));
}

const char* kFirstRenew = "2025-06-11T08:20:01.773519+00:00";  // the leader fixture's renewTime

// A live leader lock names its pod, and the view asks to be rechecked when the lock runs out.
TEST(K8sViewZalando, LiveLeaderIsNamed) {
  json leader = readJson("patroni-k8s-leader-configmap.json");
  View view = zalandoView(zalandoPods(), &leader, at(kFirstRenew) + std::chrono::seconds(5), kPort);
  const SourceSnapshot& s = view.snapshot;
  EXPECT_EQ(s.opinion, LeaderOpinion::Named);
  EXPECT_EQ(s.leaderName, "acid-main-0");
  EXPECT_EQ(s.leader, (Endpoint{"10.244.1.20", kPort}));
  EXPECT_FALSE(s.moving);
  EXPECT_EQ(s.detail, "zalando db/acid-main: leader acid-main-0");
  EXPECT_EQ(s.candidates,
            (std::vector<Candidate>{{{"10.244.1.20", kPort}, RoleHint::Primary, "acid-main-0"},
                                    {{"10.244.2.31", kPort}, RoleHint::Replica, "acid-main-1"},
                                    {{"10.244.3.17", kPort}, RoleHint::Replica, "acid-main-2"}}));
  ASSERT_TRUE(view.recheckAt.has_value());
  EXPECT_EQ(*view.recheckAt, at(kFirstRenew) + std::chrono::seconds(30));
}

// The lock counts only while renewTime + ttl is in the future; then nobody, until a new leader.
TEST(K8sViewZalando, LeaderExpiresByTime) {
  json leader = readJson("patroni-k8s-leader-configmap.json");
  auto expiry = at(kFirstRenew) + std::chrono::seconds(30);
  View before = zalandoView(zalandoPods(), &leader, expiry - std::chrono::microseconds(1), kPort);
  EXPECT_EQ(before.snapshot.opinion, LeaderOpinion::Named);
  View after = zalandoView(zalandoPods(), &leader, expiry, kPort);
  EXPECT_EQ(after.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_TRUE(after.snapshot.moving);
  EXPECT_EQ(after.snapshot.detail,
            "zalando db/acid-main: leader acid-main-0 lock expired at 2025-06-11T08:20:31Z");
  EXPECT_FALSE(after.recheckAt.has_value());
  // The same instant written with another offset is the same expiry.
  leader["metadata"]["annotations"]["renewTime"] = "2025-06-11T10:20:01.773519+02:00";
  EXPECT_EQ(zalandoView(zalandoPods(), &leader, expiry - std::chrono::microseconds(1), kPort)
                .snapshot.opinion,
            LeaderOpinion::Named);
  EXPECT_EQ(zalandoView(zalandoPods(), &leader, expiry, kPort).snapshot.opinion,
            LeaderOpinion::Nobody);
  leader["metadata"]["annotations"]["renewTime"] = "2025-06-11T08:20:01+00:00";  // no fraction
  EXPECT_EQ(*zalandoView(zalandoPods(), &leader, expiry - std::chrono::seconds(1), kPort).recheckAt,
            at("2025-06-11T08:20:31+00:00"));
}

// Endpoints mode (operator < v2.0) carries the same annotations and gives the same view.
TEST(K8sViewZalando, EndpointsLeaderObjectWorksTheSame) {
  json configMap = readJson("patroni-k8s-leader-configmap.json");
  json endpoints = readJson("patroni-k8s-leader-endpoints.json");
  auto now = at(kFirstRenew) + std::chrono::seconds(1);
  EXPECT_EQ(zalandoView(zalandoPods(), &endpoints, now, kPort).snapshot,
            zalandoView(zalandoPods(), &configMap, now, kPort).snapshot);
}

// No leader annotation (released, or not taken yet), or an unreadable lease: nobody, moving.
TEST(K8sViewZalando, MissingOrBadLeaderAnnotationIsNobody) {
  json leader = readJson("patroni-k8s-leader-configmap.json");
  auto now = at(kFirstRenew);
  leader["metadata"]["annotations"].erase("leader");
  View view = zalandoView(zalandoPods(), &leader, now, kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_TRUE(view.snapshot.moving);
  leader["metadata"]["annotations"]["leader"] = "acid-main-0";
  leader["metadata"]["annotations"]["renewTime"] = "yesterday";
  EXPECT_EQ(zalandoView(zalandoPods(), &leader, now, kPort).snapshot.opinion,
            LeaderOpinion::Nobody);
  leader["metadata"]["annotations"]["renewTime"] = kFirstRenew;
  leader["metadata"]["annotations"].erase("ttl");
  EXPECT_EQ(zalandoView(zalandoPods(), &leader, now, kPort).snapshot.opinion,
            LeaderOpinion::Nobody);
}

// Without a leader object the probe elects alone (NoOpinion); two master labels decide nothing.
TEST(K8sViewZalando, UnknownLeaderObjectLeavesElectionToTheProbe) {
  ObjectMap pods = zalandoPods();
  pods["acid-main-1"]["metadata"]["labels"]["spilo-role"] = "master";
  View view = zalandoView(pods, nullptr, at(kFirstRenew), kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::NoOpinion);
  EXPECT_TRUE(view.snapshot.leaderName.empty());
  EXPECT_EQ(view.snapshot.detail,
            "zalando db/acid-main: leader object not found, election by probe");
  EXPECT_EQ(view.snapshot.candidates.size(), 3u);
}

// The network-partition failover: pod and leader watches merged. Once acid-main-1 holds the
// lock it is the only one named, though acid-main-0 keeps spilo-role=master for a while.
TEST(K8sViewZalando, ReplaysFailoverEventByEvent) {
  ObjectMap pods = zalandoPods();
  ObjectMap leaders;
  leaders["acid-main-leader"] = readJson("patroni-k8s-leader-configmap.json");
  auto events = mergeByResourceVersion({readStream("zalando-watch-failover.jsonl", 0),
                                        readStream("patroni-k8s-leader-watch-failover.jsonl", 1)});
  auto now = at(kFirstRenew) + std::chrono::seconds(1);
  int twoMasterLabels = 0;
  for (const WatchEvent& event : events) {
    apply(event.stream == 0 ? pods : leaders, event);
    std::string renew = leaders["acid-main-leader"]["metadata"]["annotations"]["renewTime"];
    now = std::max(now, at(renew) + std::chrono::seconds(1));  // the event arrives just after
    View view = zalandoView(pods, find(leaders, "acid-main-leader"), now, kPort);
    const SourceSnapshot& s = view.snapshot;
    SCOPED_TRACE("rv " + std::to_string(event.resourceVersion) + ": " + s.detail);
    EXPECT_EQ(s.opinion, LeaderOpinion::Named);
    EXPECT_EQ(s.leaderName, "acid-main-1");
    EXPECT_EQ(s.leader, (Endpoint{"10.244.2.31", kPort}));
    EXPECT_FALSE(s.moving);
    EXPECT_EQ(*view.recheckAt, at(renew) + std::chrono::seconds(30));
    int masters = 0;
    for (const auto& [name, pod] : pods) {
      masters += pod["metadata"]["labels"].value("spilo-role", "") == "master";
    }
    twoMasterLabels += masters == 2;
    if (event.resourceVersion == 90240) {  // label removed while Patroni rewinds (state stopped)
      EXPECT_EQ(hintOf(s, "acid-main-0"), RoleHint::None);
    }
    if (event.resourceVersion >= 90246) {
      EXPECT_EQ(hintOf(s, "acid-main-0"), RoleHint::Replica);
    }
  }
  EXPECT_GT(twoMasterLabels, 0) << "the fixture shows two master labels";
}

// The same period through a spilo-role=master selector (ADDED/DELETED on label changes): a
// leader whose pod is not (yet) in the cache is not named, and the stale master never is.
TEST(K8sViewZalando, MasterSelectorWatchNeverNamesTheStalePod) {
  ObjectMap all = zalandoPods();
  ObjectMap pods;
  for (const auto& [name, pod] : all) {
    if (pod["metadata"]["labels"]["spilo-role"] == "master") pods[name] = pod;
  }
  ObjectMap leaders;
  leaders["acid-main-leader"] = readJson("patroni-k8s-leader-configmap.json");
  auto events = mergeByResourceVersion({readStream("zalando-watch-master-selector.jsonl", 0),
                                        readStream("patroni-k8s-leader-watch-failover.jsonl", 1)});
  auto now = at(kFirstRenew) + std::chrono::seconds(1);
  EXPECT_EQ(zalandoView(pods, find(leaders, "acid-main-leader"), now, kPort).snapshot.leaderName,
            "acid-main-0");
  for (const WatchEvent& event : events) {
    apply(event.stream == 0 ? pods : leaders, event);
    std::string renew = leaders["acid-main-leader"]["metadata"]["annotations"]["renewTime"];
    now = std::max(now, at(renew) + std::chrono::seconds(1));
    const SourceSnapshot s =
        zalandoView(pods, find(leaders, "acid-main-leader"), now, kPort).snapshot;
    SCOPED_TRACE("rv " + std::to_string(event.resourceVersion) + ": " + s.detail);
    EXPECT_NE(s.leaderName, "acid-main-0");
    if (event.resourceVersion == 90190) {  // lock taken; acid-main-1 not yet labelled master
      EXPECT_EQ(s.opinion, LeaderOpinion::Nobody);
      EXPECT_TRUE(s.moving);
      EXPECT_EQ(s.detail, "zalando db/acid-main: leader acid-main-1 (pod not found)");
    } else {
      EXPECT_EQ(s.opinion, LeaderOpinion::Named);
      EXPECT_EQ(s.leaderName, "acid-main-1");
    }
  }
  EXPECT_EQ(pods.count("acid-main-0"), 0u);  // DELETED when it stopped matching
}

// Hints: spilo-role or the status annotation's role while running; disagreement gives none;
// pooler pods (application=db-connection-pooler) and pods without an IP are not candidates.
TEST(K8sViewZalando, HintsAndCandidates) {
  ObjectMap pods = zalandoPods();
  pods["acid-main-2"]["metadata"]["labels"].erase("spilo-role");  // label missing, status running
  json& stale = pods["acid-main-0"];
  stale["metadata"]["annotations"]["status"] = R"({"state":"running","role":"replica"})";
  json pooler = pods["acid-main-1"];
  pooler["metadata"]["name"] = "acid-main-pooler-5d8f7";
  pooler["metadata"]["labels"]["application"] = "db-connection-pooler";
  pods["acid-main-pooler-5d8f7"] = pooler;
  json pending = pods["acid-main-1"];
  pending["metadata"]["name"] = "acid-main-3";
  pending["status"].erase("podIP");
  pods["acid-main-3"] = pending;
  json leader = readJson("patroni-k8s-leader-configmap.json");
  View view = zalandoView(pods, &leader, at(kFirstRenew), kPort);
  ASSERT_EQ(view.snapshot.candidates.size(), 3u);
  EXPECT_EQ(hintOf(view.snapshot, "acid-main-0"), RoleHint::None);     // master vs replica
  EXPECT_EQ(hintOf(view.snapshot, "acid-main-1"), RoleHint::Replica);  // both agree
  EXPECT_EQ(hintOf(view.snapshot, "acid-main-2"), RoleHint::Replica);  // status only
  pods["acid-main-2"]["metadata"]["annotations"]["status"] =
      R"({"state":"stopped","role":"replica"})";
  view = zalandoView(pods, &leader, at(kFirstRenew), kPort);
  EXPECT_EQ(hintOf(view.snapshot, "acid-main-2"), RoleHint::None);
}

// A leader pod that is being deleted is not named.
TEST(K8sViewZalando, TerminatingLeaderIsNotNamed) {
  ObjectMap pods = zalandoPods();
  pods["acid-main-0"]["metadata"]["deletionTimestamp"] = "2025-06-11T08:20:00Z";
  json leader = readJson("patroni-k8s-leader-configmap.json");
  View view = zalandoView(pods, &leader, at(kFirstRenew), kPort);
  EXPECT_EQ(view.snapshot.opinion, LeaderOpinion::Nobody);
  EXPECT_TRUE(view.snapshot.moving);
  EXPECT_EQ(view.snapshot.detail, "zalando db/acid-main: leader acid-main-0 (pod terminating)");
}

// ---- the probe's credentials Secret ----

std::string base64(const std::string& text) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += 3) {
    std::uint32_t n = static_cast<unsigned char>(text[i]) << 16;
    if (i + 1 < text.size()) n |= static_cast<unsigned char>(text[i + 1]) << 8;
    if (i + 2 < text.size()) n |= static_cast<unsigned char>(text[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < text.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < text.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

// The Secret names follow the operators' templates: CNPG <c>-app; Zalando with _ written as -,
// as in the fixture's name.
TEST(K8sViewSecret, NamesFollowTheOperators) {
  EXPECT_EQ(cnpgSecretName("pg-main"), "pg-main-app");
  EXPECT_EQ(zalandoSecretName("orders_app", "acid-main"),
            readJson("zalando-secret-user.json")["metadata"]["name"]);
  EXPECT_EQ(zalandoSecretName("postgres", "acid-main"),
            "postgres.acid-main.credentials.postgresql.acid.zalan.do");
}

// CNPG's basic-auth Secret and Zalando's Opaque one decode to their user and password.
TEST(K8sViewSecret, DecodesTheFixtures) {
  json cnpg = readJson("cnpg-secret-app.json");
  SecretCredentials credentials = secretCredentials(&cnpg);
  EXPECT_EQ(credentials.problem, "");
  EXPECT_EQ(credentials.user, "app");
  EXPECT_EQ(credentials.password, "Zx8qT2mVn4LpR7sWc1Yd9HkE3uJb6GfA");
  json zalando = readJson("zalando-secret-user.json");
  credentials = secretCredentials(&zalando);
  EXPECT_EQ(credentials.problem, "");
  EXPECT_EQ(credentials.user, "orders_app");
  EXPECT_EQ(credentials.password, "Qm9vN2tGd3lQZzN4UmVhbFNlY3JldA9x");
}

// data.username wins over data.user; data.user alone (a user-supplied Secret) is used.
TEST(K8sViewSecret, PrefersUsernameOverUser) {
  json secret = readJson("cnpg-secret-app.json");
  secret["data"]["user"] = base64("other");
  EXPECT_EQ(secretCredentials(&secret).user, "app");
  secret["data"].erase("username");
  EXPECT_EQ(secretCredentials(&secret).user, "other");
  secret["data"]["user"] = base64("o'neil\\x y");
  EXPECT_EQ(secretCredentials(&secret).user, "o'neil\\x y");
}

// A missing Secret, key, or a value that is not base64 or empty gives no credentials at all,
// with the reason.
TEST(K8sViewSecret, UnreadableSecretGivesNoCredentials) {
  EXPECT_EQ(secretCredentials(nullptr).problem, "not found (or not readable)");
  json base = readJson("cnpg-secret-app.json");
  json secret = base;
  secret["data"].erase("password");
  EXPECT_EQ(secretCredentials(&secret).problem, "has no data.password");
  EXPECT_EQ(secretCredentials(&secret).user, "");
  secret = base;
  secret["data"]["password"] = "not*base64";
  EXPECT_EQ(secretCredentials(&secret).problem, "has data.password that is not base64");
  secret = base;
  secret["data"]["username"] = "";
  EXPECT_EQ(secretCredentials(&secret).problem, "has an empty data.username");
  EXPECT_EQ(secretCredentials(&secret).password, "");
  secret = base;
  secret.erase("data");
  EXPECT_EQ(secretCredentials(&secret).problem, "has no data.username");
  secret = base;
  secret["data"]["username"] = 42;
  EXPECT_EQ(secretCredentials(&secret).problem, "has no data.username");
}

// The credentials go into the snapshot (so a rotation changes it), and the log line names the
// user and the Secret's version, never the password.
TEST(K8sViewSecret, FillsTheSnapshotAndSaysWhere) {
  json secret = readJson("cnpg-secret-app.json");
  View view = cnpgView(nullptr, ObjectMap{}, kPort);
  SourceSnapshot without = view.snapshot;
  applySecretCredentials(view, &secret, "db/pg-main-app");
  EXPECT_EQ(view.snapshot.probeUser, "app");
  EXPECT_EQ(view.snapshot.probePassword, "Zx8qT2mVn4LpR7sWc1Yd9HkE3uJb6GfA");
  EXPECT_EQ(view.credentials,
            "probe credentials from Secret db/pg-main-app (user app, resourceVersion 41850)");
  EXPECT_FALSE(view.snapshot == without);

  View rotated = cnpgView(nullptr, ObjectMap{}, kPort);
  secret["data"]["password"] = base64("new secret");
  applySecretCredentials(rotated, &secret, "db/pg-main-app");
  EXPECT_EQ(rotated.snapshot.probePassword, "new secret");
  EXPECT_FALSE(rotated.snapshot == view.snapshot);

  View missing = cnpgView(nullptr, ObjectMap{}, kPort);
  applySecretCredentials(missing, nullptr, "db/pg-main-app");
  EXPECT_EQ(missing.snapshot, without);
  EXPECT_EQ(missing.credentials,
            "no probe credentials: Secret db/pg-main-app not found (or not readable); probing "
            "with the probe DSN's own user and password");
}

}  // namespace
}  // namespace pgkeel::discovery::k8s
