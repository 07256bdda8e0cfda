// pgkeel's entry point: flags → config → App → run.
#include <spdlog/spdlog.h>

#include <iostream>

#include "app/app.h"
#include "common/logging.h"
#include "config/command_line.h"

int main(int argc, char** argv) {
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
