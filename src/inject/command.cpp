// `pgkeel inject-webhook`: flag parsing and the server's lifetime.
#include "inject/command.h"

#include <iostream>

namespace pgkeel::inject {

int runCommand(std::span<const std::string> args) {
  std::cerr << "pgkeel inject-webhook: not built yet\n";
  return 2;
}

}  // namespace pgkeel::inject
