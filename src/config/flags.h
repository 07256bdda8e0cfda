// The command-line flags: one per catalogue key (derived from its name) plus four of their own.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/keys.h"

namespace pgkeel::config {

enum class FlagKind { Key, Config, CheckConfig, Version, Help };

struct Flag {
  FlagKind kind;
  std::string name;          // "--probe-interval"
  std::string valueName;     // "DURATION"; empty when the flag takes no value
  std::string description;   // one line
  const Key* key = nullptr;  // the key a FlagKind::Key flag sets

  std::string usageName() const;  // "--probe-interval DURATION"
};

// Every flag the parser accepts, in usage order: the key flags, then --config, --check-config,
// --version and --help.
const std::vector<Flag>& flags();

const Flag* findFlag(std::string_view name);

// The --help text: synopsis, precedence, and every flag with its description and default.
std::string usageText();

}  // namespace pgkeel::config
