// The Zalando source: informers on the postgresql, its Spilo pods, the Patroni leader object
// (ConfigMap <c>-leader or Endpoints <c>) and optionally the probe user's credentials Secret,
// viewed by zalandoView.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "k8s/informer.h"
#include "k8s/views.h"

namespace pgkeel::discovery::k8s {
namespace {

enum Cache { kPostgresqls, kPods, kLeaderConfigMaps, kLeaderEndpoints, kSecrets };

const nlohmann::json* findObject(const ObjectMap& objects, const std::string& name) {
  auto it = objects.find(name);
  return it == objects.end() ? nullptr : &it->second;
}

bool hasLeaderAnnotation(const nlohmann::json* object) {
  if (object == nullptr) return false;
  const nlohmann::json* annotations = object;
  for (const char* key : {"metadata", "annotations", "leader"}) {
    if (!annotations->is_object() || !annotations->contains(key)) return false;
    annotations = &(*annotations)[key];
  }
  return annotations->is_string() && !annotations->get<std::string>().empty();
}

// Patroni's own rule: a leader lock lives `ttl` from when the watcher saw it renewed, on the
// watcher's clock. A copy of the leader object whose renewTime is the local time its renewTime
// value was first seen, so the view's expiry cannot be skewed by Patroni's clock.
class LocalRenewals {
 public:
  const nlohmann::json* localize(const nlohmann::json* leader, const std::string& key,
                                 std::chrono::system_clock::time_point now) {
    if (leader == nullptr) return nullptr;
    const nlohmann::json* annotations = leader;
    for (const char* step : {"metadata", "annotations"}) {
      if (!annotations->is_object() || !annotations->contains(step)) return leader;
      annotations = &(*annotations)[step];
    }
    if (!annotations->is_object() || !annotations->contains("renewTime") ||
        !(*annotations)["renewTime"].is_string())
      return leader;
    const std::string renewTime = (*annotations)["renewTime"].get<std::string>();
    Seen& seen = seen_[key];
    if (seen.renewTime != renewTime) seen = Seen{renewTime, now};
    copies_[key] = *leader;
    copies_[key]["metadata"]["annotations"]["renewTime"] = formatIsoTime(seen.at);
    return &copies_[key];
  }

 private:
  struct Seen {
    std::string renewTime;
    std::chrono::system_clock::time_point at;
  };
  std::map<std::string, Seen> seen_;
  std::map<std::string, nlohmann::json> copies_;
};

}  // namespace

// The leader record: whichever of ConfigMap / Endpoints carries a `leader` annotation (the
// ConfigMap when both do), else whichever exists (the ConfigMap first).
const nlohmann::json* pickLeaderObject(const nlohmann::json* configMap,
                                       const nlohmann::json* endpoints) {
  if (hasLeaderAnnotation(configMap)) return configMap;
  if (hasLeaderAnnotation(endpoints)) return endpoints;
  return configMap != nullptr ? configMap : endpoints;
}

std::unique_ptr<Source> makeZalandoSource(const KubernetesOptions& options,
                                          std::shared_ptr<ApiClient> api, const std::string& ns) {
  const std::string& cluster = options.cluster;
  std::string label = "zalando " + ns + "/" + cluster;
  std::vector<InformerOptions> informers(4);

  informers[kPostgresqls] = baseInformerOptions(options, label + " postgresqls");
  informers[kPostgresqls].collection = Collection{"acid.zalan.do", "v1", "postgresqls", ns};
  informers[kPostgresqls].selectors.field = "metadata.name=" + cluster;
  // The view does not need it (the operator's CR says nothing about the primary): Spilo on
  // Kubernetes without the operator, or RBAC without postgresqls, must still route.
  informers[kPostgresqls].optional = true;

  informers[kPods] = baseInformerOptions(options, label + " pods");
  informers[kPods].collection = Collection{"", "v1", "pods", ns};
  informers[kPods].selectors.label = "application=spilo,cluster-name=" + cluster;

  std::string configMapName = cluster + "-leader";
  informers[kLeaderConfigMaps] = baseInformerOptions(options, label + " leader configmap");
  informers[kLeaderConfigMaps].collection = Collection{"", "v1", "configmaps", ns};
  informers[kLeaderConfigMaps].selectors.field = "metadata.name=" + configMapName;

  informers[kLeaderEndpoints] = baseInformerOptions(options, label + " leader endpoints");
  informers[kLeaderEndpoints].collection = Collection{"", "v1", "endpoints", ns};
  informers[kLeaderEndpoints].selectors.field = "metadata.name=" + cluster;

  std::string secret =
      options.probeFromSecret ? zalandoSecretName(options.secretUser, cluster) : "";
  if (!secret.empty()) informers.push_back(secretInformerOptions(options, label, ns, secret));

  std::uint16_t port = options.port;
  auto renewals = std::make_shared<LocalRenewals>();
  auto view = [cluster, configMapName, port, secret, ns, renewals](
                  const std::vector<ObjectMap>& caches, std::chrono::system_clock::time_point now) {
    const nlohmann::json* configMap =
        renewals->localize(findObject(caches[kLeaderConfigMaps], configMapName), "configmap", now);
    const nlohmann::json* endpoints =
        renewals->localize(findObject(caches[kLeaderEndpoints], cluster), "endpoints", now);
    View view = zalandoView(caches[kPods], pickLeaderObject(configMap, endpoints), now, port);
    // A leftover record of the other mode must not hide a live lock in the one Patroni renews.
    if (view.snapshot.opinion != LeaderOpinion::Named && hasLeaderAnnotation(configMap) &&
        hasLeaderAnnotation(endpoints)) {
      View other = zalandoView(caches[kPods], endpoints, now, port);
      if (other.snapshot.opinion == LeaderOpinion::Named) view = std::move(other);
    }
    if (!secret.empty()) {
      applySecretCredentials(view, findObject(caches[kSecrets], secret), ns + "/" + secret);
    }
    return view;
  };
  return std::make_unique<InformerSource>("zalando", std::move(api), std::move(informers),
                                          std::move(view));
}

}  // namespace pgkeel::discovery::k8s
