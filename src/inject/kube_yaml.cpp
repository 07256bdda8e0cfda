// YAML read into Kubernetes JSON: typed scalars, ResourceRequirements, a container securityContext.
#include "inject/kube_yaml.h"

#include <map>
#include <regex>

#include "config/values.h"

namespace pgkeel::inject {
namespace {

using nlohmann::json;

json plainScalar(const std::string& text) {
  static const std::regex kNull("~|null|Null|NULL|");
  static const std::regex kTrue("true|True|TRUE"), kFalse("false|False|FALSE");
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (std::regex_match(text, kNull)) return nullptr;
  if (std::regex_match(text, kTrue)) return true;
  if (std::regex_match(text, kFalse)) return false;
  try {
    if (std::regex_match(text, kInt)) return std::stoll(text);
    if (std::regex_match(text, kFloat)) return std::stod(text);
  } catch (const std::out_of_range&) {
    // Too large for a number: kept as text.
  }
  return text;
}

std::string child(std::string_view key, const std::string& name) {
  return std::string(key) + "." + name;
}

// requests or limits: resource name → quantity.
json readQuantities(const YAML::Node& node, const std::string& key, YamlProblems& problems) {
  json out = json::object();
  if (!node.IsMap()) {
    if (!node.IsNull()) problems.add(node.Mark(), key, "must be a map of resource → quantity");
    return out;
  }
  for (const auto& entry : node) {
    std::string name = entry.first.Scalar();
    std::string problem = entry.second.IsScalar() ? checkQuantity(entry.second.Scalar())
                                                  : "must be a quantity, e.g. 50m or 32Mi";
    if (!problem.empty()) problems.add(entry.first.Mark(), child(key, name), problem);
    if (entry.second.IsScalar()) out[name] = entry.second.Scalar();
  }
  return out;
}

json readClaims(const YAML::Node& node, const std::string& key, YamlProblems& problems) {
  json claims = yamlToJson(node);
  bool good = claims.is_array();
  for (const json& claim : claims) {
    good = good && claim.is_object() && claim.contains("name") && claim["name"].is_string();
  }
  if (!good) problems.add(node.Mark(), key, "must be a list of {name: CLAIM}");
  return claims;
}

enum class FieldType { Bool, Int, String, Map };

const std::map<std::string, FieldType>& securityContextFields() {
  static const std::map<std::string, FieldType> kFields{
      {"allowPrivilegeEscalation", FieldType::Bool},
      {"appArmorProfile", FieldType::Map},
      {"capabilities", FieldType::Map},
      {"privileged", FieldType::Bool},
      {"procMount", FieldType::String},
      {"readOnlyRootFilesystem", FieldType::Bool},
      {"runAsGroup", FieldType::Int},
      {"runAsNonRoot", FieldType::Bool},
      {"runAsUser", FieldType::Int},
      {"seLinuxOptions", FieldType::Map},
      {"seccompProfile", FieldType::Map},
      {"windowsOptions", FieldType::Map},
  };
  return kFields;
}

bool hasType(const json& value, FieldType type) {
  switch (type) {
    case FieldType::Bool:
      return value.is_boolean();
    case FieldType::Int:
      return value.is_number_integer();
    case FieldType::String:
      return value.is_string();
    case FieldType::Map:
      return value.is_object();
  }
  return false;
}

const char* typeName(FieldType type) {
  switch (type) {
    case FieldType::Bool:
      return "true or false";
    case FieldType::Int:
      return "an integer";
    case FieldType::String:
      return "a string";
    case FieldType::Map:
      return "a map";
  }
  return "";
}

}  // namespace

void YamlProblems::add(const YAML::Mark& at, std::string_view key, const std::string& problem) {
  std::string where = at.is_null() ? file_ : file_ + ":" + std::to_string(at.line + 1);
  std::string about = key.empty() ? "" : "key " + config::inQuotes(key) + ": ";
  lines_.push_back(where + ": " + about + problem);
}

json yamlToJson(const YAML::Node& node) {
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& entry : node) out[entry.first.Scalar()] = yamlToJson(entry.second);
    return out;
  }
  if (node.IsSequence()) {
    json out = json::array();
    for (const YAML::Node& item : node) out.push_back(yamlToJson(item));
    return out;
  }
  if (!node.IsScalar()) return nullptr;
  return node.Tag() == "!" ? json(node.Scalar()) : plainScalar(node.Scalar());
}

std::string checkQuantity(std::string_view text) {
  static const std::regex kQuantity(
      R"([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][-+]?[0-9]+)?)");
  std::string value(text);
  if (std::regex_match(value, kQuantity)) return "";
  return config::inQuotes(value) + " is not a Kubernetes quantity, e.g. 50m, 1.5 or 32Mi";
}

json readResources(const YAML::Node& node, std::string_view key, YamlProblems& problems) {
  json out = json::object();
  if (node.IsNull()) return out;
  if (!node.IsMap()) {
    problems.add(node.Mark(), key, "must be a map with requests, limits or claims");
    return out;
  }
  for (const auto& entry : node) {
    std::string name = entry.first.Scalar();
    if (name == "requests" || name == "limits") {
      out[name] = readQuantities(entry.second, child(key, name), problems);
    } else if (name == "claims") {
      out[name] = readClaims(entry.second, child(key, name), problems);
    } else {
      problems.add(entry.first.Mark(), child(key, name),
                   "unknown key; resources take requests, limits and claims");
    }
  }
  return out;
}

json readSecurityContext(const YAML::Node& node, std::string_view key, YamlProblems& problems) {
  json out = json::object();
  if (node.IsNull()) return out;
  if (!node.IsMap()) {
    problems.add(node.Mark(), key, "must be a map (a container securityContext)");
    return out;
  }
  for (const auto& entry : node) {
    std::string name = entry.first.Scalar();
    auto field = securityContextFields().find(name);
    json value = yamlToJson(entry.second);
    if (field == securityContextFields().end()) {
      problems.add(entry.first.Mark(), child(key, name),
                   "unknown key; not a field of a container securityContext");
    } else if (!hasType(value, field->second)) {
      problems.add(entry.first.Mark(), child(key, name),
                   std::string("must be ") + typeName(field->second));
    } else {
      out[name] = std::move(value);
    }
  }
  return out;
}

}  // namespace pgkeel::inject
