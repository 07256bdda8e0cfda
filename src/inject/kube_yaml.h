// YAML read into Kubernetes JSON: typed scalars, ResourceRequirements, a container securityContext.
#pragma once

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace pgkeel::inject {

// Problems found in one YAML document, each with its file, line and key.
class YamlProblems {
 public:
  explicit YamlProblems(std::string file) : file_(std::move(file)) {}

  // "FILE:LINE: key 'ports.admin': must be 1..65535, not '0'"; key may be empty.
  void add(const YAML::Mark& at, std::string_view key, const std::string& problem);
  bool empty() const { return lines_.empty(); }
  std::vector<std::string> take() { return std::move(lines_); }

 private:
  std::string file_;
  std::vector<std::string> lines_;
};

// Plain scalars become booleans, integers, numbers or null as YAML 1.2's core schema reads
// them; quoted scalars stay strings. Maps and sequences keep their shape.
nlohmann::json yamlToJson(const YAML::Node& node);

// A Kubernetes quantity ("50m", "32Mi", "1.5", "1e3"); "" when good.
std::string checkQuantity(std::string_view text);

// A core/v1 ResourceRequirements (requests, limits: name → quantity; claims: [{name}]).
nlohmann::json readResources(const YAML::Node& node, std::string_view key, YamlProblems& problems);

// A core/v1 SecurityContext: known fields only, with their types checked at the top level.
nlohmann::json readSecurityContext(const YAML::Node& node, std::string_view key,
                                   YamlProblems& problems);

}  // namespace pgkeel::inject
