// The sidecar config file (--sidecar-config): what every injected pgkeel container looks like.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace YAML {
class Node;
}

namespace pgkeel::inject {

class YamlProblems;

enum class FailurePolicy { Ignore, Fail };

// The restricted securityContext used when the file gives none (or an empty map).
nlohmann::json defaultSecurityContext();
nlohmann::json defaultResources();

struct SidecarConfig {
  std::string image;  // required
  std::string imagePullPolicy = "IfNotPresent";
  FailurePolicy failurePolicy = FailurePolicy::Ignore;
  std::string listenAddress = "127.0.0.1";
  int primaryPort = 6432;
  int replicaPort = 6433;
  int adminPort = 9432;
  std::string drainTimeout = "25s";
  nlohmann::json resources = defaultResources();
  nlohmann::json securityContext = defaultSecurityContext();
  std::vector<std::pair<std::string, std::string>> config;  // pgkeel key, value; in file order
};

struct SidecarConfigResult {
  SidecarConfig config;             // use only when ok()
  std::vector<std::string> errors;  // "FILE:LINE: key 'ports.admin': must be 1..65535, not '0'"

  bool ok() const { return errors.empty(); }
};

// One key of the file, nested keys dotted ("ports.admin"); the parser and the README use this list.
struct SidecarKey {
  using Setter = std::function<void(SidecarConfig&, const YAML::Node& key, const YAML::Node& value,
                                    YamlProblems&)>;
  using Getter = std::function<std::string(const SidecarConfig&)>;

  std::string name;
  std::string valueName;  // "IMAGE", "DURATION", "MAP"...
  std::string description;
  Setter set;   // checks the value; reports problems naming this key and the value's line
  Getter show;  // the value as text (the README's default column prints show(SidecarConfig{}))
};

// Every key, in documentation order.
const std::vector<SidecarKey>& sidecarKeys();

// Reads and checks the file; every problem is reported, each with its key and line.
SidecarConfigResult loadSidecarConfig(const std::string& path);

// The same for YAML text in memory; name stands for the file in messages.
SidecarConfigResult parseSidecarConfig(std::string_view text, const std::string& name);

std::string failurePolicyName(FailurePolicy policy);

}  // namespace pgkeel::inject
