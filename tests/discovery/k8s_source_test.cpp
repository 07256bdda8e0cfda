// Tests for the CNPG and Zalando sources built by makeKubernetesSource against an in-process API
// server serving the fixtures (kubeconfig to http://127.0.0.1:port).
#include "discovery/kubernetes_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <string>
#include <vector>

#include "../../discovery/src/k8s/informer.h"  // private to the library; tests reach in
#include "k8s_fake_apiserver.h"

namespace pgkeel::discovery {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::eventually;
using testing::FakeApiServer;
using testing::readFixture;
using testing::TempDir;
using Reply = FakeApiServer::Reply;
using Seen = FakeApiServer::Seen;

std::string writeKubeConfig(const TempDir& dir, const FakeApiServer& server) {
  std::string path = dir.file("kubeconfig");
  testing::writeFile(path,
                     "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                     "clusters: [{name: fake, cluster: {server: \"" +
                         server.url() +
                         "\"}}]\n"
                         "contexts: [{name: test, context: {cluster: fake, user: u, "
                         "namespace: db}}]\n"
                         "users: [{name: u, user: {token: test-token}}]\n");
  return path;
}

Reply idleWatch() {
  Reply reply;
  reply.hold = true;
  return reply;
}

Reply notFound() {
  return Reply{404, R"({"kind":"Status","code":404,"reason":"NotFound","message":"nope"})"};
}

// Records every snapshot seen from inside `changed`, as the discovery thread would read it.
class ChangeLog {
 public:
  std::function<void()> callback(Source* source) {
    return [this, source] {
      SourceSnapshot snapshot = source->snapshot();
      std::lock_guard lock(mutex_);
      snapshots_.push_back(snapshot);
      times_.push_back(std::chrono::system_clock::now());
    };
  }
  std::vector<SourceSnapshot> snapshots() const {
    std::lock_guard lock(mutex_);
    return snapshots_;
  }
  std::vector<std::chrono::system_clock::time_point> times() const {
    std::lock_guard lock(mutex_);
    return times_;
  }
  std::size_t size() const { return snapshots().size(); }

 private:
  mutable std::mutex mutex_;
  std::vector<SourceSnapshot> snapshots_;
  std::vector<std::chrono::system_clock::time_point> times_;
};

// The CNPG source lists the Cluster (by name) and its instance pods (by label) in the
// kubeconfig's namespace, names currentPrimary, ignores a status change that alters nothing,
// and follows the failover fixture through "pending" (nobody) to pg-main-2.
TEST(K8sSource, CnpgFollowsAFailover) {
  std::atomic<bool> noop{false};
  std::atomic<bool> failover{false};
  json cluster = json::parse(readFixture("cnpg-clusters-list.json"))["items"][0];
  cluster["metadata"]["resourceVersion"] = "48220";
  cluster["status"]["secretsResourceVersion"]["applicationSecretVersion"] = "99999";
  std::string noopEvent = json{{"type", "MODIFIED"}, {"object", cluster}}.dump() + "\n";
  FakeApiServer server([&](const Seen& seen) {
    if (seen.path == "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters") {
      if (!seen.watch()) return Reply{200, readFixture("cnpg-clusters-list.json")};
      Reply reply = idleWatch();
      reply.steps = {{[&] { return noop.load(); }, noopEvent},
                     {[&] { return failover.load(); }, readFixture("cnpg-watch-failover.jsonl")}};
      return reply;
    }
    if (seen.path == "/api/v1/namespaces/db/pods") {
      return seen.watch() ? idleWatch() : Reply{200, readFixture("cnpg-pods-list.json")};
    }
    return notFound();
  });
  TempDir dir;
  KubernetesOptions options;
  options.op = KubernetesOptions::Operator::Cnpg;
  options.cluster = "pg-main";
  options.kubeconfig = writeKubeConfig(dir, server);
  std::unique_ptr<Source> source = makeKubernetesSource(options);
  EXPECT_EQ(source->name(), "cnpg");
  EXPECT_FALSE(source->stats().synced);
  ChangeLog changes;
  source->start(changes.callback(source.get()));

  ASSERT_TRUE(eventually([&] { return source->stats().synced; }));
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg-main-1"; }));
  SourceSnapshot before = source->snapshot();
  EXPECT_EQ(before.opinion, LeaderOpinion::Named);
  EXPECT_EQ(before.candidates.size(), 3u);
  EXPECT_EQ(before.leader.port, 5432);
  for (const Seen& seen : server.seen()) {
    if (seen.path.find("clusters") != std::string::npos) {
      EXPECT_EQ(seen.params.at("fieldSelector"), "metadata.name=pg-main");
    } else {
      EXPECT_EQ(seen.params.at("labelSelector"),
                "cnpg.io/cluster=pg-main,cnpg.io/podRole=instance");
    }
    EXPECT_EQ(seen.authorization, "Bearer test-token");
  }
  std::this_thread::sleep_for(milliseconds(100));
  std::size_t calls = changes.size();
  EXPECT_GE(calls, 1u);

  noop = true;
  ASSERT_TRUE(eventually([&] { return source->stats().events == 1; }));
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(changes.size(), calls);  // a MODIFIED that changes nothing relevant: no changed()
  EXPECT_EQ(source->snapshot(), before);

  failover = true;
  // The no-op, then the fixture's 10 lines of which 2 are bookmarks.
  ASSERT_TRUE(eventually([&] { return source->stats().events == 9; }));
  SourceSnapshot after = source->snapshot();
  EXPECT_EQ(after.leaderName, "pg-main-2");
  EXPECT_EQ(after.opinion, LeaderOpinion::Named);
  EXPECT_FALSE(after.moving);
  EXPECT_EQ(after.leader.host, "10.244.2.15");
  std::vector<SourceSnapshot> seen = changes.snapshots();
  EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [](const SourceSnapshot& s) {
    return s.opinion == LeaderOpinion::Nobody && s.moving;
  }));
  SourceStats stats = source->stats();
  EXPECT_EQ(stats.relists, 0u);
  EXPECT_TRUE(stats.errors.empty());

  auto start = std::chrono::steady_clock::now();
  source->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
}

// Python's isoformat() in UTC, as Patroni writes renewTime.
std::string isoTime(std::chrono::system_clock::time_point at) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(at);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch() -
                                                                      std::chrono::seconds(seconds))
                    .count();
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[64];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  return std::string(text) + "." + std::to_string(1000000 + micros).substr(1) + "+00:00";
}

