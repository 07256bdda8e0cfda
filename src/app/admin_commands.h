// `pgkeel drain` and `pgkeel reload`: clients of a running pgkeel's admin server, for a sidecar's
// preStop and for `kubectl exec` (the image has no shell or curl; the admin server answers changes
// from loopback only).
#pragma once

#include <span>
#include <string>

namespace pgkeel::app {

// One flag of these commands: one list each for the parser, --help and the README test.
struct CommandFlag {
  const char* name;
  const char* valueName;
  const char* description;
};
std::span<const CommandFlag> drainFlags();
std::span<const CommandFlag> reloadFlags();

// `pgkeel drain ARGS...` (args exclude the program name and the subcommand): 0 when no client
// session is open, 1 when sessions remain at the timeout or the admin server cannot be reached,
// 2 on bad usage.
int runDrainCommand(std::span<const std::string> args);

// `pgkeel reload ARGS...`: 0 when the configuration was reloaded, 1 when it was refused (every
// problem printed; the running configuration stays) or the admin server cannot be reached, 2 on
// bad usage.
int runReloadCommand(std::span<const std::string> args);

}  // namespace pgkeel::app
