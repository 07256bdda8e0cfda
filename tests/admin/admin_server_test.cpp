// Tests for AdminServer: real HTTP on a port the kernel picks.
#include "admin/admin_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <thread>

namespace pgkeel::admin {
namespace {

AdminSources sources(discovery::RoutingTablePtr table) {
  return {[table] { return table; }, [] { return std::string(); },
          [] {
            return ProcessStatus{1, {}};
          },
          [] { return std::string("pgkeel_up 1\n"); }};
}

// Each endpoint answers; readyz is 503 with a reason while the table has no primary.
TEST(AdminServer, ServesTheFourEndpoints) {
  AdminServer server(sources(std::make_shared<const discovery::RoutingTable>()));
  std::string error;
  ASSERT_TRUE(server.start("127.0.0.1:0", &error)) << error;
  httplib::Client client("127.0.0.1", server.port());
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_EQ(ready->body.rfind("no primary", 0), 0u) << ready->body;
  auto status = client.Get("/status");
  ASSERT_TRUE(status);
  EXPECT_EQ(nlohmann::json::parse(status->body)["workers"], 1);
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4");
  server.stop();
}

// POST /drain turns draining on and answers once no session is open, or 503 with the count when
// wait_ms passes first; a bad wait_ms is 400; DELETE /drain turns it off.
TEST(AdminServer, DrainWaitsForSessions) {
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> open{1};
  AdminSources s = sources(std::make_shared<const discovery::RoutingTable>());
  s.draining = [&] { return draining.load(); };
  s.requestDrain = [&](bool on) { draining = on; };
  std::atomic<int> counted{0};  // sessions() calls: a waiting drain makes one every 20 ms
  s.sessions = [&] {
    ++counted;
    return open.load();
  };
  AdminServer server(std::move(s));
  std::string error;
  ASSERT_TRUE(server.start("127.0.0.1:0", &error)) << error;
  httplib::Client client("127.0.0.1", server.port());
  auto tooLong = client.Post("/drain?wait_ms=300001");
  ASSERT_TRUE(tooLong);
  EXPECT_EQ(tooLong->status, 400);
  auto bad = client.Post("/drain?wait_ms=soon");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_FALSE(draining);
  auto timedOut = client.Post("/drain?wait_ms=50");
  ASSERT_TRUE(timedOut);
  EXPECT_EQ(timedOut->status, 503);
  EXPECT_EQ(nlohmann::json::parse(timedOut->body)["sessions"], 1);
  EXPECT_TRUE(draining);
  EXPECT_EQ(client.Get("/readyz")->status, 503);
  // A second drain while one waits answers at once with the count (one waiter at a time).
  std::atomic<int> firstStatus{0};
  std::thread first([&] {
    httplib::Client waiter("127.0.0.1", server.port());
    waiter.set_read_timeout(std::chrono::seconds(30));
    auto drained = waiter.Post("/drain?wait_ms=20000");
    firstStatus = drained ? drained->status : -1;
  });
  // Until the first drain is in its wait loop (a count, not a sleep: the VM stalls now and then).
  const int before = counted.load();
  while (counted.load() < before + 3) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Were it to wait too, it would wait 20 s: the read timeout of 5 s makes that a failure.
  client.set_read_timeout(std::chrono::seconds(5));
  auto second = client.Post("/drain?wait_ms=20000");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 503);
  EXPECT_EQ(firstStatus, 0) << "the first drain stopped waiting";
  open = 0;
  first.join();
  EXPECT_EQ(firstStatus, 200);
  auto undo = client.Delete("/drain");
  ASSERT_TRUE(undo);
  EXPECT_FALSE(draining);
  server.stop();
}

// Only loopback peers may change anything.
TEST(AdminServer, LoopbackAddresses) {
  for (const char* address : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(isLoopbackAddress(address)) << address;
  for (const char* address : {"10.0.0.7", "::ffff:10.0.0.7", "fe80::1", "1127.0.0.1", ""})
    EXPECT_FALSE(isLoopbackAddress(address)) << address;
}

// A bad address is refused with a message; stop() without start() is harmless.
TEST(AdminServer, RejectsBadAddress) {
  AdminServer server(sources(std::make_shared<const discovery::RoutingTable>()));
  std::string error;
  EXPECT_FALSE(server.start("nonsense", &error));
  EXPECT_FALSE(error.empty());
}

// Stopping right after starting does not hang.
TEST(AdminServer, StopsRightAfterStart) {
  AdminServer server(sources(std::make_shared<const discovery::RoutingTable>()));
  std::string error;
  ASSERT_TRUE(server.start("127.0.0.1:0", &error)) << error;
  server.stop();
}

}  // namespace
}  // namespace pgkeel::admin
