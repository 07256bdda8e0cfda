// Tests for watch stream splitting, Status reading (410 forms) and request building, no network.
#include "../../discovery/src/k8s/watch_stream.h"  // private to the library; tests reach in

#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../../discovery/src/k8s/api_client.h"
#include "k8s_fake_apiserver.h"

namespace pgkeel::discovery::k8s {
namespace {

using nlohmann::json;
using testing::readFixture;

struct Seen {
  EventType type;
  std::string resourceVersion;
  std::string name;
};

std::vector<Seen> parseAll(const std::vector<std::string>& chunks, std::string* error) {
  std::vector<Seen> seen;
  WatchStreamParser parser;
  auto handler = [&](WatchEvent&& event) {
    const json& meta = event.object.value("metadata", json::object());
    seen.push_back({event.type, meta.value("resourceVersion", ""), meta.value("name", "")});
    return true;
  };
  for (const std::string& chunk : chunks) {
    if (!parser.feed(chunk, handler)) break;
  }
  if (parser.error().empty()) parser.finish(handler);
  *error = parser.error();
  return seen;
}

// The events of a JSONL fixture read line by line, independently of the parser.
std::vector<Seen> expectedEvents(const std::string& name) {
  std::vector<Seen> expected;
  std::istringstream lines(readFixture(name));
  std::string line;
  std::map<std::string, EventType> types{{"ADDED", EventType::Added},
                                         {"MODIFIED", EventType::Modified},
                                         {"DELETED", EventType::Deleted},
                                         {"BOOKMARK", EventType::Bookmark},
                                         {"ERROR", EventType::Error}};
  while (std::getline(lines, line)) {
    json event = json::parse(line);
    const json& meta = event["object"].value("metadata", json::object());
    expected.push_back({types.at(event["type"].get<std::string>()),
                        meta.value("resourceVersion", ""), meta.value("name", "")});
  }
  return expected;
}

void expectSame(const std::vector<Seen>& seen, const std::vector<Seen>& expected) {
  ASSERT_EQ(seen.size(), expected.size());
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].type, expected[i].type) << i;
    EXPECT_EQ(seen[i].resourceVersion, expected[i].resourceVersion) << i;
    EXPECT_EQ(seen[i].name, expected[i].name) << i;
  }
}

// Random chunk sizes (1 byte to a few KiB) never change the events read from a failover stream.
TEST(K8sWatchStream, FixtureInRandomChunksGivesEveryEventOnce) {
  for (const char* name : {"cnpg-watch-failover.jsonl", "cnpg-pods-watch-failover.jsonl",
                           "zalando-watch-failover.jsonl", "watch-410-after-events.jsonl"}) {
    std::string body = readFixture(name);
    ASSERT_FALSE(body.empty()) << name;
    std::vector<Seen> expected = expectedEvents(name);
    std::mt19937 random(42);
    for (int round = 0; round < 40; ++round) {
      std::uniform_int_distribution<std::size_t> size(1, round % 2 ? 7 : 4096);
      std::vector<std::string> chunks;
      for (std::size_t at = 0; at < body.size();) {
        std::size_t n = size(random);
        chunks.push_back(body.substr(at, n));
        at += n;
      }
      std::string error;
      expectSame(parseAll(chunks, &error), expected);
      EXPECT_EQ(error, "") << name;
    }
  }
}

// A whole stream in one chunk yields all its events, in order, bookmarks included.
TEST(K8sWatchStream, SeveralEventsInOneChunk) {
  std::string error;
  std::vector<Seen> seen = parseAll({readFixture("cnpg-watch-failover.jsonl")}, &error);
  ASSERT_EQ(seen.size(), 10u);
  EXPECT_EQ(seen[5].type, EventType::Bookmark);
  EXPECT_EQ(seen[5].resourceVersion, "48243");
  EXPECT_EQ(seen[9].resourceVersion, "48301");
  EXPECT_EQ(error, "");
}

// An event is handed on only once its '\n' arrives; a last line without one waits for finish().
TEST(K8sWatchStream, PartialEventWaitsForItsNewline) {
  WatchStreamParser parser;
  int events = 0;
  auto handler = [&](WatchEvent&&) {
    ++events;
    return true;
  };
  std::string event =
      R"({"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"7"}}})";
  EXPECT_TRUE(parser.feed(event.substr(0, 20), handler));
  EXPECT_TRUE(parser.feed(event.substr(20), handler));
  EXPECT_EQ(events, 0);
  EXPECT_TRUE(parser.feed("\n\r\n" + event, handler));
  EXPECT_EQ(events, 1);
  EXPECT_TRUE(parser.finish(handler));
  EXPECT_EQ(events, 2);
  EXPECT_EQ(parser.buffered(), 0u);
}

// A line that is not an event makes feed() fail with a reason; later data is refused.
TEST(K8sWatchStream, BadLineIsAnError) {
  WatchStreamParser parser;
  auto handler = [](WatchEvent&&) { return true; };
  EXPECT_FALSE(parser.feed("{\"type\":\"ADDED\",\"object\":{}}\nnot json\n", handler));
  EXPECT_NE(parser.error(), "");
  EXPECT_FALSE(parser.feed("{\"type\":\"ADDED\",\"object\":{}}\n", handler));
  std::string error;
  EXPECT_FALSE(parseWatchEvent(R"({"type":"SOMETHING","object":{}})", &error));
  EXPECT_NE(error.find("SOMETHING"), std::string::npos);
  EXPECT_FALSE(parseWatchEvent(R"({"type":"ADDED"})", &error));
}

