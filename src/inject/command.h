// `pgkeel inject-webhook`: the sidecar-injecting mutating admission webhook's entry point.
#pragma once

#include <span>
#include <string>

namespace pgkeel::inject {

// Runs `pgkeel inject-webhook ARGS...` (args exclude the program name and the subcommand);
// returns the process exit code.
int runCommand(std::span<const std::string> args);

}  // namespace pgkeel::inject
