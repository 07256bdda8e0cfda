// The CloudNativePG source: informers on the Cluster, its instance pods and (optionally) the
// <c>-app Secret for the probe's credentials, viewed by cnpgView.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "k8s/informer.h"
#include "k8s/views.h"

namespace pgkeel::discovery::k8s {

std::unique_ptr<Source> makeCnpgSource(const KubernetesOptions& options,
                                       std::shared_ptr<ApiClient> api, const std::string& ns) {
  const std::string& cluster = options.cluster;
  std::string label = "cnpg " + ns + "/" + cluster;

  InformerOptions clusters = baseInformerOptions(options, label + " clusters");
  clusters.collection = Collection{"postgresql.cnpg.io", "v1", "clusters", ns};
  clusters.selectors.field = "metadata.name=" + cluster;

  InformerOptions pods = baseInformerOptions(options, label + " pods");
  pods.collection = Collection{"", "v1", "pods", ns};
  pods.selectors.label = "cnpg.io/cluster=" + cluster + ",cnpg.io/podRole=instance";

  std::vector<InformerOptions> informers;
  informers.push_back(std::move(clusters));
  informers.push_back(std::move(pods));
  std::string secret = options.probeFromSecret ? cnpgSecretName(cluster) : "";
  if (!secret.empty()) informers.push_back(secretInformerOptions(options, label, ns, secret));

  std::uint16_t port = options.port;
  auto view = [cluster, port, secret, ns](const std::vector<ObjectMap>& caches,
                                          std::chrono::system_clock::time_point) {
    auto it = caches[0].find(cluster);
    const nlohmann::json* object = it == caches[0].end() ? nullptr : &it->second;
    View view = cnpgView(object, caches[1], port);
    if (!secret.empty()) {
      auto found = caches[2].find(secret);
      applySecretCredentials(view, found == caches[2].end() ? nullptr : &found->second,
                             ns + "/" + secret);
    }
    return view;
  };
  return std::make_unique<InformerSource>("cnpg", std::move(api), std::move(informers),
                                          std::move(view));
}

}  // namespace pgkeel::discovery::k8s
