// `pgkeel drain`: asks a running pgkeel's admin server to drain and waits (a sidecar's preStop).
#pragma once

#include <span>
#include <string>

namespace pgkeel::app {

// The flags of `pgkeel drain`, one list for the parser, --help and the README test.
struct DrainFlag {
  const char* name;
  const char* valueName;
  const char* description;
};
std::span<const DrainFlag> drainFlags();

// Runs `pgkeel drain ARGS...` (args exclude the program name and the subcommand): 0 when no
// client session is open, 1 when sessions remain at the timeout or the admin server cannot be
// reached, 2 on bad usage.
int runDrainCommand(std::span<const std::string> args);

}  // namespace pgkeel::app
