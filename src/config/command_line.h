// The command line and environment: decides what pgkeel does and composes Options from all sources.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "config/loader.h"
#include "config/options.h"

namespace pgkeel::config {

// Looks up one environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

EnvLookup processEnv();  // the real environment (getenv)
EnvLookup mapEnv(std::map<std::string, std::string> variables);

inline constexpr const char* kCandidatesEnv = "CANDIDATES";  // pg_gateway's variable

// One value for a key from the command line, kept so that a reload can apply it again.
struct Setting {
  std::string key;     // catalogue name: "probe_interval"
  std::string value;   // as written
  std::string origin;  // for messages: "flag --probe-interval"
};

// What the command line asked for, minus what must be read again on reload (file, environment).
struct Invocation {
  std::optional<std::string> configFile;  // --config
  std::vector<Setting> settings;          // flags and positional arguments, in order
};

enum class Action {
  Run,          // start with options
  CheckConfig,  // print output (stdout) and errors (stderr), exit with exitCode (0 OK, 1 problems)
  Version,      // print output, exit 0
  Help,         // print output (the usage text), exit 0
  Invalid,      // print errors (stderr), exit with exitCode (2)
};

struct ParseResult {
  Action action = Action::Run;
  Options options;                  // the composed options when action == Run
  Invocation invocation;            // pass to reloadOptions() later
  std::vector<std::string> errors;  // every problem, one per line, for stderr
  std::string output;               // for stdout: usage, version or "configuration OK"
  int exitCode = 0;                 // when action != Run
};

// Precedence, lowest first: defaults < --config FILE < environment CANDIDATES < flags.
// args excludes the program name. Never throws for bad input; every problem is in errors.
ParseResult parseCommandLine(std::span<const std::string> args, const EnvLookup& env);
ParseResult parseCommandLine(int argc, char** argv, const EnvLookup& env);
ParseResult parseCommandLine(int argc, char** argv, const std::map<std::string, std::string>& env);

// Reads the file and the environment again and applies the original flags on top. No side
// effects: on errors the caller keeps its current options.
LoadResult reloadOptions(const Invocation& invocation, const EnvLookup& env);

}  // namespace pgkeel::config
