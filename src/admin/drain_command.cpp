// `pgkeel drain`: flag parsing, POST /drain on the admin server, the answer printed.
#include "admin/drain_command.h"

#include <iostream>

namespace pgkeel::admin {

int runDrainCommand(std::span<const std::string> args) {
  std::cerr << "pgkeel drain: not built yet\n";
  return 2;
}

}  // namespace pgkeel::admin
