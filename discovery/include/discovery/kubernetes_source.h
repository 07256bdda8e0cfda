// Kubernetes sources: CloudNativePG Clusters and Zalando postgresqls followed by list + watch.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "discovery/source.h"

namespace pgkeel::discovery {

struct KubernetesOptions {
  enum class Operator { Cnpg, Zalando } op = Operator::Cnpg;
  std::string cluster;        // the Cluster (postgresql.cnpg.io) or postgresql (acid.zalan.do) name
  std::string ns;             // empty = the config's namespace (in-cluster or kubeconfig context)
  std::string kubeconfig;     // empty = in-cluster config
  std::uint16_t port = 5432;  // PostgreSQL port on the pod IPs
  // Each watch asks the server to end it after a random time in [watchTimeout, 2 * watchTimeout].
  std::chrono::seconds watchTimeout{300};
  // In-cluster config: where the token, ca.crt and namespace files are (tests point it elsewhere).
  std::string serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
  // Retries after failed requests: exponential from `backoffInitial`, with jitter, capped.
  std::chrono::milliseconds backoffInitial{200};
  std::chrono::milliseconds backoffMax{30000};
  // The probe's user and password come from the operator's Secret, followed by a watch: CNPG
  // <cluster>-app; Zalando <secretUser, _ as ->.<cluster>.credentials.postgresql.acid.zalan.do.
  // A Secret that is missing or that RBAC hides leaves them empty (the probe DSN's own are used).
  bool probeFromSecret = false;
  std::string secretUser = "postgres";  // Zalando: whose credentials Secret
};

// Loads the configuration and builds the source; start() begins watching. Throws
// std::runtime_error with a clear message when the configuration cannot be loaded.
std::unique_ptr<Source> makeKubernetesSource(const KubernetesOptions& options);

}  // namespace pgkeel::discovery