std::string oneItemList(const std::string& kind, json item) {
  return json{{"kind", kind},
              {"apiVersion", "v1"},
              {"metadata", {{"resourceVersion", "90150"}}},
              {"items", json::array({item})}}
      .dump();
}

// The Zalando source watches the postgresql, the Spilo pods and both leader objects; the
// ConfigMap's leader wins over the Endpoints'; when its lease runs out with no event at all,
// changed() is called at the expiry and the snapshot names nobody.
TEST(K8sSource, ZalandoPrefersTheConfigMapAndWakesAtLeaseExpiry) {
  // Patroni's clock is an hour behind: the lease still counts from when pgkeel saw the renewal.
  auto started = std::chrono::system_clock::now();
  auto expiry = started + std::chrono::seconds(1);
  json configMap = json::parse(readFixture("patroni-k8s-leader-configmap.json"));
  configMap["metadata"]["annotations"]["renewTime"] = isoTime(started - std::chrono::hours(1));
  configMap["metadata"]["annotations"]["ttl"] = "1";
  json endpoints = json::parse(readFixture("patroni-k8s-leader-endpoints.json"));
  endpoints["metadata"]["annotations"]["leader"] = "acid-main-1";
  endpoints["metadata"]["annotations"]["renewTime"] = isoTime(started - std::chrono::hours(1));
  endpoints["metadata"]["annotations"]["ttl"] = "1";
  FakeApiServer server([&](const Seen& seen) {
    if (seen.watch()) return idleWatch();
    if (seen.path == "/apis/acid.zalan.do/v1/namespaces/db/postgresqls") {
      return Reply{200, readFixture("zalando-postgresqls-list.json")};
    }
    if (seen.path == "/api/v1/namespaces/db/pods") {
      EXPECT_EQ(seen.params.at("labelSelector"), "application=spilo,cluster-name=acid-main");
      return Reply{200, readFixture("zalando-pods-list.json")};
    }
    if (seen.path == "/api/v1/namespaces/db/configmaps") {
      EXPECT_EQ(seen.params.at("fieldSelector"), "metadata.name=acid-main-leader");
      return Reply{200, oneItemList("ConfigMapList", configMap)};
    }
    if (seen.path == "/api/v1/namespaces/db/endpoints") {
      EXPECT_EQ(seen.params.at("fieldSelector"), "metadata.name=acid-main");
      return Reply{200, oneItemList("EndpointsList", endpoints)};
    }
    return notFound();
  });
  TempDir dir;
  KubernetesOptions options;
  options.op = KubernetesOptions::Operator::Zalando;
  options.cluster = "acid-main";
  options.kubeconfig = writeKubeConfig(dir, server);
  options.port = 6543;
  std::unique_ptr<Source> source = makeKubernetesSource(options);
  ChangeLog changes;
  source->start(changes.callback(source.get()));
  ASSERT_TRUE(eventually([&] { return source->stats().synced; }));
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "acid-main-0"; }));
  EXPECT_EQ(source->snapshot().opinion, LeaderOpinion::Named);
  EXPECT_EQ(source->snapshot().leader.port, 6543);
  EXPECT_EQ(source->snapshot().candidates.size(), 3u);
  std::size_t calls = changes.size();

  // changed() is called (and reads the snapshot) once the lease has run out, with no event.
  ASSERT_TRUE(eventually(
      [&] {
        std::vector<SourceSnapshot> seen = changes.snapshots();
        return seen.size() > calls && seen.back().opinion == LeaderOpinion::Nobody;
      },
      milliseconds(2500)));
  auto woken = changes.times().back();
  EXPECT_GE(woken, expiry);
  EXPECT_LT(woken, expiry + milliseconds(1500));
  EXPECT_EQ(server.seen(false).size(), 4u);
  EXPECT_EQ(source->stats().events, 0u);
  source->stop();
}

