// App: builds discovery, workers and listeners from Options, runs until a signal, shuts down in
// order.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "config/loader.h"
#include "config/options.h"

namespace pgkeel::app {

class App {
 public:
  // `reload` re-reads the configuration (file, environment, original flags) for SIGHUP.
  using Reloader = std::function<config::LoadResult()>;

  App(config::Options options, Reloader reload);
  ~App();
  // Blocks until SIGTERM/SIGINT and the drain are done. Returns the process exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgkeel::app
