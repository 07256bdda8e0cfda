// Parsing the command line, composing defaults < file < CANDIDATES < flags, and reloading.
#include "config/command_line.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <utility>

#include "config/flags.h"
#include "config/keys.h"
#include "config/values.h"

#ifndef PGKEEL_VERSION
#define PGKEEL_VERSION "unknown"
#endif

namespace pgkeel::config {
namespace {

constexpr const char* kPositionalOrigin = "arguments <listen_addr> <listen_port>";

// The command line taken apart, before any value is applied.
struct Scan {
  Invocation invocation;
  std::optional<std::string> checkFile;
  bool help = false;
  bool version = false;
  std::vector<std::string> positional;
  std::vector<std::string> errors;
};

std::string unknownFlag(const std::string& name) {
  std::vector<std::string> names;
  for (const Flag& flag : flags()) names.push_back(flag.name);
  std::string suggestion = closestMatch(name, names);
  if (!suggestion.empty()) return "unknown flag " + name + " (did you mean " + suggestion + "?)";
  if (!name.starts_with("--"))
    return "unknown flag " + name + " (flags start with --, e.g. --help)";
  return "unknown flag " + name + " (see --help)";
}

void record(Scan& scan, const Flag& flag, std::string value) {
  switch (flag.kind) {
    case FlagKind::Key:
      scan.invocation.settings.push_back({flag.key->name, std::move(value), "flag " + flag.name});
      break;
    case FlagKind::Config:
      scan.invocation.configFile = std::move(value);
      break;
    case FlagKind::CheckConfig:
      scan.checkFile = std::move(value);
      break;
    case FlagKind::Version:
      scan.version = true;
      break;
    case FlagKind::Help:
      scan.help = true;
      break;
  }
}

// Reads the flag at args[i] and its value ("--flag=value" or "--flag value"); returns the index
// of the next argument.
size_t scanFlag(Scan& scan, std::span<const std::string> args, size_t i) {
  std::string_view arg = args[i];
  size_t equals = arg.find('=');
  bool inlineValue = equals != std::string_view::npos;
  std::string name(arg.substr(0, equals));
  const Flag* flag = findFlag(name);
  if (flag == nullptr) {
    scan.errors.push_back(unknownFlag(name));
  } else if (flag->valueName.empty() && inlineValue) {
    scan.errors.push_back("flag " + name + " takes no value");
  } else if (flag->valueName.empty()) {
    record(scan, *flag, "");
  } else if (inlineValue) {
    record(scan, *flag, std::string(arg.substr(equals + 1)));
  } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
    record(scan, *flag, args[i + 1]);
    return i + 2;
  } else {
    scan.errors.push_back("flag " + name + " needs a value: " + flag->usageName());
  }
  return i + 1;
}

// pg_gateway's "<listen_addr> <listen_port>" becomes a listen_primary setting.
void addPositional(Scan& scan) {
  const std::vector<std::string>& args = scan.positional;
  if (args.empty()) return;
  if (args.size() != 2) {
    scan.errors.push_back(
        "expected no positional arguments or two, <listen_addr> <listen_port>; got " +
        std::to_string(args.size()));
    return;
  }
  bool bareIpv6 = args[0].find(':') != std::string::npos && !args[0].starts_with("[");
  std::string address = (bareIpv6 ? "[" + args[0] + "]" : args[0]) + ":" + args[1];
  auto& settings = scan.invocation.settings;
  if (std::any_of(settings.begin(), settings.end(),
                  [](const Setting& s) { return s.key == "listen_primary"; })) {
    scan.errors.push_back(
        "--listen-primary and the arguments <listen_addr> <listen_port> both set "
        "listen_primary; use one of them");
    return;
  }
  settings.insert(settings.begin(), Setting{"listen_primary", address, kPositionalOrigin});
}

Scan scanArgs(std::span<const std::string> args) {
  Scan scan;
  bool flagsEnded = false;
  for (size_t i = 0; i < args.size();) {
    const std::string& arg = args[i];
    if (!flagsEnded && arg == "--") {
      flagsEnded = true;
      ++i;
    } else if (!flagsEnded && arg.size() > 1 && arg.starts_with("-")) {
      i = scanFlag(scan, args, i);
    } else {
      scan.positional.push_back(arg);
      ++i;
    }
  }
  addPositional(scan);
  return scan;
}

void applySetting(const Setting& setting, LoadResult& result) {
  const Key* key = findKey(setting.key);
  std::string problem = key ? key->set(result.options, setting.value) : "unknown key";
  if (!problem.empty()) result.errors.push_back(setting.origin + ": " + problem);
}

LoadResult compose(const Invocation& invocation, const EnvLookup& env) {
  LoadResult result = invocation.configFile ? loadFile(*invocation.configFile) : LoadResult{};
  std::optional<std::string> candidates = env ? env(kCandidatesEnv) : std::nullopt;
  if (candidates && !trim(*candidates).empty()) {
    applySetting({"candidates", *candidates, std::string("environment ") + kCandidatesEnv}, result);
  }
  for (const Setting& setting : invocation.settings) applySetting(setting, result);
  if (result.ok()) {
    for (std::string& problem : checkCombination(result.options)) result.errors.push_back(problem);
  }
  for (std::string& problem : missingForSource(result.options)) result.errors.push_back(problem);
  return result;
}

ParseResult finished(Action action, std::string output, int exitCode) {
  ParseResult result;
  result.action = action;
  result.output = std::move(output);
  result.exitCode = exitCode;
  return result;
}

// --check-config FILE: the file alone, plus any mistakes on the command line itself.
ParseResult checkConfig(const std::string& path, std::vector<std::string> errors) {
  LoadResult loaded = loadFile(path);
  if (loaded.ok()) {
    for (const std::string& problem : checkCombination(loaded.options)) {
      loaded.errors.push_back(path + ": " + problem);
    }
  }
  errors.insert(errors.end(), loaded.errors.begin(), loaded.errors.end());
  bool ok = errors.empty();
  ParseResult result = finished(Action::CheckConfig, ok ? "configuration OK\n" : "", ok ? 0 : 1);
  result.options = loaded.options;
  result.errors = std::move(errors);
  return result;
}

}  // namespace

