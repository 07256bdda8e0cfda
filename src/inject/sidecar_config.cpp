// The sidecar config file: its key catalogue and a loader that reports every problem with its line.
#include "inject/sidecar_config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/keys.h"
#include "config/values.h"
#include "inject/kube_yaml.h"
#include "inject/pod_annotations.h"

namespace pgkeel::inject {
namespace {

using config::inQuotes;
using nlohmann::json;

// The scalar text of value, or "" after reporting that key needs a single value.
bool scalarOf(const YAML::Node& at, const YAML::Node& value, const std::string& key,
              YamlProblems& problems, std::string& out) {
  if (value.IsScalar()) {
    out = std::string(config::trim(value.Scalar()));
    return true;
  }
  problems.add(at.Mark(), key, value.IsNull() ? "needs a value" : "expects a single value");
  return false;
}

SidecarKey choiceKey(std::string name, std::vector<std::string> choices,
                     std::string SidecarConfig::*field, std::string description) {
  auto set = [=](SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
                 YamlProblems& problems) {
    std::string text;
    if (!scalarOf(at, value, name, problems, text)) return;
    for (const std::string& choice : choices) {
      if (text == choice) return void(c.*field = text);
    }
    std::string list;
    for (const std::string& choice : choices) list += (list.empty() ? "" : ", ") + choice;
    problems.add(at.Mark(), name, inQuotes(text) + " is not one of " + list);
  };
  return {name, "ENUM", std::move(description), set,
          [=](const SidecarConfig& c) { return c.*field; }};
}

SidecarKey portKey(std::string name, int SidecarConfig::*field, std::string description) {
  auto set = [=](SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
                 YamlProblems& problems) {
    std::string text;
    if (!scalarOf(at, value, name, problems, text)) return;
    std::string problem = config::parseInt(text, 1, 65535, c.*field);
    if (!problem.empty()) problems.add(at.Mark(), name, problem);
  };
  return {name, "PORT", std::move(description), set,
          [=](const SidecarConfig& c) { return std::to_string(c.*field); }};
}

void setImage(SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
              YamlProblems& problems) {
  std::string text;
  if (!scalarOf(at, value, "image", problems, text)) return;
  if (text.empty() || text.find_first_of(" \t\n") != std::string::npos) {
    return problems.add(at.Mark(), "image",
                        "needs an image reference, e.g. ghcr.io/pgkeel/pgkeel:0.1.0");
  }
  c.image = text;
}

void setFailurePolicy(SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
                      YamlProblems& problems) {
  std::string text;
  if (!scalarOf(at, value, "failurePolicy", problems, text)) return;
  if (text == "Ignore" || text == "Fail") {
    c.failurePolicy = text == "Fail" ? FailurePolicy::Fail : FailurePolicy::Ignore;
    return;
  }
  problems.add(at.Mark(), "failurePolicy", inQuotes(text) + " is not one of Ignore, Fail");
}

void setListenAddress(SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
                      YamlProblems& problems) {
  std::string text;
  if (!scalarOf(at, value, "listenAddress", problems, text)) return;
  bool bareIpv6 = text.find(':') != std::string::npos && !text.starts_with("[");
  std::string problem = config::checkHostPort((bareIpv6 ? "[" + text + "]" : text) + ":6432");
  if (!problem.empty() || text.empty()) {
    return problems.add(at.Mark(), "listenAddress",
                        inQuotes(text) + " is not an address, e.g. 127.0.0.1");
  }
  c.listenAddress = text;
}

void setDrainTimeout(SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
                     YamlProblems& problems) {
  std::string text;
  if (!scalarOf(at, value, "drainTimeout", problems, text)) return;
  config::Millis millis{};
  std::string problem = config::parseDuration(text, millis);
  if (problem.empty() && millis.count() <= 0) problem = "must be more than 0s";
  if (!problem.empty()) return problems.add(at.Mark(), "drainTimeout", problem);
  c.drainTimeout = config::formatDuration(millis);
}

// An empty securityContext keeps the default: the chart renders `securityContext: {}`.
void setSecurityContext(SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
                        YamlProblems& problems) {
  json read = readSecurityContext(value, "securityContext", problems);
  c.securityContext = read.empty() ? defaultSecurityContext() : read;
}

// One `config:` entry: a pgkeel key (not one the webhook sets) with a value its own check takes.
void addConfigEntry(SidecarConfig& c, const YAML::Node& keyNode, const YAML::Node& value,
                    YamlProblems& problems) {
  std::string name = keyNode.Scalar(), label = "config." + name;
  const config::Key* key = config::findKey(name);
  if (key == nullptr) {
    std::vector<std::string> names;
    for (const config::Key& k : config::keys()) names.push_back(k.name);
    std::string near = config::closestMatch(name, names);
    return problems.add(keyNode.Mark(), label,
                        "not a pgkeel configuration key" +
                            (near.empty() ? "" : " (did you mean " + inQuotes(near) + "?)"));
  }
  if (std::string reason = reservedKeyReason(name); !reason.empty()) {
    return problems.add(keyNode.Mark(), label, reason);
  }
  std::string text;
  if (!scalarOf(keyNode, value, label, problems, text)) return;
  config::Options scratch;
  std::string problem = key->set(scratch, text);
  if (!problem.empty()) return problems.add(keyNode.Mark(), label, problem);
  c.config.emplace_back(name, text);
}

void setConfig(SidecarConfig& c, const YAML::Node& at, const YAML::Node& value,
               YamlProblems& problems) {
  if (value.IsNull()) return;
  if (!value.IsMap()) {
    return problems.add(at.Mark(), "config",
                        "must be a map of pgkeel keys, e.g. {probe_interval: 1s}");
  }
  std::set<std::string> seen;
  for (const auto& entry : value) {
    if (!seen.insert(entry.first.Scalar()).second) {
      problems.add(entry.first.Mark(), "config." + entry.first.Scalar(), "is set twice");
      continue;
    }
    addConfigEntry(c, entry.first, entry.second, problems);
  }
}

std::string showConfig(const SidecarConfig& c) {
  json out = json::object();
  for (const auto& [key, value] : c.config) out[key] = value;
  return out.dump();
}

std::vector<SidecarKey> buildKeys() {
  return {
      {"image", "IMAGE", "the pgkeel image (required)", setImage,
       [](const SidecarConfig& c) { return c.image; }},
      choiceKey("imagePullPolicy", {"Always", "IfNotPresent", "Never"},
                &SidecarConfig::imagePullPolicy, "Always, IfNotPresent or Never"),
      {"failurePolicy", "ENUM",
       "Ignore: a pod with bad pgkeel annotations is admitted unchanged, with a warning; Fail: it "
       "is refused",
       setFailurePolicy, [](const SidecarConfig& c) { return failurePolicyName(c.failurePolicy); }},
      {"listenAddress", "ADDRESS", "where the app reaches pgkeel inside the pod", setListenAddress,
       [](const SidecarConfig& c) { return c.listenAddress; }},
      portKey("ports.primary", &SidecarConfig::primaryPort, "the primary (read-write) port"),
      portKey("ports.replica", &SidecarConfig::replicaPort, "the replica (read-only) port"),
      portKey("ports.admin", &SidecarConfig::adminPort,
              "the admin port (probes, drain; listens on 0.0.0.0)"),
      {"drainTimeout", "DURATION", "the preStop hook's `pgkeel drain --timeout`", setDrainTimeout,
       [](const SidecarConfig& c) { return c.drainTimeout; }},
      {"resources", "MAP", "the container's ResourceRequirements, used as given",
       [](SidecarConfig& c, const YAML::Node&, const YAML::Node& v, YamlProblems& p) {
         c.resources = readResources(v, "resources", p);
       },
       [](const SidecarConfig& c) { return c.resources.dump(); }},
      {"securityContext", "MAP", "replaces the default securityContext when not empty",
       setSecurityContext, [](const SidecarConfig& c) { return c.securityContext.dump(); }},
      {"config", "MAP", "pgkeel configuration keys given to every sidecar", setConfig, showConfig},
  };
}

const SidecarKey* findSidecarKey(const std::string& name) {
  for (const SidecarKey& key : sidecarKeys()) {
    if (key.name == name) return &key;
  }
  return nullptr;
}

bool hasChildren(const std::string& prefix) {
  for (const SidecarKey& key : sidecarKeys()) {
    if (key.name.starts_with(prefix + ".")) return true;
  }
  return false;
}

void unknownKey(const YAML::Node& keyNode, const std::string& path, YamlProblems& problems) {
  std::string parent = path.substr(0, path.rfind('.') == std::string::npos ? 0 : path.rfind('.'));
  std::vector<std::string> siblings;
  for (const SidecarKey& key : sidecarKeys()) {
    std::string name = key.name;
    if (!parent.empty() && !name.starts_with(parent + ".")) continue;
    if (parent.empty()) name = name.substr(0, name.find('.'));
    siblings.push_back(name);
  }
  std::string near = config::closestMatch(path, siblings);
  problems.add(keyNode.Mark(), path,
               "unknown key" + (near.empty() ? "" : " (did you mean " + inQuotes(near) + "?)"));
}

void applyEntries(SidecarConfig& c, const YAML::Node& map, const std::string& parent,
                  YamlProblems& problems) {
  std::set<std::string> seen;
  for (const auto& entry : map) {
    std::string path = (parent.empty() ? "" : parent + ".") + entry.first.Scalar();
    if (!entry.first.IsScalar()) {
      problems.add(entry.first.Mark(), "", "keys must be plain names");
    } else if (!seen.insert(path).second) {
      problems.add(entry.first.Mark(), path, "is set twice");
    } else if (const SidecarKey* key = findSidecarKey(path)) {
      key->set(c, entry.first, entry.second, problems);
    } else if (hasChildren(path) && entry.second.IsMap()) {
      applyEntries(c, entry.second, path, problems);
    } else if (hasChildren(path)) {
      problems.add(entry.first.Mark(), path, "must be a map");
    } else {
      unknownKey(entry.first, path, problems);
    }
  }
}

void checkPorts(const SidecarConfig& c, YamlProblems& problems) {
  std::set<int> ports{c.primaryPort, c.replicaPort, c.adminPort};
  if (ports.size() < 3) {
    problems.add(YAML::Mark::null_mark(), "ports",
                 "primary, replica and admin need three different ports");
  }
}

}  // namespace

json defaultSecurityContext() {
  return {{"runAsNonRoot", true},
          {"runAsUser", 65532},
          {"runAsGroup", 65532},
          {"readOnlyRootFilesystem", true},
          {"allowPrivilegeEscalation", false},
          {"capabilities", {{"drop", {"ALL"}}}},
          {"seccompProfile", {{"type", "RuntimeDefault"}}}};
}

json defaultResources() {
  return {{"requests", {{"cpu", "50m"}, {"memory", "32Mi"}}}, {"limits", {{"memory", "128Mi"}}}};
}

std::string failurePolicyName(FailurePolicy policy) {
  return policy == FailurePolicy::Fail ? "Fail" : "Ignore";
}

const std::vector<SidecarKey>& sidecarKeys() {
  static const std::vector<SidecarKey> kKeys = buildKeys();
  return kKeys;
}

SidecarConfigResult parseSidecarConfig(std::string_view text, const std::string& name) {
  SidecarConfigResult result;
  YamlProblems problems(name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    problems.add(e.mark, "", "YAML syntax error: " + e.msg);
    return {result.config, problems.take()};
  }
  if (root.IsMap()) {
    applyEntries(result.config, root, "", problems);
  } else if (root.IsDefined() && !root.IsNull()) {
    problems.add(root.Mark(), "", "the top level must be a map of keys, e.g. image: IMAGE");
  }
  const YAML::Node& top = root;
  if (result.config.image.empty() && !(top.IsMap() && top["image"])) {
    problems.add(YAML::Mark::null_mark(), "image", "is required");
  }
  checkPorts(result.config, problems);
  result.errors = problems.take();
  return result;
}

SidecarConfigResult loadSidecarConfig(const std::string& path) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    return {SidecarConfig{}, {path + ": is a directory"}};
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  if (file) text << file.rdbuf();
  if (!file || file.bad()) {
    return {SidecarConfig{}, {path + ": cannot read: " + std::strerror(errno)}};
  }
  return parseSidecarConfig(text.str(), path);
}

}  // namespace pgkeel::inject
