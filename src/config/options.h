// Options: every setting pgkeel reads, with its default; filled from the YAML file, CANDIDATES and
// flags.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace pgkeel::config {

using Millis = std::chrono::milliseconds;

enum class LogFormat { Text, Json };

struct Options {
  // Listeners: "ADDR:PORT"; an empty listen_replica disables the replica port.
  std::string listenPrimary = "0.0.0.0:6432";
  std::string listenReplica = "0.0.0.0:6433";
  int workers = 0;  // 0 = one per CPU the process may use (affinity and cgroup quota)

  // Discovery: where the node list and the control plane's view come from.
  std::string source = "static";         // static, cnpg, zalando, patroni
  std::vector<std::string> candidates;   // "host:port" (static source)
  std::string kubernetesCluster;         // cnpg/zalando: the Cluster or postgresql name
  std::string kubernetesNamespace;       // empty: the pod's namespace (or the kubeconfig context's)
  std::string kubeconfig;                // empty: in-cluster service account
  int postgresPort = 5432;               // cnpg/zalando: PostgreSQL port on the pod IPs
  bool probeFromSecret = false;          // cnpg/zalando: probe user and password from a Secret
  std::string secretUser = "postgres";   // zalando: whose credentials Secret the probe uses
  std::vector<std::string> patroniUrls;  // patroni: each member's REST API, http://host:8008
  Millis patroniPollInterval{500};
  std::string etcdUrl;        // patroni: optional etcd v3 JSON gateway for the leader key
  std::string etcdLeaderKey;  // e.g. /service/<scope>/leader
  Millis fastProbeInterval{50};
  std::string probe =
      "dbname=postgres connect_timeout=2";  // libpq conninfo for probes, no host/port
  Millis probeInterval{1000};
  Millis probeTimeout{1000};
  int unhealthyAfter = 3;
  int healthyAfter = 2;

  // Sessions.
  Millis primaryWait{5000};
  Millis connectTimeout{5000};
  Millis clientLoginTimeout{60000};
  int maxClientConnections = 10000;  // 0 = no limit
  int maxPrimaryConnections = 0;     // 0 = only max_client_connections
  int maxReplicaConnections = 0;
  bool replicaFallback = true;
  bool tcpKeepalive = true;
  Millis shutdownTimeout{30000};
  Millis drainDelay{0};

  // Admin HTTP server (/healthz /readyz /status /metrics); empty disables it.
  std::string adminListen = "0.0.0.0:9432";
  bool readyzRequiresReplica = false;  // /readyz also needs a healthy replica

  // Logging.
  std::string logLevel = "info";  // trace debug info warn error critical off
  LogFormat logFormat = LogFormat::Text;
};

}  // namespace pgkeel::config