EnvLookup processEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    return value ? std::optional<std::string>(value) : std::nullopt;
  };
}

EnvLookup mapEnv(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const std::string& name) -> std::optional<std::string> {
    auto it = variables.find(name);
    return it == variables.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

ParseResult parseCommandLine(std::span<const std::string> args, const EnvLookup& env) {
  Scan scan = scanArgs(args);
  if (scan.help) return finished(Action::Help, usageText(), 0);
  if (scan.version) return finished(Action::Version, "pgkeel " PGKEEL_VERSION "\n", 0);
  if (scan.checkFile) return checkConfig(*scan.checkFile, std::move(scan.errors));
  LoadResult composed = compose(scan.invocation, env);
  ParseResult result;
  result.options = std::move(composed.options);
  result.invocation = std::move(scan.invocation);
  result.errors = std::move(scan.errors);
  result.errors.insert(result.errors.end(), composed.errors.begin(), composed.errors.end());
  if (!result.errors.empty()) {
    result.action = Action::Invalid;
    result.exitCode = 2;
  }
  return result;
}

ParseResult parseCommandLine(int argc, char** argv, const EnvLookup& env) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return parseCommandLine(std::span<const std::string>(args), env);
}

ParseResult parseCommandLine(int argc, char** argv, const std::map<std::string, std::string>& env) {
  return parseCommandLine(argc, argv, mapEnv(env));
}

LoadResult reloadOptions(const Invocation& invocation, const EnvLookup& env) {
  return compose(invocation, env);
}

}  // namespace pgkeel::config
