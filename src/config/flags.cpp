// The command-line flags derived from the key catalogue, and the --help text built from them.
#include "config/flags.h"

#include <algorithm>

namespace pgkeel::config {
namespace {

std::vector<Flag> buildFlags() {
  std::vector<Flag> all;
  for (const Key& key : keys()) {
    all.push_back({FlagKind::Key, key.flag(), key.valueName, key.description, &key});
  }
  all.push_back({FlagKind::Config, "--config", "FILE",
                 "read settings from this YAML file (its keys are the flag names with _ for -)"});
  all.push_back({FlagKind::CheckConfig, "--check-config", "FILE",
                 "check FILE alone (no environment, no other flags), print every problem or "
                 "\"configuration OK\", exit 0 if OK, 1 if not"});
  all.push_back({FlagKind::Version, "--version", "", "print the version and exit"});
  all.push_back({FlagKind::Help, "--help", "", "print this help and exit"});
  return all;
}

std::string flagLine(const Flag& flag, size_t width) {
  std::string line = "  " + flag.usageName();
  line.append(width + 4 - line.size(), ' ');
  line += flag.description;
  if (flag.key != nullptr) {
    std::string fallback = flag.key->defaultText();
    line += " (default: " + (fallback.empty() ? std::string("none") : fallback) + ")";
  }
  return line + "\n";
}

}  // namespace

std::string Flag::usageName() const {
  return valueName.empty() ? name : name + " " + valueName;
}

const std::vector<Flag>& flags() {
  static const std::vector<Flag> kFlags = buildFlags();
  return kFlags;
}

const Flag* findFlag(std::string_view name) {
  for (const Flag& flag : flags()) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

std::string usageText() {
  size_t width = 0;
  for (const Flag& flag : flags()) width = std::max(width, flag.usageName().size());
  std::string text =
      "Usage: pgkeel [FLAGS] [<listen_addr> <listen_port>]\n\n"
      "A PostgreSQL proxy that keeps clients on the right node while the cluster fails over.\n"
      "Settings, lowest precedence first: defaults, the YAML file of --config, the CANDIDATES\n"
      "environment variable (\"h1:5432,h2:5432\"), flags. Every setting flag is also a key of the\n"
      "YAML file: --probe-interval is probe_interval. The two positional arguments (as in\n"
      "pg_gateway) set listen_primary. Flags take --flag VALUE or --flag=VALUE; durations need a\n"
      "unit (500ms, 2s, 1m, 1h); booleans are true/false, on/off, yes/no or 1/0.\n\n"
      "Flags:\n";
  for (const Flag& flag : flags()) text += flagLine(flag, width);
  return text;
}

}  // namespace pgkeel::config
