// Tests for the key catalogue: names, defaults, flags and every per-key validation.
#include "config/keys.h"

#include <gtest/gtest.h>

#include <set>

namespace pgkeel::config {
namespace {

// Sets one key from text on fresh defaults; returns the problem ("" when accepted).
std::string problemSetting(const std::string& name, std::string_view text) {
  const Key* key = findKey(name);
  EXPECT_NE(key, nullptr) << name;
  if (key == nullptr) return "no such key";
  Options options;
  return key->set(options, text);
}

Options setting(const std::string& name, std::string_view text) {
  Options options;
  EXPECT_EQ(findKey(name)->set(options, text), "") << name << ": " << text;
  return options;
}

// The catalogue holds exactly the keys of the contract, each once.
TEST(KeyCatalogue, HoldsEveryOptionsKeyOnce) {
  std::set<std::string> expected{"listen_primary",
                                 "listen_replica",
                                 "workers",
                                 "source",
                                 "candidates",
                                 "kubernetes_cluster",
                                 "kubernetes_namespace",
                                 "kubeconfig",
                                 "postgres_port",
                                 "probe_from_secret",
                                 "secret_user",
                                 "patroni_urls",
                                 "patroni_poll_interval",
                                 "etcd_url",
                                 "etcd_leader_key",
                                 "fast_probe_interval",
                                 "probe",
                                 "probe_interval",
                                 "probe_timeout",
                                 "unhealthy_after",
                                 "healthy_after",
                                 "primary_wait",
                                 "connect_timeout",
                                 "replica_fallback",
                                 "tcp_keepalive",
                                 "shutdown_timeout",
                                 "log_level",
                                 "log_format",
                                 "client_login_timeout",
                                 "drain_delay",
                                 "max_client_connections",
                                 "max_primary_connections",
                                 "max_replica_connections",
                                 "admin_listen",
                                 "readyz_requires_replica"};
  std::set<std::string> names;
  for (const Key& key : keys()) {
    EXPECT_TRUE(names.insert(key.name).second) << key.name << " appears twice";
    EXPECT_FALSE(key.description.empty()) << key.name;
    EXPECT_FALSE(key.valueName.empty()) << key.name;
  }
  EXPECT_EQ(names, expected);
}

// Each key's default, printed, reads back to the same value: the printers and parsers agree.
TEST(KeyCatalogue, DefaultTextRoundTripsThroughSetter) {
  for (const Key& key : keys()) {
    Options options;
    EXPECT_EQ(key.set(options, key.defaultText()), "") << key.name;
    EXPECT_EQ(key.get(options), key.defaultText()) << key.name;
  }
}

// Defaults come from options.h and print in the documented form.
TEST(KeyCatalogue, DefaultsPrintFromOptionsStruct) {
  EXPECT_EQ(findKey("listen_primary")->defaultText(), "0.0.0.0:6432");
  EXPECT_EQ(findKey("probe_interval")->defaultText(), "1s");
  EXPECT_EQ(findKey("shutdown_timeout")->defaultText(), "30s");
  EXPECT_EQ(findKey("replica_fallback")->defaultText(), "true");
  EXPECT_EQ(findKey("log_format")->defaultText(), "text");
  EXPECT_EQ(findKey("candidates")->defaultText(), "");
}

// Flag names are the key names with dashes, so flags and keys cannot drift apart.
TEST(KeyCatalogue, FlagNameDerivesFromKeyName) {
  EXPECT_EQ(findKey("probe_interval")->flag(), "--probe-interval");
  EXPECT_EQ(findKey("workers")->flag(), "--workers");
  EXPECT_EQ(findKey("no_such_key"), nullptr);
}

// Every duration key has a unit requirement and its own range.
TEST(KeyValidation, DurationKeysCheckTheirRanges) {
  EXPECT_EQ(problemSetting("probe_interval", "2"), "needs a unit, e.g. 2s");
  EXPECT_EQ(problemSetting("probe_interval", "0s"), "must be at least 1ms, not '0s'");
  EXPECT_EQ(problemSetting("probe_interval", "2h"), "must be at most 1h, not '2h'");
  EXPECT_EQ(problemSetting("probe_timeout", "2m"), "must be at most 1m, not '2m'");
  EXPECT_EQ(problemSetting("probe_timeout", "0ms"), "must be at least 1ms, not '0ms'");
  EXPECT_EQ(problemSetting("connect_timeout", "0s"), "must be at least 1ms, not '0s'");
  EXPECT_EQ(problemSetting("connect_timeout", "11m"), "must be at most 10m, not '11m'");
  EXPECT_EQ(problemSetting("primary_wait", "0s"), "");
  EXPECT_EQ(problemSetting("primary_wait", "1h"), "must be at most 10m, not '1h'");
  EXPECT_EQ(problemSetting("shutdown_timeout", "0s"), "");
  EXPECT_EQ(problemSetting("shutdown_timeout", "2h"), "must be at most 1h, not '2h'");
  EXPECT_EQ(setting("probe_timeout", "1m").probeTimeout, Millis(60000));
}

// workers is 0..1024; unhealthy_after and healthy_after are at least 1.
TEST(KeyValidation, CountKeysCheckTheirRanges) {
  EXPECT_EQ(setting("workers", "0").workers, 0);
  EXPECT_EQ(setting("workers", "1024").workers, 1024);
  EXPECT_EQ(problemSetting("workers", "1025"), "must be between 0 and 1024, not 1025");
  EXPECT_EQ(problemSetting("workers", "-1"), "must be between 0 and 1024, not -1");
  EXPECT_EQ(problemSetting("workers", "four"), "'four' is not a whole number");
  EXPECT_EQ(problemSetting("unhealthy_after", "0"), "must be between 1 and 1000, not 0");
  EXPECT_EQ(problemSetting("healthy_after", "0"), "must be between 1 and 1000, not 0");
  EXPECT_EQ(setting("healthy_after", "1").healthyAfter, 1);
}

// Listeners must be ADDR:PORT; only listen_replica may be empty, which turns it off.
TEST(KeyValidation, ListenAddressesParse) {
  EXPECT_EQ(setting("listen_primary", "[::]:6432").listenPrimary, "[::]:6432");
  EXPECT_EQ(problemSetting("listen_primary", "6432"),
            "'6432' is not ADDR:PORT, e.g. 10.0.0.5:5432 or [::1]:5432");
  EXPECT_EQ(problemSetting("listen_primary", "0.0.0.0:0"),
            "'0.0.0.0:0': the port must be a number from 1 to 65535");
  EXPECT_EQ(problemSetting("listen_primary", ""), "needs a value, e.g. 0.0.0.0:6432");
  EXPECT_EQ(setting("listen_replica", "").listenReplica, "");
}

// Candidates are HOST:PORT items; every bad item and every repeat is named.
TEST(KeyValidation, CandidatesNameEveryBadItem) {
  EXPECT_EQ(setting("candidates", "a:5432, b:5433").candidates,
            (std::vector<std::string>{"a:5432", "b:5433"}));
  EXPECT_EQ(problemSetting("candidates", "a:5432,b,a:5432"),
            "'b' is not ADDR:PORT, e.g. 10.0.0.5:5432 or [::1]:5432; 'a:5432' is listed twice");
  EXPECT_TRUE(setting("candidates", "").candidates.empty());
}

// The probe is libpq key=value text that leaves host and port to the candidates.
TEST(KeyValidation, ProbeIsConninfoWithoutHostOrPort) {
  EXPECT_EQ(setting("probe", "dbname=postgres password='a b\\' c' sslmode = disable").probe,
            "dbname=postgres password='a b\\' c' sslmode = disable");
  EXPECT_EQ(problemSetting("probe", "dbname=postgres host=db"),
            "must not set host: host and port come from candidates");
  EXPECT_EQ(problemSetting("probe", "port=5432"),
            "must not set port: host and port come from candidates");
  EXPECT_EQ(problemSetting("probe", "hostaddr=10.0.0.1"),
            "must not set hostaddr: host and port come from candidates");
  EXPECT_EQ(problemSetting("probe", "postgresql://db/postgres"),
            "write libpq key=value settings, not a URI; host and port come from candidates");
  EXPECT_EQ(problemSetting("probe", "dbname"), "'dbname' is not libpq key=value settings");
  EXPECT_EQ(problemSetting("probe", "password='open"),
            "'password='open' is not libpq key=value settings");
  EXPECT_EQ(setting("probe", "").probe, "");
}

// log_level is one of spdlog's level names; log_format is text or json.
TEST(KeyValidation, LogLevelAndFormatAreFromTheirLists) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_EQ(setting("log_level", level).logLevel, level);
  }
  EXPECT_EQ(setting("log_level", "WARN").logLevel, "warn");
  EXPECT_EQ(problemSetting("log_level", "verbose"),
            "'verbose' is not a log level; use trace, debug, info, warn, error, critical or off");
  EXPECT_EQ(setting("log_format", "json").logFormat, LogFormat::Json);
  EXPECT_EQ(setting("log_format", "text").logFormat, LogFormat::Text);
  EXPECT_EQ(problemSetting("log_format", "xml"), "'xml' is not a log format; use text or json");
}

