// Tests for the etcd v3 JSON gateway parts: messages captured from a real etcd 3.4.23, and the
// leader-key watch of PatroniSource against a real etcd started here (skipped without `etcd`).
#include "../../discovery/src/patroni/etcd_watch.h"  // private to the library; reached on purpose

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "discovery/patroni_source.h"
#include "patroni_fake_rest.h"
#include "test_ports.h"

extern char** environ;

namespace pgkeel::discovery::patroni {
namespace {

using namespace std::chrono_literals;
using testing::closedPort;
using testing::eventually;
using testing::FakePatroniRest;

// Captured with curl from etcd 3.4.23: POST /v3/kv/range {"key":"L3NlcnZpY2UvbGFiL2xlYWRlcg=="}.
constexpr const char* kRangeAbsent =
    R"({"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("revision":"1","raft_term":"2"}})";
constexpr const char* kRangeHeld =
    R"({"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("revision":"2","raft_term":"2"},"kvs":[{"key":"L3NlcnZpY2UvbGFiL2xlYWRlcg==",)"
    R"("create_revision":"2","mod_revision":"2","version":"1","value":"cGcw"}],"count":"1"})";
// HTTP 400 from /v3/kv/range with a body that is not JSON.
constexpr const char* kRangeError =
    R"({"error":"invalid character 'b' looking for beginning of object key string",)"
    R"("message":"invalid character 'b' looking for beginning of object key string","code":3})";

// Lines of one POST /v3/watch stream (HTTP 200, Transfer-Encoding: chunked, one JSON object and
// '\n' per message): created, PUT pg0 (no "type": PUT is the zero value), PUT pg1, DELETE,
// PUT with a lease, and the lease expiring.
constexpr const char* kWatchCreated =
    R"({"result":{"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("revision":"2","raft_term":"2"},"created":true}})";
