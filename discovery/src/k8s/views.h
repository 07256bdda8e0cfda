// Pure decisions from cached Kubernetes objects to a SourceSnapshot: CloudNativePG, Zalando and
// the probe credentials in their Secrets.
// No I/O: the sources (cnpg_source.cpp, zalando_source.cpp) feed these from their informers, and
// the unit tests feed them from ../shared/fixtures/k8s.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "discovery/source.h"

namespace pgkeel::discovery::k8s {

// Objects of one watched collection by metadata.name (an informer's cache).
using ObjectMap = std::map<std::string, nlohmann::json>;

struct View {
  SourceSnapshot snapshot;
  // When the view changes with time alone (a Patroni leader lease running out): the source wakes
  // discovery at this instant even if no event arrives.
  std::optional<std::chrono::system_clock::time_point> recheckAt;
  // Where the snapshot's probe credentials come from, or why there are none; empty when the source
  // reads no Secret. Logged when it changes; names the user, never the password.
  std::string credentials;
};

// Python isoformat with microseconds and +00:00, as Patroni writes renewTime.
std::string formatIsoTime(std::chrono::system_clock::time_point at);

// CloudNativePG: `cluster` is the Cluster object (nullptr while unknown or deleted); `pods` the
// instance pods (cnpg.io/cluster=<c>,cnpg.io/podRole=instance). Candidates are pods with a podIP
// on `port`, hinted by cnpg.io/instanceRole (falling back to `role`). currentPrimary ==
// targetPrimary: Named that pod. A transition (targetPrimary != currentPrimary): moving = true,
// and Named the target (it gets writes once it answers f), or Nobody while targetPrimary is
// "pending" or names no pod with an IP. The old primary never gets writes during a transition.
// Decisions: a pod with metadata.deletionTimestamp stays a candidate (no hint) but is never named
// (Nobody instead); while the Cluster is unknown the view is Nobody, "cnpg: cluster not found"
// (nothing confirms a primary); a replica cluster (spec.replica.enabled) is Nobody.
View cnpgView(const nlohmann::json* cluster, const ObjectMap& pods, std::uint16_t port);

// Zalando/Spilo: `pods` (application=spilo,cluster-name=<c>), `leader` the ConfigMap <c>-leader or
// Endpoints <c> (nullptr while unknown). The leader annotation counts only while
// renewTime + ttl > now; spilo-role labels are hints, never the primary by themselves.
// Decisions: a live leader whose pod is unknown, has no IP or is being deleted is Nobody (moving);
// no `leader` annotation, an expired lock or an unreadable renewTime/ttl is Nobody (moving); while
// the leader object is unknown the view is NoOpinion, so the probe elects with the table builder's
// timeline and stale-primary guards. Hints: spilo-role, or the `status` annotation's role while its
// state is running; none when they disagree.
// The Zalando source feeds it a copy of the leader object whose renewTime is the local time that
// renewal was first seen (LocalRenewals in zalando_source.cpp), as Patroni itself times the lock.
View zalandoView(const ObjectMap& pods, const nlohmann::json* leader,
                 std::chrono::system_clock::time_point now, std::uint16_t port);

// The Secrets holding the probe's credentials: CNPG's application user `<cluster>-app`; Zalando's
// secret_name_template default `<user>.<cluster>.credentials.postgresql.acid.zalan.do`, with `_` in
// the user name written as `-`.
std::string cnpgSecretName(const std::string& cluster);
std::string zalandoSecretName(const std::string& user, const std::string& cluster);

struct SecretCredentials {
  std::string user;
  std::string password;
  std::string problem;  // why there are none, e.g. "not found"; empty when both are set
};

// The base64 data.username (else data.user, which CNPG also writes) and data.password of a Secret
// (nullptr: not found). Both must decode to non-empty text, or neither is used.
SecretCredentials secretCredentials(const nlohmann::json* secret);

// Puts the Secret's credentials into view.snapshot (or leaves them empty) and says so in
// view.credentials; `secretName` is "namespace/name" for that line.
void applySecretCredentials(View& view, const nlohmann::json* secret,
                            const std::string& secretName);

}  // namespace pgkeel::discovery::k8s
