// The injected container: pgkeel's args for a pod, their check, and the container as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "inject/pod_annotations.h"
#include "inject/sidecar_config.h"

namespace pgkeel::inject {

inline constexpr const char* kSidecarName = "pgkeel";
inline constexpr const char* kTokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount";
inline constexpr const char* kPgkeelPath = "/usr/local/bin/pgkeel";

// Listeners, then the sidecar config's `config`, then the pod's source, then its
// pgkeel.io/config.* annotations (a later flag wins).
std::vector<std::string> sidecarArgs(const SidecarConfig& config, const SidecarRequest& request);

// The args run through pgkeel's own command-line parser with an empty environment: its problems.
std::vector<std::string> checkSidecarArgs(const std::vector<std::string>& args);

// The service-account token volumeMount of the first container (then init container) that has
// one, or null.
nlohmann::json findTokenMount(const nlohmann::json& podSpec);

// The container of the spec (a native sidecar: restartPolicy Always); tokenMount may be null.
nlohmann::json sidecarContainer(const SidecarConfig& config, const std::vector<std::string>& args,
                                const nlohmann::json& tokenMount);

}  // namespace pgkeel::inject
