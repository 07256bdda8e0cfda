// The one catalogue of configuration keys; flags, YAML loading and usage derive from it.
#include "config/keys.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <utility>

#include "config/values.h"

namespace pgkeel::config {
namespace {

using std::chrono::hours;
using std::chrono::minutes;

std::string setDuration(Millis& field, std::string_view text, Millis min, Millis max) {
  Millis value{};
  if (std::string problem = parseDuration(text, value); !problem.empty()) return problem;
  if (value < min)
    return "must be at least " + formatDuration(min) + ", not " + inQuotes(trim(text));
  if (value > max)
    return "must be at most " + formatDuration(max) + ", not " + inQuotes(trim(text));
  field = value;
  return "";
}

Key durationKey(std::string name, Millis Options::*field, Millis min, Millis max,
                std::string description) {
  return {std::move(name),
          "DURATION",
          std::move(description),
          false,
          [=](Options& o, std::string_view text) { return setDuration(o.*field, text, min, max); },
          [=](const Options& o) { return formatDuration(o.*field); }};
}

Key intKey(std::string name, int Options::*field, int min, int max, std::string description) {
  return {std::move(name),
          "N",
          std::move(description),
          false,
          [=](Options& o, std::string_view text) { return parseInt(text, min, max, o.*field); },
          [=](const Options& o) { return std::to_string(o.*field); }};
}

Key boolKey(std::string name, bool Options::*field, std::string description) {
  return {std::move(name),
          "BOOL",
          std::move(description),
          false,
          [=](Options& o, std::string_view text) { return parseBool(text, o.*field); },
          [=](const Options& o) { return std::string(o.*field ? "true" : "false"); }};
}

// An "ADDR:PORT" listener; an empty value is allowed when it switches the listener off.
Key listenKey(std::string name, std::string Options::*field, bool mayBeEmpty,
              std::string description) {
  auto set = [=](Options& o, std::string_view text) -> std::string {
    std::string_view value = trim(text);
    if (value.empty() && !mayBeEmpty) return "needs a value, e.g. 0.0.0.0:6432";
    if (!value.empty()) {
      if (std::string problem = checkHostPort(value); !problem.empty()) return problem;
    }
    o.*field = std::string(value);
    return "";
  };
  return {std::move(name), "ADDR:PORT", std::move(description),
          false,           set,         [=](const Options& o) { return o.*field; }};
}

std::string setCandidates(Options& o, std::string_view text) {
  std::vector<std::string> items = splitList(text);
  std::string problems;
  for (auto it = items.begin(); it != items.end(); ++it) {
    std::string problem = checkHostPort(*it);
    if (problem.empty() && std::find(items.begin(), it, *it) != it) {
      problem = inQuotes(*it) + " is listed twice";
    }
    if (!problem.empty()) problems += (problems.empty() ? "" : "; ") + problem;
  }
  if (problems.empty()) o.candidates = std::move(items);
  return problems;
}

std::string setSource(Options& o, std::string_view text) {
  std::string source = toLower(trim(text));
  for (const char* known : {"static", "cnpg", "zalando", "patroni"}) {
    if (source == known) {
      o.source = source;
      return "";
    }
  }
  return inQuotes(text) + " is not a source; use static, cnpg, zalando or patroni";
}

// A plain string; `check` returns the problem with a non-empty value, or "".
Key stringKey(std::string name, std::string valueName, std::string Options::*field,
              std::string description,
              std::function<std::string(std::string_view)> check = nullptr) {
  auto set = [=](Options& o, std::string_view text) -> std::string {
    std::string_view value = trim(text);
    if (check && !value.empty()) {
      if (std::string problem = check(value); !problem.empty()) return problem;
    }
    o.*field = std::string(value);
    return "";
  };
  return {std::move(name),
          std::move(valueName),
          std::move(description),
          false,
          set,
          [=](const Options& o) { return o.*field; }};
}

std::string checkHttpUrl(std::string_view url) {
  if (!url.starts_with("http://") && !url.starts_with("https://")) {
    return inQuotes(url) + " is not an http:// or https:// URL";
  }
  std::string_view rest = url.substr(url.find("//") + 2);
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') {
    return inQuotes(url) + " has no host";
  }
  return "";
}

std::string setPatroniUrls(Options& o, std::string_view text) {
  std::vector<std::string> items = splitList(text);
  std::string problems;
  for (const std::string& item : items) {
    std::string problem = checkHttpUrl(item);
    if (!problem.empty()) problems += (problems.empty() ? "" : "; ") + problem;
  }
  if (problems.empty()) o.patroniUrls = std::move(items);
  return problems;
}

std::string joinList(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ",") + item;
  return text;
}