// Booleans keys take every accepted spelling.
TEST(KeyValidation, BoolKeysTakeEveryForm) {
  EXPECT_FALSE(setting("replica_fallback", "off").replicaFallback);
  EXPECT_FALSE(setting("tcp_keepalive", "no").tcpKeepalive);
  EXPECT_EQ(problemSetting("tcp_keepalive", "maybe"),
            "'maybe' is not a boolean; use true/false, on/off, yes/no or 1/0");
}

// secret_user names a user whose Secret name can be built: not empty, no spaces or selectors.
TEST(KeyValidation, SecretUserIsAUserName) {
  EXPECT_EQ(findKey("secret_user")->defaultText(), "postgres");
  EXPECT_EQ(findKey("probe_from_secret")->defaultText(), "false");
  EXPECT_EQ(setting("secret_user", "orders_app").secretUser, "orders_app");
  EXPECT_TRUE(setting("probe_from_secret", "on").probeFromSecret);
  EXPECT_EQ(problemSetting("secret_user", ""), "needs a user name, e.g. postgres");
  EXPECT_EQ(problemSetting("secret_user", "a,b=c"),
            "'a,b=c' is not a user name: use letters, digits, _, - and .");
}

// probe_from_secret reads an operator's Secret, so it needs the cnpg or zalando source.
TEST(KeyValidation, ProbeFromSecretNeedsAKubernetesSource) {
  Options options;
  options.candidates = {"a:5432"};
  options.probeFromSecret = true;
  EXPECT_EQ(
      missingForSource(options),
      (std::vector<std::string>{"probe_from_secret needs source cnpg or zalando, not static"}));
  options.source = "zalando";
  options.kubernetesCluster = "acid-main";
  EXPECT_TRUE(missingForSource(options).empty());
}

// Both listeners on one address is a problem that names both keys.
TEST(KeyValidation, ListenersMustDiffer) {
  Options options;
  EXPECT_TRUE(checkCombination(options).empty());
  options.listenReplica = options.listenPrimary;
  EXPECT_EQ(checkCombination(options),
            (std::vector<std::string>{"listen_primary and listen_replica are both 0.0.0.0:6432"}));
  options.listenReplica = "";
  options.listenPrimary = "";
  EXPECT_TRUE(checkCombination(options).empty());
}

// changedKeys names exactly the keys whose values differ.
TEST(KeyCatalogue, ChangedKeysNamesTheDifferences) {
  Options before;
  Options after;
  EXPECT_TRUE(changedKeys(before, after).empty());
  after.probeInterval = Millis(2000);
  after.candidates = {"a:1"};
  EXPECT_EQ(changedKeys(before, after), (std::vector<std::string>{"candidates", "probe_interval"}));
}

}  // namespace
}  // namespace pgkeel::config
