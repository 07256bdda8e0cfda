// Tests for informers: diffing and backoff, and list/watch against an in-process API server.
#include "../../discovery/src/k8s/informer.h"  // private to the library; tests reach in on purpose

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "k8s_fake_apiserver.h"

namespace pgkeel::discovery::k8s {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::eventually;
using testing::FakeApiServer;
using testing::TempDir;
using Reply = FakeApiServer::Reply;
using Seen = FakeApiServer::Seen;
using Kind = ObjectChange::Kind;

json pod(const std::string& name, const std::string& rv, const std::string& ip = "10.0.0.1") {
  return {{"kind", "Pod"},
          {"apiVersion", "v1"},
          {"metadata", {{"name", name}, {"namespace", "db"}, {"resourceVersion", rv}}},
          {"status", {{"podIP", ip}}}};
}

// A PodList as the API server sends it: items without kind and apiVersion.
std::string podList(std::vector<json> items, const std::string& rv, const std::string& next = "") {
  json list = {{"kind", "PodList"},
               {"apiVersion", "v1"},
               {"metadata", {{"resourceVersion", rv}}},
               {"items", json::array()}};
  if (!next.empty()) list["metadata"]["continue"] = next;
  for (json& item : items) {
    item.erase("kind");
    item.erase("apiVersion");
    list["items"].push_back(item);
  }
  return list.dump();
}

std::string event(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}

std::string bookmark(const std::string& rv) {
  return event("BOOKMARK", {{"kind", "Pod"},
                            {"apiVersion", "v1"},
                            {"metadata", {{"resourceVersion", rv}, {"creationTimestamp", nullptr}}},
                            {"spec", {{"containers", nullptr}}},
                            {"status", json::object()}});
}

Reply watchReply(const std::string& body, bool hold, std::size_t chunk = 7) {
  Reply reply;
  reply.chunks = testing::splitEvery(body, chunk);
  reply.hold = hold;
  return reply;
}

Reply status(int code, const std::string& reason) {
  return Reply{code, json{{"kind", "Status"},
                          {"apiVersion", "v1"},
                          {"status", "Failure"},
                          {"message", "test " + reason},
                          {"reason", reason},
                          {"code", code}}
                         .dump()};
}

std::shared_ptr<ApiClient> apiFor(const FakeApiServer& server, const std::string& tokenFile = "") {
  KubeConfig config;
  config.origin = "test";
  config.scheme = "http";
  config.host = "127.0.0.1";
  config.port = static_cast<std::uint16_t>(server.port());
  config.token = tokenFile.empty() ? "fixed-token" : "";
  config.tokenFile = tokenFile;
  config.ns = "db";
  return std::make_shared<ApiClient>(config, HttpTimeouts{milliseconds(1000), milliseconds(2000)});
}

InformerOptions podOptions() {
  InformerOptions options;
  options.name = "test pods";
  options.collection = Collection{"", "v1", "pods", "db"};
  options.selectors.label = "app=x,role in (a,b)";
  options.pageLimit = 2;
  options.watchTimeoutMin = std::chrono::seconds(5);
  options.watchTimeoutMax = std::chrono::seconds(7);
  options.backoff = BackoffPolicy{milliseconds(20), milliseconds(200)};
  return options;
}

// Collects the informer's change callbacks.
class Changes {
 public:
  Informer::OnChange callback() {
    return [this](const std::vector<ObjectChange>& changes) {
      std::lock_guard lock(mutex_);
      all_.insert(all_.end(), changes.begin(), changes.end());
      ++calls_;
    };
  }
  std::vector<ObjectChange> all() const {
    std::lock_guard lock(mutex_);
    return all_;
  }
  int calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<ObjectChange> all_;
  int calls_ = 0;
};

std::string rvOf(const ObjectMap& objects, const std::string& name) {
  auto it = objects.find(name);
  return it == objects.end() ? "" : it->second["metadata"]["resourceVersion"].get<std::string>();
}

// Added, modified and deleted names come out in name order; equal objects are no change.
TEST(K8sInformer, DiffsTwoCaches) {
  ObjectMap before{{"a", pod("a", "1")}, {"b", pod("b", "1")}, {"d", pod("d", "1")}};
  ObjectMap after{{"a", pod("a", "1")}, {"b", pod("b", "2")}, {"c", pod("c", "2")}};
  EXPECT_EQ(
      diffObjects(before, after),
      (std::vector<ObjectChange>{{Kind::Modified, "b"}, {Kind::Added, "c"}, {Kind::Deleted, "d"}}));
  EXPECT_TRUE(diffObjects(after, after).empty());
  EXPECT_EQ(diffObjects({}, after).size(), 3u);
}

// The backoff doubles from `initial`, is capped at `max`, and the jitter keeps it in [d/2, d].
TEST(K8sInformer, BackoffDoublesWithJitterAndIsCapped) {
  BackoffPolicy policy{milliseconds(200), milliseconds(30000)};
  EXPECT_EQ(backoffDelay(policy, 0, 0.0), milliseconds(100));
  EXPECT_EQ(backoffDelay(policy, 0, 1.0), milliseconds(200));
  EXPECT_EQ(backoffDelay(policy, 3, 1.0), milliseconds(1600));
  EXPECT_EQ(backoffDelay(policy, 3, 0.5), milliseconds(1200));
  EXPECT_EQ(backoffDelay(policy, 8, 1.0), milliseconds(30000));
  EXPECT_EQ(backoffDelay(policy, 1000, 0.0), milliseconds(15000));
}

// LIST follows `continue` pages, then WATCH starts from the list's resourceVersion with
// bookmarks, a timeout in range and the same selector; events split into 7-byte chunks apply.
TEST(K8sInformer, ListsPagesThenWatchesFromTheListResourceVersion) {
  FakeApiServer server([](const Seen& seen) {
    if (!seen.watch()) {
      return seen.params.count("continue") == 0
                 ? Reply{200, podList({pod("a", "90"), pod("b", "91")}, "100", "page-2")}
                 : Reply{200, podList({pod("c", "92")}, "100")};
    }
    return watchReply(
        event("ADDED", pod("d", "101")) + event("MODIFIED", pod("a", "102", "9.9.9.9")), true);
  });
  Changes changes;
  Informer informer(apiFor(server), podOptions(), changes.callback());
  informer.start();
  ASSERT_TRUE(eventually([&] { return rvOf(informer.objects(), "a") == "102"; }));
  EXPECT_TRUE(informer.synced());
  ObjectMap objects = informer.objects();
  EXPECT_EQ(objects.size(), 4u);
  EXPECT_EQ(objects["a"]["status"]["podIP"], "9.9.9.9");
  EXPECT_EQ(objects["b"]["kind"], "Pod");  // filled in from the PodList
  EXPECT_EQ(informer.resourceVersion(), "102");

  std::vector<Seen> lists = server.seen(false);
  ASSERT_EQ(lists.size(), 2u);
  EXPECT_EQ(lists[0].path, "/api/v1/namespaces/db/pods");
  EXPECT_EQ(lists[0].params.at("labelSelector"), "app=x,role in (a,b)");
  EXPECT_EQ(lists[0].params.at("limit"), "2");
  EXPECT_EQ(lists[0].params.count("continue"), 0u);
  EXPECT_EQ(lists[1].params.at("continue"), "page-2");
  EXPECT_EQ(lists[0].authorization, "Bearer fixed-token");
  std::vector<Seen> watches = server.seen(true);
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0].params.at("resourceVersion"), "100");
  EXPECT_EQ(watches[0].params.at("allowWatchBookmarks"), "true");
  EXPECT_EQ(watches[0].params.at("labelSelector"), "app=x,role in (a,b)");
  int timeout = std::stoi(watches[0].params.at("timeoutSeconds"));
  EXPECT_GE(timeout, 5);
  EXPECT_LE(timeout, 7);

  EXPECT_EQ(changes.all(), (std::vector<ObjectChange>{{Kind::Added, "a"},
                                                      {Kind::Added, "b"},
                                                      {Kind::Added, "c"},
                                                      {Kind::Added, "d"},
                                                      {Kind::Modified, "a"}}));
  SourceStats stats = informer.stats();
  EXPECT_EQ(stats.events, 2u);
  EXPECT_EQ(stats.relists, 0u);
  EXPECT_TRUE(stats.errors.empty());
}

