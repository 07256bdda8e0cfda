// The Zalando source: informers on the postgresql, its Spilo pods, the Patroni leader object
// (ConfigMap <c>-leader or Endpoints <c>) and optionally the probe user's credentials Secret,
// viewed by zalandoView.
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
  auto view = [cluster, configMapName, port, secret, ns](
                  const std::vector<ObjectMap>& caches, std::chrono::system_clock::time_point now) {
    const nlohmann::json* leader =
        pickLeaderObject(findObject(caches[kLeaderConfigMaps], configMapName),
                         findObject(caches[kLeaderEndpoints], cluster));
    View view = zalandoView(caches[kPods], leader, now, port);
    if (!secret.empty()) {
      applySecretCredentials(view, findObject(caches[kSecrets], secret), ns + "/" + secret);
    }
    return view;
  };
  return std::make_unique<InformerSource>("zalando", std::move(api), std::move(informers),
                                          std::move(view));
}

}  // namespace pgkeel::discovery::k8s