// Until every informer has listed, the source keeps its empty view: here the Endpoints list is
// forbidden (RBAC), so the leader ConfigMap and the pods alone never produce a snapshot.
TEST(K8sSource, KeepsTheEmptyViewUntilEveryInformerHasListed) {
  json configMap = json::parse(readFixture("patroni-k8s-leader-configmap.json"));
  configMap["metadata"]["annotations"]["renewTime"] = isoTime(std::chrono::system_clock::now());
  FakeApiServer server([&](const Seen& seen) {
    if (seen.path == "/api/v1/namespaces/db/endpoints") {
      return Reply{403, R"({"kind":"Status","code":403,"reason":"Forbidden","message":"no"})"};
    }
    if (seen.watch()) return idleWatch();
    if (seen.path == "/api/v1/namespaces/db/configmaps") {
      return Reply{200, oneItemList("ConfigMapList", configMap)};
    }
    if (seen.path == "/api/v1/namespaces/db/pods") {
      return Reply{200, readFixture("zalando-pods-list.json")};
    }
    return Reply{200, readFixture("zalando-postgresqls-list.json")};
  });
  TempDir dir;
  KubernetesOptions options;
  options.op = KubernetesOptions::Operator::Zalando;
  options.cluster = "acid-main";
  options.kubeconfig = writeKubeConfig(dir, server);
  options.backoffInitial = milliseconds(20);
  std::unique_ptr<Source> source = makeKubernetesSource(options);
  SourceSnapshot empty = source->snapshot();
  ChangeLog changes;
  source->start(changes.callback(source.get()));
  ASSERT_TRUE(eventually([&] { return source->stats().errors["403"] >= 2; }));
  EXPECT_EQ(server.seen(true).size(), 3u);  // the other three listed and are watching
  EXPECT_FALSE(source->stats().synced);
  EXPECT_EQ(source->snapshot(), empty);
  EXPECT_TRUE(source->snapshot().candidates.empty());
  EXPECT_EQ(changes.size(), 0u);
  source->stop();
}