// A clean end of the stream re-watches from the last resourceVersion seen, a BOOKMARK's
// included, without listing again.
TEST(K8sInformer, RewatchesFromTheBookmarkAfterACleanEnd) {
  std::atomic<int> watches{0};
  FakeApiServer server([&](const Seen& seen) {
    if (!seen.watch()) return Reply{200, podList({pod("a", "90")}, "100")};
    if (watches++ == 0) {
      return watchReply(event("MODIFIED", pod("a", "101", "10.0.0.2")) + bookmark("150"), false);
    }
    return watchReply("", true);
  });
  Informer informer(apiFor(server), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return server.seen(true).size() == 2; }));
  EXPECT_EQ(server.seen(true)[1].params.at("resourceVersion"), "150");
  EXPECT_EQ(server.seen(false).size(), 1u);
  EXPECT_EQ(rvOf(informer.objects(), "a"), "101");
  SourceStats stats = informer.stats();
  EXPECT_EQ(stats.rewatches, 1u);
  EXPECT_EQ(stats.relists, 0u);
}

// A connection cut mid-event resumes from the last complete event; the half event is dropped.
TEST(K8sInformer, DroppedStreamResumesFromTheLastCompleteEvent) {
  std::atomic<int> watches{0};
  FakeApiServer server([&](const Seen& seen) {
    if (!seen.watch()) return Reply{200, podList({pod("a", "90")}, "100")};
    if (watches++ > 0) return watchReply("", true);
    std::string second = event("MODIFIED", pod("a", "102", "10.0.0.3"));
    Reply reply = watchReply(
        event("MODIFIED", pod("a", "101", "10.0.0.2")) + second.substr(0, second.size() / 2), false,
        4096);
    reply.drop = true;
    return reply;
  });
  Informer informer(apiFor(server), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return server.seen(true).size() == 2; }));
  EXPECT_EQ(server.seen(true)[1].params.at("resourceVersion"), "101");
  EXPECT_EQ(rvOf(informer.objects(), "a"), "101");
  EXPECT_EQ(server.seen(false).size(), 1u);
  EXPECT_EQ(informer.stats().errors["network"], 1u);
}

