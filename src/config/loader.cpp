// Loading a YAML configuration file (yaml-cpp) through the key catalogue, every problem at once.
#include "config/loader.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "config/keys.h"
#include "config/values.h"

namespace pgkeel::config {
namespace {

// One load in progress: where problems go and which keys were already seen.
struct Loading {
  const std::string& name;
  LoadResult& result;
  std::map<std::string, int> seenAt;  // key -> line

  void error(const YAML::Mark& mark, const std::string& problem) {
    std::string where = mark.is_null() ? name : name + ":" + std::to_string(mark.line + 1);
    result.errors.push_back(where + ": " + problem);
  }
};

std::vector<std::string> keyNames() {
  std::vector<std::string> names;
  for (const Key& key : keys()) names.push_back(key.name);
  return names;
}

std::string unknownKey(const std::string& name) {
  std::string suggestion = closestMatch(name, keyNames());
  return "unknown key " + inQuotes(name) +
         (suggestion.empty() ? "" : " (did you mean " + inQuotes(suggestion) + "?)");
}

std::string prefix(const Key& key) {
  return "key " + inQuotes(key.name) + ": ";
}

// A sequence for a list key: each item is checked on its own line, then all are set together.
void applySequence(Loading& loading, const Key& key, const YAML::Node& keyNode,
                   const YAML::Node& sequence) {
  std::string joined;
  bool good = true;
  for (const YAML::Node& item : sequence) {
    Options scratch;
    std::string problem = item.IsScalar() ? key.set(scratch, item.Scalar()) : "items must be text";
    if (!problem.empty()) loading.error(item.Mark(), prefix(key) + problem);
    good = good && problem.empty();
    if (item.IsScalar()) joined += (joined.empty() ? "" : ",") + item.Scalar();
  }
  if (!good) return;
  std::string problem = key.set(loading.result.options, joined);
  if (!problem.empty()) loading.error(keyNode.Mark(), prefix(key) + problem);
}

void applyValue(Loading& loading, const Key& key, const YAML::Node& keyNode,
                const YAML::Node& value) {
  if (value.IsSequence() && key.isList) return applySequence(loading, key, keyNode, value);
  if (!value.IsScalar() && !value.IsNull()) {
    return loading.error(keyNode.Mark(), prefix(key) + "expects a single value, not a " +
                                             (value.IsMap() ? "map" : "list"));
  }
  std::string text = value.IsScalar() ? value.Scalar() : "";
  std::string problem = key.set(loading.result.options, text);
  if (!problem.empty()) loading.error(keyNode.Mark(), prefix(key) + problem);
}

void applyEntry(Loading& loading, const YAML::Node& keyNode, const YAML::Node& value) {
  if (!keyNode.IsScalar()) return loading.error(keyNode.Mark(), "keys must be plain names");
  const std::string& name = keyNode.Scalar();
  auto [seen, fresh] = loading.seenAt.emplace(name, keyNode.Mark().line + 1);
  if (!fresh) {
    return loading.error(keyNode.Mark(), "key " + inQuotes(name) + " is set twice (first on line " +
                                             std::to_string(seen->second) + ")");
  }
  const Key* key = findKey(name);
  if (key == nullptr) return loading.error(keyNode.Mark(), unknownKey(name));
  applyValue(loading, *key, keyNode, value);
}

}  // namespace

LoadResult loadYaml(std::string_view text, const std::string& name, const Options& base) {
  LoadResult result{base, {}};
  Loading loading{name, result, {}};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    loading.error(e.mark, "YAML syntax error: " + e.msg);
    return result;
  }
  if (!root.IsDefined() || root.IsNull()) return result;
  if (!root.IsMap()) {
    loading.error(root.Mark(), "the top level must be a map of keys, e.g. probe_interval: 1s");
    return result;
  }
  for (const auto& entry : root) applyEntry(loading, entry.first, entry.second);
  return result;
}

LoadResult loadFile(const std::string& path, const Options& base) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) return {base, {path + ": is a directory"}};
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  if (file) text << file.rdbuf();
  if (!file || file.bad()) {
    return LoadResult{base, {path + ": cannot read: " + std::strerror(errno)}};
  }
  return loadYaml(text.str(), path, base);
}

}  // namespace pgkeel::config
