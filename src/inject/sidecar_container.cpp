// The injected container: pgkeel's args for a pod, their check, and the container as JSON.
#include "inject/sidecar_container.h"

#include "config/command_line.h"
#include "config/keys.h"

namespace pgkeel::inject {
namespace {

using nlohmann::json;

std::string hostPort(const std::string& host, int port) {
  bool bareIpv6 = host.find(':') != std::string::npos && !host.starts_with("[");
  return (bareIpv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

void addFlag(std::vector<std::string>& args, const std::string& key, const std::string& value) {
  args.push_back(config::findKey(key)->flag());
  args.push_back(value);
}

json httpProbe(const char* path, int port, int period, int failures) {
  return {{"httpGet", {{"path", path}, {"port", port}}},
          {"periodSeconds", period},
          {"failureThreshold", failures}};
}

json preStop(const SidecarConfig& config) {
  json command = {kPgkeelPath, "drain",
                  "--admin",   hostPort("127.0.0.1", config.adminPort),
                  "--timeout", config.drainTimeout};
  return {{"preStop", {{"exec", {{"command", command}}}}}};
}

// The token mount rebuilt from its known scalar fields only: nothing of the request's own shape
// (however deep or large) reaches the patch.
json typedMount(const json& mount) {
  json out = json::object();
  for (const char* key :
       {"name", "mountPath", "subPath", "mountPropagation", "recursiveReadOnly"}) {
    if (mount.contains(key) && mount[key].is_string()) out[key] = mount[key];
  }
  if (mount.contains("readOnly") && mount["readOnly"].is_boolean())
    out["readOnly"] = mount["readOnly"];
  return out.contains("name") ? out : json();
}

json mountsIn(const json& containers) {
  if (!containers.is_array()) return nullptr;
  for (const json& container : containers) {
    if (!container.is_object() || !container.contains("volumeMounts")) continue;
    const json& mounts = container["volumeMounts"];
    if (!mounts.is_array()) continue;
    for (const json& mount : mounts) {
      if (mount.is_object() && mount.contains("mountPath") && mount["mountPath"] == kTokenMountPath)
        return typedMount(mount);
    }
  }
  return nullptr;
}

// Keys of the sidecar config that only the Kubernetes sources read; a patroni or static pod
// gets the rest (else pgkeel's own check would refuse its arguments).
bool appliesToSource(const std::string& key, const SidecarRequest& request) {
  return request.kubernetesSource || (key != "probe_from_secret" && key != "secret_user");
}

}  // namespace

std::vector<std::string> sidecarArgs(const SidecarConfig& config, const SidecarRequest& request) {
  std::vector<std::string> args;
  addFlag(args, "listen_primary", hostPort(config.listenAddress, config.primaryPort));
  addFlag(args, "listen_replica", hostPort(config.listenAddress, config.replicaPort));
  addFlag(args, "admin_listen", hostPort("0.0.0.0", config.adminPort));
  for (const auto& [key, value] : config.config) {
    if (appliesToSource(key, request)) addFlag(args, key, value);
  }
  args.insert(args.end(), request.sourceArgs.begin(), request.sourceArgs.end());
  args.insert(args.end(), request.configArgs.begin(), request.configArgs.end());
  return args;
}

std::vector<std::string> checkSidecarArgs(const std::vector<std::string>& args) {
  config::ParseResult parsed = config::parseCommandLine(args, config::mapEnv({}));
  if (parsed.action == config::Action::Run) return {};
  if (parsed.errors.empty()) return {"the arguments do not start pgkeel"};
  return parsed.errors;
}

json findTokenMount(const json& podSpec) {
  if (!podSpec.is_object()) return nullptr;
  json mount = podSpec.contains("containers") ? mountsIn(podSpec["containers"]) : json();
  if (mount.is_null() && podSpec.contains("initContainers"))
    mount = mountsIn(podSpec["initContainers"]);
  return mount;
}

json sidecarContainer(const SidecarConfig& config, const std::vector<std::string>& args,
                      const json& tokenMount) {
  json container = {
      {"name", kSidecarName},
      {"image", config.image},
      {"imagePullPolicy", config.imagePullPolicy},
      {"restartPolicy", "Always"},
      {"args", args},
      {"ports",
       {{{"name", "pgkeel-admin"}, {"containerPort", config.adminPort}, {"protocol", "TCP"}}}},
      {"startupProbe", httpProbe("/healthz", config.adminPort, 1, 60)},
      {"readinessProbe", httpProbe("/readyz", config.adminPort, 5, 2)},
      {"livenessProbe", httpProbe("/healthz", config.adminPort, 10, 3)},
      {"lifecycle", preStop(config)},
      {"resources", config.resources},
      {"securityContext", config.securityContext},
  };
  if (!tokenMount.is_null()) container["volumeMounts"] = json::array({tokenMount});
  return container;
}

}  // namespace pgkeel::inject