constexpr const char* kWatchPut =
    R"({"result":{"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("revision":"3","raft_term":"2"},"events":[{"kv":{"key":"L3NlcnZpY2UvbGFiL2xlYWRlcg==",)"
    R"("create_revision":"2","mod_revision":"3","version":"2","value":"cGcx"}}]}})";
constexpr const char* kWatchDelete =
    R"({"result":{"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("revision":"4","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":)"
    R"("L3NlcnZpY2UvbGFiL2xlYWRlcg==","mod_revision":"4"}}]}})";
constexpr const char* kWatchLeasedPut =
    R"({"result":{"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("revision":"5","raft_term":"2"},"events":[{"kv":{"key":"L3NlcnZpY2UvbGFiL2xlYWRlcg==",)"
    R"("create_revision":"5","mod_revision":"5","version":"1","value":"cGcy",)"
    R"("lease":"7636875717629981450"}}]}})";
// With "prev_kv":true in the create_request, a DELETE carries the value it removed.
constexpr const char* kWatchDeletePrev =
    R"({"result":{"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("revision":"8","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":)"
    R"("L3NlcnZpY2UvbGFiL2xlYWRlcg==","mod_revision":"8"},"prev_kv":{"key":)"
    R"("L3NlcnZpY2UvbGFiL2xlYWRlcg==","create_revision":"7","mod_revision":"7","version":"1",)"
    R"("value":"cGcw"}}]}})";
// A watch from a compacted revision: created, then canceled with compact_revision.
constexpr const char* kWatchCompacted =
    R"({"result":{"header":{"cluster_id":"18112481837739050112","member_id":"12754372901353908731",)"
    R"("raft_term":"2"},"canceled":true,"compact_revision":"7"}})";

constexpr const char* kKey = "/service/lab/leader";

WatchMessage parseOrFail(const char* line) {
  std::string error;
  std::optional<WatchMessage> message = parseWatchMessage(line, &error);
  EXPECT_TRUE(message.has_value()) << error;
  return message.value_or(WatchMessage{});
}

// Keys and values are base64, with and without padding; bad text is refused.
TEST(PatroniEtcdGateway, Base64RoundTrips) {
  EXPECT_EQ(base64Encode(kKey), "L3NlcnZpY2UvbGFiL2xlYWRlcg==");
  for (const std::string& text :
       std::vector<std::string>{"", "p", "pg", "pg0", "pg-1", std::string("a\0b", 3)}) {
    EXPECT_EQ(base64Decode(base64Encode(text)), text);
  }
  EXPECT_FALSE(base64Decode("cGc").has_value());
  EXPECT_FALSE(base64Decode("c*c=").has_value());
}

// The request bodies have the shape the 3.4 gateway accepted in the capture.
TEST(PatroniEtcdGateway, BuildsRequestBodies) {
  EXPECT_EQ(rangeRequestBody(kKey), R"({"key":"L3NlcnZpY2UvbGFiL2xlYWRlcg=="})");
  EXPECT_EQ(watchRequestBody(kKey, 8),
            R"({"create_request":{"key":"L3NlcnZpY2UvbGFiL2xlYWRlcg==","prev_kv":true,)"
            R"("start_revision":"8"}})");
}

// Range answers: absent key (no kvs), held key, and the gateway's error body.
TEST(PatroniEtcdGateway, ParsesRangeAnswers) {
  std::string error;
  auto absent = parseRangeAnswer(kRangeAbsent, &error);
  ASSERT_TRUE(absent.has_value()) << error;
  EXPECT_EQ(absent->revision, 1);
  EXPECT_FALSE(absent->value.has_value());
  auto held = parseRangeAnswer(kRangeHeld, &error);
  ASSERT_TRUE(held.has_value()) << error;
  EXPECT_EQ(held->revision, 2);
  EXPECT_EQ(held->value, "pg0");
  EXPECT_FALSE(parseRangeAnswer(kRangeError, &error).has_value());
  EXPECT_NE(error.find("invalid character"), std::string::npos) << error;
  EXPECT_FALSE(parseRangeAnswer("{}", &error).has_value());
  EXPECT_FALSE(parseRangeAnswer("nope", &error).has_value());
}

// Watch messages: created, PUT without "type", DELETE with and without prev_kv, compaction.
TEST(PatroniEtcdGateway, ParsesWatchMessages) {
  WatchMessage created = parseOrFail(kWatchCreated);
  EXPECT_TRUE(created.created);
  EXPECT_EQ(created.revision, 2);
  EXPECT_TRUE(created.events.empty());
  WatchMessage put = parseOrFail(kWatchPut);
  ASSERT_EQ(put.events.size(), 1u);
  EXPECT_EQ(put.events[0], (WatchEvent{false, kKey, "pg1", "", 3}));
  WatchMessage deleted = parseOrFail(kWatchDelete);
  ASSERT_EQ(deleted.events.size(), 1u);
  EXPECT_EQ(deleted.events[0], (WatchEvent{true, kKey, "", "", 4}));
  EXPECT_EQ(parseOrFail(kWatchLeasedPut).events[0].value, "pg2");
  EXPECT_EQ(parseOrFail(kWatchDeletePrev).events[0], (WatchEvent{true, kKey, "", "pg0", 8}));
  WatchMessage compacted = parseOrFail(kWatchCompacted);
  EXPECT_TRUE(compacted.canceled);
  EXPECT_EQ(compacted.compactRevision, 7);
  WatchMessage failed = parseOrFail(R"({"error":{"grpc_code":14,"http_code":503,)"
                                    R"("message":"etcdserver: no leader","http_status":"x"}})");
  EXPECT_EQ(failed.error, "etcdserver: no leader");
  std::string error;
  EXPECT_FALSE(parseWatchMessage("{\"result\":", &error).has_value());
  EXPECT_FALSE(
      parseWatchMessage(R"({"result":{"events":[{"kv":{"key":"%%%%"}}]}})", &error).has_value());
}

// Chunk boundaries fall anywhere; only whole lines come out.
TEST(PatroniEtcdGateway, SplitsTheStreamIntoLines) {
  std::string stream = std::string(kWatchCreated) + "\n" + kWatchPut + "\n" + kWatchDelete + "\n";
  for (std::size_t cut : {std::size_t{1}, std::size_t{7}, std::size_t{150}, stream.size()}) {
    LineSplitter splitter;
    std::vector<std::string> lines;
    for (std::size_t at = 0; at < stream.size(); at += cut) {
      for (std::string& line : splitter.feed(std::string_view(stream).substr(at, cut))) {
        lines.push_back(std::move(line));
      }
    }
    ASSERT_EQ(lines.size(), 3u) << cut;
    EXPECT_EQ(lines[1], kWatchPut);
    EXPECT_EQ(splitter.pending(), 0u);
  }
}

// ---------------------------------------------------------------------------------------------
// A real etcd on loopback.

std::optional<std::string> findEtcd() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = dir + "/etcd";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// One etcd member in a temporary directory on two free loopback ports; killed at the end.
class EtcdProcess {
 public:
  explicit EtcdProcess(const std::string& binary) {
    char dir[] = "/tmp/pgkeel-etcd-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    std::uint16_t client = closedPort(), peer = closedPort();
    url_ = "http://127.0.0.1:" + std::to_string(client);
    std::string peerUrl = "http://127.0.0.1:" + std::to_string(peer);
    std::vector<std::string> args = {binary,
                                     "--name=t",
                                     "--data-dir=" + dir_ + "/data",
                                     "--listen-client-urls=" + url_,
                                     "--advertise-client-urls=" + url_,
                                     "--listen-peer-urls=" + peerUrl,
                                     "--initial-advertise-peer-urls=" + peerUrl,
                                     "--initial-cluster=t=" + peerUrl};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  ~EtcdProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // True once GET /health answers {"health":"true"}.
  bool waitHealthy() {
    if (pid_ <= 0) return false;
    httplib::Client client(url_);
    client.set_connection_timeout(200ms);
    return eventually(
        [&] {
          auto result = client.Get("/health");
          return result && result->status == 200 && result->body.find("true") != std::string::npos;
        },
        3000ms);
  }
  bool put(const std::string& key, const std::string& value) {
    return post("/v3/kv/put",
                nlohmann::json{{"key", base64Encode(key)}, {"value", base64Encode(value)}}.dump());
  }
  bool erase(const std::string& key) {
    return post("/v3/kv/deleterange", nlohmann::json{{"key", base64Encode(key)}}.dump());
  }
  const std::string& url() const { return url_; }

 private:
  bool post(const std::string& path, const std::string& body) {
    httplib::Client client(url_);
    auto result = client.Post(path.c_str(), body, "application/json");
    return result && result->status == 200;
  }

  std::string dir_;
  std::string url_;
  pid_t pid_ = -1;
};

std::string cluster(const std::string& leader) {
  std::string body = R"({"members":[)";
  for (const char* name : {"pg0", "pg1"}) {
    std::string port = name[2] == '0' ? "15430" : "15431";
    body += std::string(name[2] == '0' ? "" : ",") + R"({"name":")" + name + R"(","role":")" +
            (leader == name ? "leader" : "replica") +
            R"(","state":"running","host":"127.0.0.1","port":)" + port + "}";
  }
  return body + "]}";
}

// Against a real etcd: key events wake the poll at once (the poll interval here is 60 s); a
// DELETE gives Nobody while /cluster still names the old leader; the new holder is named as soon
// as /cluster agrees.
TEST(PatroniEtcdWatch, LeaderKeyEventsDriveTheSource) {
  std::optional<std::string> binary = findEtcd();
  if (!binary) GTEST_SKIP() << "no etcd binary on PATH";
  EtcdProcess etcd(*binary);
  ASSERT_TRUE(etcd.waitHealthy()) << "etcd did not start";
  ASSERT_TRUE(etcd.put(kKey, "pg0"));
  FakePatroniRest rest(cluster("pg0"));
  PatroniOptions options;
  options.restUrls = {rest.url()};
  options.pollInterval = 60s;
  options.requestTimeout = 1000ms;
  options.etcdUrl = etcd.url();
  options.etcdLeaderKey = kKey;
  auto source = makePatroniSource(options);
  std::atomic<int> changes{0};
  source->start([&] { ++changes; });
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg0"; }));
  // The watch is up once a rewrite of the key makes the source poll again.
  ASSERT_TRUE(eventually([&] {
    int before = rest.requests();
    etcd.put(kKey, "pg0");
    return eventually([&] { return rest.requests() > before; }, 200ms);
  }));

  ASSERT_TRUE(etcd.erase(kKey));  // released; /cluster still names pg0
  ASSERT_TRUE(eventually([&] { return source->snapshot().opinion == LeaderOpinion::Nobody; }));
  EXPECT_TRUE(source->snapshot().moving);
  EXPECT_EQ(source->snapshot().detail, "patroni: leader key deleted, /cluster still names pg0");

  rest.set(cluster("pg1"));
  ASSERT_TRUE(etcd.put(kKey, "pg1"));
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg1"; }));
  EXPECT_EQ(source->snapshot().leader, (Endpoint{"127.0.0.1", 15431}));

  auto begin = std::chrono::steady_clock::now();
  source->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 500ms) << "the watch blocks stop()";
  SourceStats stats = source->stats();
  EXPECT_TRUE(stats.synced);
  EXPECT_GE(stats.events, 4u);
  EXPECT_TRUE(stats.errors.empty());
  EXPECT_GE(changes, 3);
}

// An unreachable etcd costs nothing but a counted error: /cluster alone decides.
TEST(PatroniEtcdWatch, UnreachableEtcdFallsBackToCluster) {
  FakePatroniRest rest(cluster("pg1"));
  PatroniOptions options;
  options.restUrls = {rest.url()};
  options.pollInterval = 20ms;
  options.etcdUrl = "http://127.0.0.1:" + std::to_string(closedPort());
  options.etcdLeaderKey = kKey;
  auto source = makePatroniSource(options);
  source->start([] {});
  ASSERT_TRUE(eventually([&] { return source->stats().errors.count("network") > 0; }));
  ASSERT_TRUE(eventually([&] { return source->snapshot().leaderName == "pg1"; }));
  source->stop();
}

}  // namespace
}  // namespace pgkeel::discovery::patroni