// An ERROR 410 event (the fixture) re-lists; the new list is diffed against the cache, so an
// object deleted while the watch was down is reported deleted; the next watch uses the new RV.
TEST(K8sInformer, Relists410EventAndDiffsTheCache) {
  std::atomic<int> lists{0};
  std::atomic<int> watches{0};
  FakeApiServer server([&](const Seen& seen) {
    if (!seen.watch()) {
      return lists++ == 0
                 ? Reply{200, podList({pod("a", "90"), pod("b", "91")}, "100")}
                 : Reply{200, podList({pod("a", "190", "10.9.9.9"), pod("c", "191")}, "200")};
    }
    int n = watches++;
    return watchReply(n == 0 ? testing::readFixture("watch-410-expired.jsonl") : "", n > 0);
  });
  Changes changes;
  Informer informer(apiFor(server), podOptions(), changes.callback());
  informer.start();
  ASSERT_TRUE(eventually([&] { return server.seen(true).size() == 2; }));
  EXPECT_EQ(server.seen(true)[1].params.at("resourceVersion"), "200");
  ObjectMap objects = informer.objects();
  EXPECT_EQ(objects.count("b"), 0u);
  EXPECT_EQ(objects.count("c"), 1u);
  EXPECT_EQ(rvOf(objects, "a"), "190");
  std::vector<ObjectChange> all = changes.all();
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(
      std::vector<ObjectChange>(all.begin() + 2, all.end()),
      (std::vector<ObjectChange>{{Kind::Modified, "a"}, {Kind::Deleted, "b"}, {Kind::Added, "c"}}));
  SourceStats stats = informer.stats();
  EXPECT_EQ(stats.relists, 1u);
  EXPECT_EQ(stats.errors["410"], 1u);
}

// An HTTP 410 answer to the watch re-lists too.
TEST(K8sInformer, RelistsAfterHttp410) {
  std::atomic<int> watches{0};
  FakeApiServer server([&](const Seen& seen) {
    if (!seen.watch()) return Reply{200, podList({pod("a", "90")}, "100")};
    return watches++ == 0 ? status(410, "Expired") : watchReply("", true);
  });
  Informer informer(apiFor(server), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return server.seen(true).size() == 2; }));
  EXPECT_EQ(server.seen(false).size(), 2u);
  EXPECT_EQ(informer.stats().relists, 1u);
  EXPECT_EQ(informer.stats().errors["410"], 1u);
}

