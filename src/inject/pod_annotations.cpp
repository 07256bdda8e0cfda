// The pod annotations the webhook reads and writes, and the pgkeel flags a pod's ask for.
#include "inject/pod_annotations.h"

#include <algorithm>
#include <regex>

#include "config/keys.h"
#include "config/values.h"

namespace pgkeel::inject {
namespace {

using config::inQuotes;

constexpr const char* kSourceNames =
    "pgkeel.io/cnpg-cluster, pgkeel.io/zalando-cluster, pgkeel.io/patroni-urls or "
    "pgkeel.io/candidates";

std::string problemOf(std::string_view annotation, const std::string& problem) {
  return "annotation " + std::string(annotation) + ": " + problem;
}

// Kubernetes object names (DNS-1123 subdomain) and namespaces (DNS-1123 label).
std::string checkName(std::string_view value, bool label) {
  static const std::regex kSubdomain(R"([a-z0-9]([-a-z0-9.]*[a-z0-9])?)");
  static const std::regex kLabel(R"([a-z0-9]([-a-z0-9]*[a-z0-9])?)");
  std::string text(value);
  size_t limit = label ? 63 : 253;
  if (text.size() <= limit && std::regex_match(text, label ? kLabel : kSubdomain)) return "";
  return inQuotes(text) + " is not a Kubernetes " + (label ? "namespace" : "object name") +
         " (lower-case letters, digits and -" + (label ? "" : " or .") + ", at most " +
         std::to_string(limit) + " characters)";
}

// A value checked by the pgkeel key it sets; "" when good.
std::string checkValue(const config::Key& key, std::string_view value) {
  if (config::trim(value).empty()) return "needs a value";
  config::Options scratch;
  return key.set(scratch, value);
}

void addFlag(std::vector<std::string>& args, std::string_view key, std::string value) {
  args.push_back(config::findKey(key)->flag());
  args.push_back(std::move(value));
}

void readConfigAnnotation(SidecarRequest& request, const std::string& name,
                          const std::string& value) {
  std::string keyName = name.substr(kConfigAnnotationPrefix.size());
  const config::Key* key = config::findKey(keyName);
  std::string problem;
  if (key == nullptr) {
    std::vector<std::string> names;
    for (const config::Key& k : config::keys()) names.push_back(k.name);
    std::string near = config::closestMatch(keyName, names);
    problem =
        "unknown pgkeel key " + inQuotes(keyName) +
        (near.empty() ? ""
                      : " (did you mean " + std::string(kConfigAnnotationPrefix) + near + "?)");
  } else if (problem = reservedKeyReason(keyName); problem.empty()) {
    problem = checkValue(*key, value);
  }
  if (!problem.empty()) return request.problems.push_back(problemOf(name, problem));
  addFlag(request.configArgs, keyName, std::string(config::trim(value)));
}

std::string unknownAnnotation(const std::string& name) {
  std::vector<std::string> names;
  for (const Annotation& a : annotations()) {
    if (!a.name.starts_with(kConfigAnnotationPrefix)) names.push_back(a.name);
  }
  std::string near = config::closestMatch(name, names);
  return "annotation " + name + " is not one pgkeel knows" +
         (near.empty() ? "" : " (did you mean " + near + "?)");
}

// The cluster namespace for a cnpg/zalando source: the annotation's, else the pod's.
std::string clusterNamespace(SidecarRequest& request, bool kubernetes, const AnnotationMap& all,
                             const std::string& podNamespace) {
  auto ns = all.find(std::string(kNamespaceAnnotation));
  if (ns == all.end()) return podNamespace;
  std::string problem = kubernetes
                            ? checkName(ns->second, true)
                            : "only goes with pgkeel.io/cnpg-cluster or pgkeel.io/zalando-cluster";
  if (!problem.empty()) request.problems.push_back(problemOf(kNamespaceAnnotation, problem));
  return ns->second;
}

// Adds the flags for the one source annotation (and the cluster namespace it may take).
void readSource(SidecarRequest& request, const Annotation& source, const std::string& value,
                const AnnotationMap& all, const std::string& podNamespace) {
  bool kubernetes = source.key == "kubernetes_cluster";
  std::string problem = checkValue(*config::findKey(source.key), value);
  if (problem.empty() && kubernetes) problem = checkName(config::trim(value), false);
  if (!problem.empty()) request.problems.push_back(problemOf(source.name, problem));
  std::string ns = clusterNamespace(request, kubernetes, all, podNamespace);
  if (!request.problems.empty()) return;
  request.kubernetesSource = kubernetes;
  addFlag(request.sourceArgs, "source", source.source);
  addFlag(request.sourceArgs, source.key, std::string(config::trim(value)));
  if (kubernetes && !ns.empty()) addFlag(request.sourceArgs, "kubernetes_namespace", ns);
}

const Annotation* findAnnotation(const std::string& name) {
  for (const Annotation& a : annotations()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

}  // namespace

const std::vector<Annotation>& annotations() {
  static const std::vector<Annotation> kAnnotations{
      {"pgkeel.io/inject", "\"true\"", "", "",
       "inject the pgkeel sidecar (any other value, or none: the pod is left as it is)"},
      {"pgkeel.io/cnpg-cluster", "NAME", "cnpg", "kubernetes_cluster",
       "source: the CloudNativePG Cluster to follow"},
      {"pgkeel.io/zalando-cluster", "NAME", "zalando", "kubernetes_cluster",
       "source: the Zalando postgresql cluster to follow"},
      {"pgkeel.io/patroni-urls", "URL,...", "patroni", "patroni_urls",
       "source: each Patroni member's REST API"},
      {"pgkeel.io/candidates", "HOST:PORT,...", "static", "candidates",
       "source: a static list of PostgreSQL nodes"},
      {"pgkeel.io/cluster-namespace", "NAMESPACE", "", "kubernetes_namespace",
       "cnpg/zalando: the cluster's namespace (default: the pod's)"},
      {"pgkeel.io/config.<key>", "VALUE", "", "",
       "any other pgkeel configuration key, applied after the sidecar config's `config`"},
      {"pgkeel.io/status", "injected", "", "",
       "written by the webhook; a pod that has it is left as it is"},
  };
  return kAnnotations;
}

std::string reservedKeyReason(std::string_view key) {
  if (key == "listen_primary" || key == "listen_replica" || key == "admin_listen") {
    return "is set by the webhook from the sidecar config's listenAddress and ports";
  }
  if (key == "source") return std::string("is set by the webhook from ") + kSourceNames;
  for (const Annotation& a : annotations()) {
    if (!a.key.empty() && a.key == key) {
      return "is set by the webhook from annotation " + a.name;
    }
  }
  return "";
}

bool wantsInjection(const AnnotationMap& annotations) {
  auto it = annotations.find(std::string(kInjectAnnotation));
  return it != annotations.end() && it->second == "true";
}

SidecarRequest readSidecarRequest(const AnnotationMap& all, const std::string& podNamespace) {
  SidecarRequest request;
  std::vector<std::pair<const Annotation*, std::string>> sources;
  for (const auto& [name, value] : all) {
    if (!name.starts_with(kAnnotationPrefix)) continue;
    if (name.starts_with(kConfigAnnotationPrefix)) {
      readConfigAnnotation(request, name, value);
      continue;
    }
    const Annotation* known = findAnnotation(name);
    if (known == nullptr) request.problems.push_back(unknownAnnotation(name));
    if (known != nullptr && !known->source.empty()) sources.emplace_back(known, value);
  }
  if (sources.empty()) {
    request.problems.push_back(std::string("no source annotation: set one of ") + kSourceNames);
  } else if (sources.size() > 1) {
    std::string names;
    for (const auto& [a, value] : sources) names += (names.empty() ? "" : " and ") + a->name;
    request.problems.push_back("annotations " + names + " each name a source; keep only one");
  } else {
    readSource(request, *sources[0].first, sources[0].second, all, podNamespace);
  }
  return request;
}

}  // namespace pgkeel::inject
