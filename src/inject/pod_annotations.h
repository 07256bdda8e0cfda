// The pod annotations the webhook reads and writes (the one list), and what a pod's ask for.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pgkeel::inject {

struct Annotation {
  std::string name;         // "pgkeel.io/cnpg-cluster"; "pgkeel.io/config.<key>" for the family
  std::string valueName;    // "NAME"
  std::string source;       // for a source annotation, pgkeel's source ("cnpg"); else ""
  std::string key;          // the pgkeel key its value sets ("kubernetes_cluster"), or ""
  std::string description;  // one line
};

inline constexpr std::string_view kAnnotationPrefix = "pgkeel.io/";
inline constexpr std::string_view kInjectAnnotation = "pgkeel.io/inject";
inline constexpr std::string_view kNamespaceAnnotation = "pgkeel.io/cluster-namespace";
inline constexpr std::string_view kConfigAnnotationPrefix = "pgkeel.io/config.";
inline constexpr std::string_view kStatusAnnotation = "pgkeel.io/status";
inline constexpr std::string_view kStatusInjected = "injected";

// Every annotation, in documentation order.
const std::vector<Annotation>& annotations();

// pgkeel keys the webhook sets itself (listeners, source), which neither the sidecar config's
// `config:` nor a pgkeel.io/config.* annotation may set: returns why, or "" for any other key.
std::string reservedKeyReason(std::string_view key);

using AnnotationMap = std::map<std::string, std::string>;

// pgkeel.io/inject is exactly "true".
bool wantsInjection(const AnnotationMap& annotations);

// The pgkeel flags a pod's annotations ask for, or every problem with them.
struct SidecarRequest {
  std::vector<std::string> sourceArgs;  // --source cnpg --kubernetes-cluster pg-main ...
  bool kubernetesSource = false;        // cnpg or zalando: reads the API with the pod's token
  std::vector<std::string> configArgs;  // from pgkeel.io/config.*: --probe-interval 500ms
  std::vector<std::string> problems;    // each names its annotation

  bool ok() const { return problems.empty(); }
};

// podNamespace: the namespace of the pod (cnpg/zalando's default cluster namespace).
SidecarRequest readSidecarRequest(const AnnotationMap& annotations,
                                  const std::string& podNamespace);

}  // namespace pgkeel::inject
