// The one catalogue of configuration keys: YAML name, flag, description, parser and printer.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config/options.h"

namespace pgkeel::config {

struct Key {
  // Parses text into its field of Options; returns the problem, or "" when the value is good.
  using Setter = std::function<std::string(Options&, std::string_view)>;
  // Prints the field's current value in a form the setter reads back.
  using Getter = std::function<std::string(const Options&)>;

  std::string name;         // YAML key, snake_case: "probe_interval"
  std::string valueName;    // placeholder in usage and docs: "DURATION"
  std::string description;  // one line
  bool isList = false;      // also takes a YAML sequence (items are joined with commas)
  Setter set;
  Getter get;

  std::string flag() const;         // "--probe-interval", derived from name
  std::string defaultText() const;  // get(Options{}): the default is declared once, in options.h
};

// Every key, in documentation order.
const std::vector<Key>& keys();

const Key* findKey(std::string_view name);

// Problems that span several keys (each a sentence naming the keys), after all sources applied.
std::vector<std::string> checkCombination(const Options& options);

// What the chosen source still needs (candidates for static, kubernetes_cluster for cnpg...);
// checked once every source of settings is applied, not by --check-config on a file alone.
std::vector<std::string> missingForSource(const Options& options);

// Names of the keys whose values differ, e.g. to log a reload or to warn that a listener moved.
std::vector<std::string> changedKeys(const Options& before, const Options& after);

}  // namespace pgkeel::config
