// `pgkeel drain`: asks a running pgkeel's admin server to drain and waits (a sidecar's preStop).
#pragma once

#include <span>
#include <string>

namespace pgkeel::admin {

// Runs `pgkeel drain ARGS...` (args exclude the program name and the subcommand); returns the
// process exit code.
int runDrainCommand(std::span<const std::string> args);

}  // namespace pgkeel::admin