// With probe_from_secret, the CNPG source also watches the <c>-app Secret by name: its user and
// password are in the snapshot, and a rotated password (a MODIFIED event) changes the snapshot.
TEST(K8sSource, CnpgReadsAndFollowsTheAppSecret) {
  std::atomic<bool> rotate{false};
  json secret = json::parse(readFixture("cnpg-secret-app.json"));
  json rotated = secret;
  rotated["metadata"]["resourceVersion"] = "41900";
  rotated["data"]["password"] = "bmV3LXBhc3N3b3Jk";  // "new-password"
  std::string event = json{{"type", "MODIFIED"}, {"object", rotated}}.dump() + "\n";
  FakeApiServer server([&](const Seen& seen) {
    if (seen.path == "/api/v1/namespaces/db/secrets") {
      EXPECT_EQ(seen.params.at("fieldSelector"), "metadata.name=pg-main-app");
      if (!seen.watch()) return Reply{200, oneItemList("SecretList", secret)};
      Reply reply = idleWatch();
      reply.steps = {{[&] { return rotate.load(); }, event}};
      return reply;
    }
    if (seen.watch()) return idleWatch();
    if (seen.path == "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters") {
      return Reply{200, readFixture("cnpg-clusters-list.json")};
    }
    if (seen.path == "/api/v1/namespaces/db/pods") {
      return Reply{200, readFixture("cnpg-pods-list.json")};
    }
    return notFound();
  });
  TempDir dir;
  KubernetesOptions options;
  options.cluster = "pg-main";
  options.kubeconfig = writeKubeConfig(dir, server);
  options.probeFromSecret = true;
  std::unique_ptr<Source> source = makeKubernetesSource(options);
  ChangeLog changes;
  source->start(changes.callback(source.get()));
  ASSERT_TRUE(eventually([&] { return source->snapshot().probeUser == "app"; }));
  EXPECT_TRUE(source->stats().synced);
  EXPECT_EQ(source->snapshot().probePassword, "Zx8qT2mVn4LpR7sWc1Yd9HkE3uJb6GfA");
  EXPECT_EQ(source->snapshot().leaderName, "pg-main-1");
  std::size_t calls = changes.size();

  rotate = true;
  ASSERT_TRUE(eventually([&] { return source->snapshot().probePassword == "new-password"; }));
  EXPECT_EQ(source->snapshot().probeUser, "app");
  EXPECT_GT(changes.size(), calls);  // the discovery thread is woken for the new password
  EXPECT_EQ(server.seen(false).size(), 3u);
  source->stop();
}