// A 410 for an expired `continue` token (the fixture) restarts the list without the token.
TEST(K8sInformer, RestartsTheListWhenTheContinueTokenExpires) {
  std::atomic<int> lists{0};
  FakeApiServer server([&](const Seen& seen) {
    if (seen.watch()) return watchReply("", true);
    switch (lists++) {
      case 0:
        return Reply{200, podList({pod("a", "90"), pod("x", "91")}, "100", "old-token")};
      case 1:
        return Reply{410, testing::readFixture("status-410-expired-continue.json")};
      default:
        return Reply{200, podList({pod("a", "90"), pod("b", "95")}, "300")};
    }
  });
  Informer informer(apiFor(server), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return server.seen(true).size() == 1; }));
  std::vector<Seen> listed = server.seen(false);
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[1].params.at("continue"), "old-token");
  EXPECT_EQ(listed[2].params.count("continue"), 0u);
  EXPECT_EQ(server.seen(true)[0].params.at("resourceVersion"), "300");
  ObjectMap objects = informer.objects();
  EXPECT_EQ(objects.size(), 2u);
  EXPECT_EQ(objects.count("x"), 0u);
  EXPECT_EQ(informer.stats().errors["410"], 1u);
  EXPECT_EQ(informer.stats().relists, 0u);
}

// A 401 makes the informer read the token file again: the file is rotated between requests and
// the retry carries the new token (without the re-read it would keep sending the old one).
TEST(K8sInformer, RereadsTheTokenFileAfter401) {
  TempDir dir;
  std::string tokenFile = dir.file("token");
  testing::writeFile(tokenFile, "old-token\n");
  FakeApiServer server([&](const Seen& seen) {
    if (seen.authorization != "Bearer new-token") {
      testing::writeFile(tokenFile, "new-token\n");
      return status(401, "Unauthorized");
    }
    return seen.watch() ? watchReply("", true) : Reply{200, podList({pod("a", "1")}, "5")};
  });
  Informer informer(apiFor(server, tokenFile), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return informer.synced(); }));
  std::vector<Seen> seen = server.seen();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].authorization, "Bearer old-token");
  EXPECT_EQ(seen[1].authorization, "Bearer new-token");
  EXPECT_EQ(informer.stats().errors["401"], 1u);
}

// 503s are retried with a growing backoff, and a 429's Retry-After is honoured.
TEST(K8sInformer, BacksOffOnServerErrorsAndHonoursRetryAfter) {
  std::atomic<int> lists{0};
  FakeApiServer server([&](const Seen& seen) {
    if (seen.watch()) return watchReply("", true);
    int n = lists++;
    if (n < 2) return status(503, "ServiceUnavailable");
    if (n == 2) {
      Reply reply = status(429, "TooManyRequests");
      reply.headers["Retry-After"] = "1";
      return reply;
    }
    return Reply{200, podList({pod("a", "1")}, "5")};
  });
  Informer informer(apiFor(server), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return informer.synced(); }, milliseconds(3000)));
  std::vector<Seen> seen = server.seen(false);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_GE(seen[1].at - seen[0].at, milliseconds(10));   // backoff 0: [10, 20] ms
  EXPECT_GE(seen[2].at - seen[1].at, milliseconds(20));   // backoff 1: [20, 40] ms
  EXPECT_GE(seen[3].at - seen[2].at, milliseconds(950));  // Retry-After: 1
  SourceStats stats = informer.stats();
  EXPECT_EQ(stats.errors["5xx"], 2u);
  EXPECT_EQ(stats.errors["429"], 1u);
}

// A 403 (RBAC missing) is counted and retried with backoff; the informer never claims sync.
TEST(K8sInformer, ForbiddenIsCountedAndRetried) {
  FakeApiServer server([](const Seen&) { return status(403, "Forbidden"); });
  Informer informer(apiFor(server), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return informer.stats().errors["403"] >= 3; }));
  EXPECT_FALSE(informer.synced());
  EXPECT_LT(server.seen().size(), 10u);  // backing off, not spinning
}

// stop() returns within a second while a watch is open and idle.
TEST(K8sInformer, StopReturnsPromptlyWhileTheWatchIsIdle) {
  FakeApiServer server([](const Seen& seen) {
    return seen.watch() ? watchReply("", true) : Reply{200, podList({}, "5")};
  });
  Informer informer(apiFor(server), podOptions(), [](const auto&) {});
  informer.start();
  ASSERT_TRUE(eventually([&] { return server.seen(true).size() == 1; }));
  std::this_thread::sleep_for(milliseconds(50));
  auto start = std::chrono::steady_clock::now();
  informer.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  EXPECT_TRUE(informer.synced());
}

}  // namespace
}  // namespace pgkeel::discovery::k8s
