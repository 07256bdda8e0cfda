// Tests for the libpq prober that need no PostgreSQL server (a fake one where a login is needed;
// plus one that uses a real server if told where).
#include "../../discovery/src/prober.h"  // private to the library; tests reach in on purpose

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "discovery/discovery_service.h"
#include "fake_postgres.h"
#include "test_ports.h"

namespace pgkeel::discovery {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::closedPort;
using testing::FakePostgres;
using testing::SilentServer;

milliseconds since(steady_clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A port with nothing listening fails at once with libpq's "Connection refused".
TEST(Prober, RefusedConnectionFailsQuicklyWithError) {
  std::uint16_t port = closedPort();
  Prober prober("dbname=postgres user=nobody", milliseconds(5000));
  auto start = steady_clock::now();
  std::vector<ProbeResult> results = prober.probeAll({{7, Endpoint{"127.0.0.1", port}}});
  EXPECT_LT(since(start), milliseconds(1000));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].ok);
  EXPECT_EQ(results[0].id, 7u);
  EXPECT_EQ(results[0].endpoint, (Endpoint{"127.0.0.1", port}));
  EXPECT_TRUE(contains(results[0].error, "connection failed")) << results[0].error;
  EXPECT_TRUE(contains(results[0].error, "Connection refused")) << results[0].error;
  EXPECT_EQ(results[0].error.find('\n'), std::string::npos);
  EXPECT_EQ(prober.openConnections(), 0u);
}

// A server that accepts TCP but never answers is given up on at the round's deadline.
TEST(Prober, SilentServerRespectsTimeout) {
  SilentServer server;
  ASSERT_TRUE(server.ok());
  Prober prober("dbname=postgres user=nobody connect_timeout=30", milliseconds(300));
  auto start = steady_clock::now();
  std::vector<ProbeResult> results = prober.probeAll({{1, Endpoint{"127.0.0.1", server.port()}}});
  milliseconds elapsed = since(start);
  EXPECT_GE(elapsed, milliseconds(290));
  EXPECT_LT(elapsed, milliseconds(1500));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].ok);
  EXPECT_TRUE(contains(results[0].error, "timeout")) << results[0].error;
  EXPECT_TRUE(contains(results[0].error, "300 ms")) << results[0].error;
  EXPECT_EQ(prober.openConnections(), 0u);
}

// interrupt() from another thread ends the round: the silent node's unfinished probe gives no
// result (it neither fails nor succeeds) and its connection is closed, while the finished probe of
// the fake server is kept. An interrupt before the round is dropped by clearInterrupt().
TEST(Prober, InterruptEndsTheRoundWithoutJudgingUnfinishedProbes) {
  SilentServer silent;
  FakePostgres answering("pw");
  ASSERT_TRUE(silent.ok() && answering.ok());
  Prober prober("dbname=postgres user=app password=pw", milliseconds(10000));
  prober.interrupt();
  prober.clearInterrupt();
  std::thread interrupter([&] {
    std::this_thread::sleep_for(milliseconds(300));
    prober.interrupt();
  });
  std::vector<ProbeResult> results = prober.probeAll(
      {{0, Endpoint{"127.0.0.1", silent.port()}}, {1, Endpoint{"127.0.0.1", answering.port()}}});
  interrupter.join();
  EXPECT_TRUE(prober.interrupted());
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].id, 1u);
  EXPECT_TRUE(results[0].ok) << results[0].error;
  EXPECT_EQ(prober.openConnections(), 1u);
  results = prober.probeAll({{1, Endpoint{"127.0.0.1", answering.port()}}});
  EXPECT_FALSE(prober.interrupted());
  ASSERT_EQ(results.size(), 1u);
}