std::string joinCandidates(const Options& o) {
  std::string text;
  for (const std::string& candidate : o.candidates) text += (text.empty() ? "" : ",") + candidate;
  return text;
}

// Skips one conninfo value (plain, or single-quoted with backslash escapes) at the front of rest.
bool skipConninfoValue(std::string_view& rest) {
  if (rest.empty() || rest.front() != '\'') {
    size_t end = 0;
    while (end < rest.size() && !std::isspace(static_cast<unsigned char>(rest[end]))) ++end;
    rest.remove_prefix(end);
    return true;
  }
  for (size_t i = 1; i < rest.size(); ++i) {
    if (rest[i] == '\\') {
      ++i;
    } else if (rest[i] == '\'') {
      rest.remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

// Takes one "key = value" pair from the front of rest; false if rest does not start with one.
bool takeConninfoPair(std::string_view& rest, std::string& key) {
  size_t equals = rest.find('=');
  if (equals == std::string_view::npos) return false;
  key = std::string(trim(rest.substr(0, equals)));
  auto isWordChar = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (key.empty() || !std::all_of(key.begin(), key.end(), isWordChar)) return false;
  rest = trim(rest.substr(equals + 1));
  return skipConninfoValue(rest);
}

std::string setProbe(Options& o, std::string_view text) {
  std::string_view rest = trim(text);
  if (rest.starts_with("postgres://") || rest.starts_with("postgresql://")) {
    return "write libpq key=value settings, not a URI; host and port come from candidates";
  }
  while (!rest.empty()) {
    std::string key;
    if (!takeConninfoPair(rest, key)) return inQuotes(text) + " is not libpq key=value settings";
    if (key == "host" || key == "hostaddr" || key == "port") {
      return "must not set " + key + ": host and port come from candidates";
    }
    rest = trim(rest);
  }
  o.probe = std::string(trim(text));
  return "";
}

// A Zalando user whose Secret name (`_` as `-`) is a valid object name part.
std::string setSecretUser(Options& o, std::string_view text) {
  std::string_view user = trim(text);
  if (user.empty()) return "needs a user name, e.g. postgres";
  auto allowed = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  };
  if (!std::all_of(user.begin(), user.end(), allowed)) {
    return inQuotes(text) + " is not a user name: use letters, digits, _, - and .";
  }
  o.secretUser = std::string(user);
  return "";
}

std::string setLogLevel(Options& o, std::string_view text) {
  static const std::vector<std::string> kLevels{"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  std::string level = toLower(trim(text));
  if (std::find(kLevels.begin(), kLevels.end(), level) == kLevels.end()) {
    return inQuotes(text) +
           " is not a log level; use trace, debug, info, warn, error, critical or off";
  }
  o.logLevel = level;
  return "";
}

std::string setLogFormat(Options& o, std::string_view text) {
  std::string format = toLower(trim(text));
  if (format == "text") {
    o.logFormat = LogFormat::Text;
  } else if (format == "json") {
    o.logFormat = LogFormat::Json;
  } else {
    return inQuotes(text) + " is not a log format; use text or json";
  }
  return "";
}

std::vector<Key> buildKeys() {
  return {
      listenKey("listen_primary", &Options::listenPrimary, false,
                "where clients connect to reach the primary (read-write)"),
      listenKey("listen_replica", &Options::listenReplica, true,
                "where clients connect to reach a replica (read-only); empty disables it"),
      intKey("workers", &Options::workers, 0, 1024,
             "worker threads, 0 to 1024; 0 means one per CPU the process may use"),
      Key{"source", "SOURCE",
          "where nodes and the primary's name come from: static, cnpg, zalando or patroni", false,
          setSource, [](const Options& o) { return o.source; }},
      Key{"candidates", "HOST:PORT,...",
          "static source: PostgreSQL nodes to probe, a YAML list or one comma-separated string",
          true, setCandidates, joinCandidates},
      stringKey("kubernetes_cluster", "NAME", &Options::kubernetesCluster,
                "cnpg, zalando: the Cluster (postgresql.cnpg.io) or postgresql (acid.zalan.do) "
                "to follow"),
      stringKey("kubernetes_namespace", "NAMESPACE", &Options::kubernetesNamespace,
                "cnpg, zalando: its namespace; empty means pgkeel's own (or the kubeconfig "
                "context's)"),
      stringKey("kubeconfig", "PATH", &Options::kubeconfig,
                "cnpg, zalando: a kubeconfig file; empty means the pod's service account"),
      intKey("postgres_port", &Options::postgresPort, 1, 65535,
             "cnpg, zalando: the PostgreSQL port on the pod IPs"),
      boolKey("probe_from_secret", &Options::probeFromSecret,
              "cnpg, zalando: the probe's user and password come from the operator's Secret "
              "(<c>-app, or <secret_user>.<c>.credentials.postgresql.acid.zalan.do) and follow "
              "its rotation"),
      Key{"secret_user", "USER", "zalando: whose credentials Secret the probe uses", false,
          setSecretUser, [](const Options& o) { return o.secretUser; }},
      Key{"patroni_urls", "URL,...",
          "patroni: every member's REST API, e.g. http://10.0.0.1:8008; a list or one string", true,
          setPatroniUrls, [](const Options& o) { return joinList(o.patroniUrls); }},
      durationKey("patroni_poll_interval", &Options::patroniPollInterval, Millis(10), minutes(1),
                  "patroni: time between two GET /cluster polls"),
      stringKey("etcd_url", "URL", &Options::etcdUrl,
                "patroni: etcd v3 (JSON gateway) to watch the leader key; empty: poll only",
                checkHttpUrl),
      stringKey("etcd_leader_key", "KEY", &Options::etcdLeaderKey,
                "patroni: the leader key in etcd, e.g. /service/<scope>/leader"),
      durationKey("fast_probe_interval", &Options::fastProbeInterval, Millis(1), minutes(1),
                  "probe interval while the control plane says the primary is moving"),
      Key{"probe", "CONNINFO",
          "libpq key=value settings for probe connections, without host, hostaddr or port", false,
          setProbe, [](const Options& o) { return o.probe; }},
      durationKey("probe_interval", &Options::probeInterval, Millis(1), hours(1),
                  "time between two probes of one candidate"),
      durationKey("probe_timeout", &Options::probeTimeout, Millis(1), minutes(1),
                  "time a probe may take before it counts as failed, at most 1m"),
      intKey("unhealthy_after", &Options::unhealthyAfter, 1, 1000,
             "failed probes in a row that take a node out of routing"),
      intKey("healthy_after", &Options::healthyAfter, 1, 1000,
             "successful probes in a row that bring a node back"),
      durationKey("primary_wait", &Options::primaryWait, Millis(0), minutes(10),
                  "how long a client waits for a primary during failover; 0s fails at once"),
      durationKey("connect_timeout", &Options::connectTimeout, Millis(1), minutes(10),
                  "time allowed to open a connection to a PostgreSQL node"),
      durationKey("client_login_timeout", &Options::clientLoginTimeout, Millis(1), minutes(10),
                  "time a new client has to send its start-up packet (after SSLRequest too)"),
      intKey("max_client_connections", &Options::maxClientConnections, 0, 1000000,
             "client connections open at once over both ports; past it 53300; 0 means no limit"),
      intKey("max_primary_connections", &Options::maxPrimaryConnections, 0, 1000000,
             "client connections open at once on the primary port; 0 means no own limit"),
      intKey("max_replica_connections", &Options::maxReplicaConnections, 0, 1000000,
             "client connections open at once on the replica port; 0 means no own limit"),
      boolKey("replica_fallback", &Options::replicaFallback,
              "send replica-port clients to the primary while no replica is healthy"),
      boolKey("tcp_keepalive", &Options::tcpKeepalive,
              "turn on TCP keepalive for client and server connections"),
      durationKey("drain_delay", &Options::drainDelay, Millis(0), minutes(10),
                  "after SIGTERM, how long /readyz fails while listeners still accept"),
      durationKey("shutdown_timeout", &Options::shutdownTimeout, Millis(0), hours(1),
                  "how long shutdown waits for clients to finish; 0s closes them at once"),
      listenKey("admin_listen", &Options::adminListen, true,
                "where the admin HTTP server (/healthz /readyz /status /metrics; POST /reload and "
                "/drain from loopback only) listens; empty disables it"),
      boolKey("readyz_requires_replica", &Options::readyzRequiresReplica,
              "/readyz also needs a healthy replica, not only a primary"),
      Key{"log_level", "LEVEL", "trace, debug, info, warn, error, critical or off", false,
          setLogLevel, [](const Options& o) { return o.logLevel; }},
      Key{"log_format", "FORMAT", "text, or json for one JSON object per line", false, setLogFormat,
          [](const Options& o) {
            return std::string(o.logFormat == LogFormat::Json ? "json" : "text");
          }},
  };
}

}  // namespace

std::string Key::flag() const {
  std::string flag = "--" + name;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

std::string Key::defaultText() const {
  return get(Options{});
}

const std::vector<Key>& keys() {
  static const std::vector<Key> kKeys = buildKeys();
  return kKeys;
}

const Key* findKey(std::string_view name) {
  for (const Key& key : keys()) {
    if (key.name == name) return &key;
  }
  return nullptr;
}

std::vector<std::string> checkCombination(const Options& options) {
  std::vector<std::string> problems;

  if (!options.listenReplica.empty() && options.listenReplica == options.listenPrimary) {
    problems.push_back("listen_primary and listen_replica are both " + options.listenPrimary);
  }
  for (const std::string* listener : {&options.listenPrimary, &options.listenReplica}) {
    if (!options.adminListen.empty() && options.adminListen == *listener)
      problems.push_back("admin_listen and a client listener are both " + options.adminListen);
  }
  return problems;
}

std::vector<std::string> missingForSource(const Options& options) {
  std::vector<std::string> problems;
  if (options.source == "static" && options.candidates.empty()) {
    problems.push_back("no candidates: set --candidates, CANDIDATES or candidates:");
  }
  if ((options.source == "cnpg" || options.source == "zalando") &&
      options.kubernetesCluster.empty()) {
    problems.push_back("source " + options.source + " needs kubernetes_cluster");
  }
  if (options.probeFromSecret && options.source != "cnpg" && options.source != "zalando") {
    problems.push_back("probe_from_secret needs source cnpg or zalando, not " + options.source);
  }
  if (options.source == "patroni" && options.patroniUrls.empty()) {
    problems.push_back("source patroni needs patroni_urls");
  }
  if (!options.etcdUrl.empty() && options.etcdLeaderKey.empty()) {
    problems.push_back("etcd_url needs etcd_leader_key");
  }
  return problems;
}

std::vector<std::string> changedKeys(const Options& before, const Options& after) {
  std::vector<std::string> changed;
  for (const Key& key : keys()) {
    if (key.get(before) != key.get(after)) changed.push_back(key.name);
  }
  return changed;
}

}  // namespace pgkeel::config
