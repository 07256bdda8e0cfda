// pgkeel's entry point: a subcommand (inject-webhook, drain, reload), or flags → config → App →
// run.
#include <spdlog/spdlog.h>

#include <iostream>
#include <string>
#include <vector>

#include "app/admin_commands.h"
#include "app/app.h"
#include "common/logging.h"
#include "config/command_line.h"
#include "inject/command.h"

namespace {

int runProxy(int argc, char** argv) {
  using namespace pgkeel;
  const config::EnvLookup env = config::processEnv();
  config::ParseResult parsed = config::parseCommandLine(argc, argv, env);
  for (const auto& error : parsed.errors) std::cerr << error << "\n";
  if (parsed.action != config::Action::Run) {
    std::cout << parsed.output;
    return parsed.exitCode;
  }
  const auto& o = parsed.options;
  common::setupLogging(o.logLevel, o.logFormat == config::LogFormat::Json ? common::LogStyle::Json
                                                                          : common::LogStyle::Text);
  spdlog::info("pgkeel {} starting", PGKEEL_VERSION);
  app::App app(
      o, [invocation = parsed.invocation, env] { return config::reloadOptions(invocation, env); });
  return app.run();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string subcommand = argc > 1 ? argv[1] : "";
  const std::vector<std::string> rest(argv + std::min(argc, 2), argv + argc);
  if (subcommand == "inject-webhook") return pgkeel::inject::runCommand(rest);
  if (subcommand == "drain") return pgkeel::app::runDrainCommand(rest);
  if (subcommand == "reload") return pgkeel::app::runReloadCommand(rest);
  return runProxy(argc, argv);
}