// Nodes are probed concurrently: several silent servers cost one timeout, not one each, and a
// refused node in the same round still fails fast with its own error.
TEST(Prober, ProbesNodesConcurrently) {
  SilentServer a, b, c;
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  std::uint16_t refused = closedPort();
  Prober prober("dbname=postgres user=nobody", milliseconds(400));
  auto start = steady_clock::now();
  std::vector<ProbeResult> results = prober.probeAll({{0, Endpoint{"127.0.0.1", a.port()}},
                                                      {1, Endpoint{"127.0.0.1", refused}},
                                                      {2, Endpoint{"127.0.0.1", b.port()}},
                                                      {3, Endpoint{"127.0.0.1", c.port()}}});
  EXPECT_LT(since(start), milliseconds(1100));
  ASSERT_EQ(results.size(), 4u);
  for (NodeId id = 0; id < 4; ++id) {
    EXPECT_EQ(results[id].id, id);
    EXPECT_FALSE(results[id].ok);
  }
  EXPECT_TRUE(contains(results[1].error, "Connection refused")) << results[1].error;
  EXPECT_LT(results[1].latency, std::chrono::microseconds(400'000));
  EXPECT_TRUE(contains(results[0].error, "timeout")) << results[0].error;
}

// host, hostaddr and port in the DSN never redirect a probe away from the node's endpoint.
TEST(Prober, DsnCannotRedirectTheEndpoint) {
  std::uint16_t port = closedPort();
  Prober prober("host=192.0.2.1 hostaddr=192.0.2.1 port=1 dbname=postgres user=nobody",
                milliseconds(3000));
  auto start = steady_clock::now();
  std::vector<ProbeResult> results = prober.probeAll({{1, Endpoint{"127.0.0.1", port}}});
  EXPECT_LT(since(start), milliseconds(1000));
  ASSERT_EQ(results.size(), 1u);
  const std::string& error = results[0].error;
  EXPECT_TRUE(contains(error, "\"127.0.0.1\", port " + std::to_string(port))) << error;
  EXPECT_TRUE(contains(error, "Connection refused")) << error;
}

// An unparsable DSN fails every probe with libpq's reason, and checkProbeDsn reports it up front.
TEST(Prober, InvalidDsnFailsEveryProbeWithReason) {
  EXPECT_EQ(checkProbeDsn("dbname=postgres sslmode=prefer connect_timeout=2"), "");
  EXPECT_EQ(checkProbeDsn("postgresql://u@h/db?application_name=x"), "");
  EXPECT_EQ(checkProbeDsn(""), "");
  EXPECT_TRUE(contains(checkProbeDsn("bogus_option=1"), "bogus_option")) << checkProbeDsn("x=1");
  Prober prober("bogus_option=1", milliseconds(1000));
  std::vector<ProbeResult> results = prober.probeAll({{1, Endpoint{"127.0.0.1", closedPort()}}});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(contains(results[0].error, "invalid probe DSN")) << results[0].error;
  prober.setOptions("dbname=postgres", milliseconds(1000));
  results = prober.probeAll({{1, Endpoint{"127.0.0.1", closedPort()}}});
  EXPECT_TRUE(contains(results[0].error, "Connection refused")) << results[0].error;
}

// An empty round does nothing and returns nothing.
TEST(Prober, EmptyRoundReturnsAtOnce) {
  Prober prober("", milliseconds(1000));
  EXPECT_TRUE(prober.probeAll({}).empty());
}

// Each smaller query leaves out the functions a locked-down role may lack, and nothing else.
TEST(Prober, SmallerQueriesLeaveOutPrivilegedFunctions) {
  const std::string& full = probeQuery(ProbeQueryLevel::Full);
  const std::string& no_checkpoint = probeQuery(ProbeQueryLevel::NoCheckpoint);
  const std::string& no_timeline = probeQuery(ProbeQueryLevel::NoTimeline);
  EXPECT_TRUE(contains(full, "pg_control_checkpoint()"));
  EXPECT_TRUE(contains(full, "pg_walfile_name("));
  EXPECT_FALSE(contains(no_checkpoint, "pg_control_checkpoint"));
  EXPECT_TRUE(contains(no_checkpoint, "pg_walfile_name("));
  EXPECT_FALSE(contains(no_timeline, "pg_walfile_name"));
  EXPECT_FALSE(contains(no_timeline, "pg_stat_wal_receiver"));
  for (const std::string* query : {&full, &no_checkpoint, &no_timeline}) {
    EXPECT_TRUE(contains(*query, "pg_is_in_recovery()"));
    EXPECT_TRUE(contains(*query, "pg_last_xact_replay_timestamp()"));
  }
}

// Conninfo values are single-quoted with backslash escapes for \ and '.
TEST(Prober, QuotesConninfoValues) {
  EXPECT_EQ(quoteConninfoValue("app"), "'app'");
  EXPECT_EQ(quoteConninfoValue(""), "''");
  EXPECT_EQ(quoteConninfoValue("a b=c"), "'a b=c'");
  EXPECT_EQ(quoteConninfoValue("it's\\"), "'it\\'s\\\\'");
}

// The control plane's credentials replace the DSN's user and password and keep everything else;
// with no user the DSN is returned as it is.
TEST(Prober, CredentialsOverrideTheDsns) {
  const std::string dsn = "dbname=postgres user=nobody password=wrong connect_timeout=2";
  EXPECT_EQ(probeDsnWithCredentials(dsn, "", "ignored"), dsn);
  std::string with = probeDsnWithCredentials(dsn, "app", "p'w\\d");
  EXPECT_EQ(checkProbeDsn(with), "") << with;
  EXPECT_TRUE(contains(with, "dbname='postgres'")) << with;
  EXPECT_TRUE(contains(with, "connect_timeout='2'")) << with;
  EXPECT_TRUE(contains(with, "user='app'")) << with;
  EXPECT_TRUE(contains(with, "password='p\\'w\\\\d'")) << with;
  EXPECT_FALSE(contains(with, "nobody")) << with;
  EXPECT_FALSE(contains(with, "wrong")) << with;
  // No password from the control plane: none from the DSN either (it belonged to another user).
  std::string userOnly = probeDsnWithCredentials(dsn, "app", "");
  EXPECT_TRUE(contains(userOnly, "user='app'")) << userOnly;
  EXPECT_FALSE(contains(userOnly, "password")) << userOnly;
  // A URI is rewritten as key=value settings.
  std::string fromUri =
      probeDsnWithCredentials("postgresql://x:y@localhost/postgres?sslmode=disable", "app", "pw");
  EXPECT_EQ(checkProbeDsn(fromUri), "") << fromUri;
  EXPECT_TRUE(contains(fromUri, "sslmode='disable'")) << fromUri;
  EXPECT_TRUE(contains(fromUri, "dbname='postgres'")) << fromUri;
  EXPECT_TRUE(contains(fromUri, "user='app' password='pw'")) << fromUri;
  EXPECT_FALSE(contains(fromUri, "'x'")) << fromUri;
  // An unparsable DSN stays unparsable, so the prober reports it.
  EXPECT_NE(checkProbeDsn(probeDsnWithCredentials("bogus_option=1", "app", "pw")), "");
}

// The user and password (quotes and backslashes too) reach the server; a kept connection is
// reused while the DSN stays, and a changed password closes it: the next probe logs in anew with
// the new password although the old session would still have worked.
TEST(Prober, ChangedCredentialsReconnectWithTheNewPassword) {
  const std::string old_password = "old pa'ss\\word";
  FakePostgres server(old_password);
  ASSERT_TRUE(server.ok());
  Endpoint node{"127.0.0.1", server.port()};
  Prober prober(probeDsnWithCredentials("dbname=postgres", "app", old_password),
                milliseconds(3000));
  for (int round = 0; round < 2; ++round) {
    std::vector<ProbeResult> results = prober.probeAll({{0, node}});
    ASSERT_TRUE(results[0].ok) << results[0].error;
    EXPECT_FALSE(results[0].inRecovery);
    EXPECT_EQ(results[0].timeline, 1u);
  }
  using Login = FakePostgres::Login;
  EXPECT_EQ(server.logins(), (std::vector<Login>{{"app", old_password}}));
  EXPECT_EQ(prober.openConnections(), 1u);

  server.setPassword("new");
  prober.setOptions(probeDsnWithCredentials("dbname=postgres", "app", "new"), milliseconds(3000));
  EXPECT_EQ(prober.openConnections(), 0u);
  std::vector<ProbeResult> results = prober.probeAll({{0, node}});
  ASSERT_TRUE(results[0].ok) << results[0].error;
  EXPECT_EQ(server.logins(), (std::vector<Login>{{"app", old_password}, {"app", "new"}}));
  auto deadline = steady_clock::now() + milliseconds(2000);  // the old session's end is async
  while (server.openSessions() != 1 && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(server.openSessions(), 1);

  // A password the server does not take fails the probe with the server's reason.
  prober.setOptions(probeDsnWithCredentials("dbname=postgres", "app", "stale"), milliseconds(3000));
  results = prober.probeAll({{0, node}});
  EXPECT_FALSE(results[0].ok);
  EXPECT_TRUE(contains(results[0].error, "password authentication failed for user \"app\""))
      << results[0].error;
}

// Against a real server (PGKEEL_TEST_PG_PORT on 127.0.0.1, PG* variables for the rest): a good
// probe, a kept connection reused next round, and dropped when the node leaves the round.
TEST(Prober, ProbesLiveServerWhenConfigured) {
  const char* port_text = std::getenv("PGKEEL_TEST_PG_PORT");
  if (port_text == nullptr) GTEST_SKIP() << "set PGKEEL_TEST_PG_PORT to probe a live server";
  Endpoint endpoint{"127.0.0.1", static_cast<std::uint16_t>(std::atoi(port_text))};
  Prober prober("dbname=postgres", milliseconds(2000));
  for (int round = 0; round < 2; ++round) {
    std::vector<ProbeResult> results = prober.probeAll({{3, endpoint}});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_TRUE(results[0].ok) << results[0].error;
    EXPECT_GT(results[0].lsn, 0u);
    EXPECT_EQ(prober.openConnections(), 1u);
    std::printf(
        "in_recovery=%d lsn=%llx timeline=%u delay=%s latency=%lldus\n", results[0].inRecovery,
        static_cast<unsigned long long>(results[0].lsn), results[0].timeline,
        results[0].replayDelaySeconds ? std::to_string(*results[0].replayDelaySeconds).c_str()
                                      : "null",
        static_cast<long long>(results[0].latency.count()));
  }
  prober.probeAll({});
  EXPECT_EQ(prober.openConnections(), 0u);
}

}  // namespace
}  // namespace pgkeel::discovery