// A handler that stops (an ERROR event) ends feed() without an error.
TEST(K8sWatchStream, HandlerStopsTheStream) {
  WatchStreamParser parser;
  int events = 0;
  auto handler = [&](WatchEvent&& event) {
    ++events;
    return event.type != EventType::Error;
  };
  EXPECT_FALSE(parser.feed(readFixture("watch-410-after-events.jsonl"), handler));
  EXPECT_EQ(events, 3);
  EXPECT_EQ(parser.error(), "");
}

// Both 410 forms of the fixtures are "gone"; reason Gone alone (old servers) too; others not.
TEST(K8sStatus, RecognisesGone) {
  std::string error;
  auto expired = parseWatchEvent(readFixture("watch-410-expired.jsonl"), &error);
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->type, EventType::Error);
  EXPECT_TRUE(isGone(expired->object));
  std::string compacted = readFixture("watch-410-after-events.jsonl");
  ASSERT_EQ(compacted.back(), '\n');
  compacted.pop_back();
  std::string lastLine = compacted.substr(compacted.rfind('\n') + 1);
  auto afterEvents = parseWatchEvent(lastLine, &error);
  ASSERT_TRUE(afterEvents);
  EXPECT_TRUE(isGone(afterEvents->object));
  EXPECT_TRUE(isGone(json::parse(readFixture("status-410-expired-continue.json"))));
  EXPECT_TRUE(isGone(json{{"kind", "Status"}, {"reason", "Gone"}}));
  EXPECT_FALSE(isGone(json{{"kind", "Status"}, {"code", 500}, {"reason", "InternalError"}}));
  EXPECT_FALSE(isGone(json::array()));
  EXPECT_EQ(statusCode(expired->object), 410);
  EXPECT_EQ(describeStatus(expired->object),
            "too old resource version: 48102 (48189) (Expired, code 410)");
}

// "Too large resource version" (after an API server failover) is told apart from other 504s.
TEST(K8sStatus, RecognisesTooLargeResourceVersion) {
  json cause = {{"reason", "ResourceVersionTooLarge"}, {"message", "Too large resource version"}};
  EXPECT_TRUE(isTooLargeResourceVersion(
      {{"code", 504}, {"reason", "Timeout"}, {"details", {{"causes", json::array({cause})}}}}));
  EXPECT_TRUE(isTooLargeResourceVersion(
      {{"code", 504}, {"message", "Too large resource version: 900, current: 800"}}));
  EXPECT_FALSE(isTooLargeResourceVersion({{"code", 504}, {"reason", "Timeout"}}));
}

// Selectors are percent-encoded, so '=', ',', '/', '!' and spaces survive the query string.
TEST(K8sApiClient, EncodesSelectorsInQueries) {
  EXPECT_EQ(urlEncode("cnpg.io/cluster=pg-main,cnpg.io/podRole=instance"),
            "cnpg.io%2Fcluster%3Dpg-main%2Ccnpg.io%2FpodRole%3Dinstance");
  EXPECT_EQ(urlEncode("env in (a, b),!x"), "env%20in%20%28a%2C%20b%29%2C%21x");
  EXPECT_EQ(listQuery({"application=spilo", "metadata.name=acid-main"}, 500, ""),
            "?labelSelector=application%3Dspilo&fieldSelector=metadata.name%3Dacid-main&limit=500");
  EXPECT_EQ(listQuery({}, 0, "abc=="), "?continue=abc%3D%3D");
  EXPECT_EQ(watchQuery({"", "metadata.name=pg-main"}, "48211", 300),
            "?watch=1&allowWatchBookmarks=true&resourceVersion=48211&timeoutSeconds=300"
            "&fieldSelector=metadata.name%3Dpg-main");
}

// Core and custom-resource collection paths, and their names as RBAC knows them.
TEST(K8sApiClient, BuildsCollectionPaths) {
  Collection pods{"", "v1", "pods", "db"};
  Collection clusters{"postgresql.cnpg.io", "v1", "clusters", "db"};
  EXPECT_EQ(pods.path(), "/api/v1/namespaces/db/pods");
  EXPECT_EQ(clusters.path(), "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters");
  EXPECT_EQ(Collection({"acid.zalan.do", "v1", "postgresqls", ""}).path(),
            "/apis/acid.zalan.do/v1/postgresqls");
  EXPECT_EQ(pods.resource(), "pods");
  EXPECT_EQ(clusters.resource(), "clusters.postgresql.cnpg.io");
}

// Retry-After in seconds is read; dates and junk are ignored. Statuses map to error kinds.
TEST(K8sApiClient, ReadsRetryAfterAndNamesErrorKinds) {
  EXPECT_EQ(parseRetryAfter("3"), std::chrono::seconds(3));
  EXPECT_EQ(parseRetryAfter(" 120 "), std::chrono::seconds(120));
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"), std::nullopt);
  EXPECT_EQ(parseRetryAfter(""), std::nullopt);
  EXPECT_EQ(errorKind(0), "network");
  EXPECT_EQ(errorKind(401), "401");
  EXPECT_EQ(errorKind(403), "403");
  EXPECT_EQ(errorKind(410), "410");
  EXPECT_EQ(errorKind(429), "429");
  EXPECT_EQ(errorKind(503), "5xx");
  EXPECT_EQ(errorKind(404), "other_http");
}

}  // namespace
}  // namespace pgkeel::discovery::k8s