// A Secret that RBAC hides (403) does not keep the Zalando source unsynced: the view comes
// without credentials, the refusal is counted, and the list is retried in the background until it
// succeeds, when the credentials arrive. The Secret is the postgres user's by default.
TEST(K8sSource, ForbiddenSecretLeavesTheProbeDsnsCredentials) {
  std::atomic<bool> allowed{false};
  json configMap = json::parse(readFixture("patroni-k8s-leader-configmap.json"));
  configMap["metadata"]["annotations"]["renewTime"] = isoTime(std::chrono::system_clock::now());
  json secret = json::parse(readFixture("zalando-secret-user.json"));
  secret["metadata"]["name"] = "postgres.acid-main.credentials.postgresql.acid.zalan.do";
  FakeApiServer server([&](const Seen& seen) {
    if (seen.path == "/api/v1/namespaces/db/secrets") {
      EXPECT_EQ(seen.params.at("fieldSelector"),
                "metadata.name=postgres.acid-main.credentials.postgresql.acid.zalan.do");
      if (!allowed) {
        return Reply{403, R"({"kind":"Status","code":403,"reason":"Forbidden","message":"no"})"};
      }
      if (!seen.watch()) return Reply{200, oneItemList("SecretList", secret)};
    }
    if (seen.watch()) return idleWatch();
    if (seen.path == "/api/v1/namespaces/db/configmaps") {
      return Reply{200, oneItemList("ConfigMapList", configMap)};
    }
    if (seen.path == "/api/v1/namespaces/db/endpoints")
      return Reply{200, oneItemList("EndpointsList",
                                    json::parse(readFixture("patroni-k8s-leader-endpoints.json")))};
    if (seen.path == "/api/v1/namespaces/db/pods") {
      return Reply{200, readFixture("zalando-pods-list.json")};
    }
    return Reply{200, readFixture("zalando-postgresqls-list.json")};
  });
  TempDir dir;
  KubernetesOptions options;
  options.op = KubernetesOptions::Operator::Zalando;
  options.cluster = "acid-main";
  options.kubeconfig = writeKubeConfig(dir, server);
  options.probeFromSecret = true;
  options.backoffInitial = milliseconds(20);
  options.backoffMax = milliseconds(100);
  std::unique_ptr<Source> source = makeKubernetesSource(options);
  ChangeLog changes;
  source->start(changes.callback(source.get()));
  ASSERT_TRUE(eventually([&] { return source->stats().errors["403"] >= 2; }));
  EXPECT_TRUE(source->stats().synced);
  SourceSnapshot snapshot = source->snapshot();
  EXPECT_EQ(snapshot.leaderName, "acid-main-0");
  EXPECT_EQ(snapshot.candidates.size(), 3u);
  EXPECT_EQ(snapshot.probeUser, "");
  EXPECT_EQ(snapshot.probePassword, "");
  EXPECT_GE(changes.size(), 1u);

  allowed = true;
  ASSERT_TRUE(eventually([&] { return source->snapshot().probeUser == "orders_app"; }));
  EXPECT_EQ(source->snapshot().probePassword, "Qm9vN2tGd3lQZzN4UmVhbFNlY3JldA9x");
  EXPECT_EQ(source->stats().relists, 0u);
  source->stop();
}

// The ConfigMap wins when both objects name a leader; otherwise the one that names a leader;
// otherwise whichever exists, the ConfigMap first.
TEST(K8sSource, PicksTheZalandoLeaderObject) {
  json withLeader = {{"metadata", {{"annotations", {{"leader", "a"}}}}}};
  json released = {{"metadata", {{"annotations", {{"ttl", "30"}}}}}};
  json bare = {{"metadata", {{"name", "x"}}}};
  using k8s::pickLeaderObject;
  json cm = withLeader;
  json ep = withLeader;
  EXPECT_EQ(pickLeaderObject(&cm, &ep), &cm);
  EXPECT_EQ(pickLeaderObject(&released, &ep), &ep);
  EXPECT_EQ(pickLeaderObject(nullptr, &ep), &ep);
  EXPECT_EQ(pickLeaderObject(&released, &bare), &released);
  EXPECT_EQ(pickLeaderObject(nullptr, &bare), &bare);
  EXPECT_EQ(pickLeaderObject(nullptr, nullptr), nullptr);
}

// Configuration problems surface from makeKubernetesSource as clear exceptions.
TEST(K8sSource, BadConfigurationThrowsAClearError) {
  KubernetesOptions options;
  options.cluster = "pg-main";
  options.kubeconfig = "/nonexistent/kubeconfig";
  try {
    makeKubernetesSource(options);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "kubeconfig /nonexistent/kubeconfig: cannot read");
  }
  options.kubeconfig = "";
  options.serviceAccountDir = "/nonexistent";
  EXPECT_THROW(makeKubernetesSource(options), std::runtime_error);
  options.cluster = "";
  EXPECT_THROW(makeKubernetesSource(options), std::runtime_error);
}

}  // namespace
}  // namespace pgkeel::discovery
