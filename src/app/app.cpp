// App: builds discovery, workers and listeners from Options, runs until a signal, shuts down in
// order.
#include "app/app.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "common/logging.h"
#include "core/cpu_count.h"
#include "core/socket.h"
#include "core/worker.h"
#include "discovery/discovery_service.h"
#include "session/session_manager.h"

namespace pgkeel::app {
namespace {

using namespace std::chrono_literals;
using router::ListenerRole;

discovery::DiscoveryOptions discoveryOptions(const config::Options& o) {
  discovery::DiscoveryOptions d;
  d.probeDsn = o.probe;
  d.probeInterval = o.probeInterval;
  d.probeTimeout = o.probeTimeout;
  d.health = {o.unhealthyAfter, o.healthyAfter};
  return d;
}

session::SessionSettings sessionSettings(const config::Options& o) {
  session::SessionSettings s;
  s.primaryWait = o.primaryWait;
  s.connectTimeout = o.connectTimeout;
  s.loginTimeout = o.clientLoginTimeout;
  s.route.replicaFallback = o.replicaFallback;
  s.tcpKeepalive = o.tcpKeepalive;
  return s;
}

std::vector<discovery::Endpoint> endpoints(const config::Options& o, std::string* error) {
  std::string joined;
  for (const auto& c : o.candidates) joined += c + ",";
  return discovery::parseEndpointList(joined, error);
}

common::LogStyle logStyle(const config::Options& o) {
  return o.logFormat == config::LogFormat::Json ? common::LogStyle::Json : common::LogStyle::Text;
}

}  // namespace

struct App::Impl {
  config::Options options;
  Reloader reload;
  discovery::DiscoveryService* discovery = nullptr;
  std::unique_ptr<discovery::DiscoveryService> discoveryOwner;
  discovery::StaticSource* source = nullptr;
  pool::NodeLoad load;
  session::CancelRegistry cancels;
  std::vector<std::unique_ptr<core::Worker>> workers;
  std::vector<std::unique_ptr<session::SessionManager>> managers;

  bool startDiscovery();
  bool startWorkers();
  bool listen(const std::string& address, ListenerRole role);
  void onReload();
  void drainAndStop();
  std::size_t activeSessions() const;
  void eachManager(std::function<void(session::SessionManager&)> task);
};

App::App(config::Options options, Reloader reload) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->reload = std::move(reload);
}

App::~App() = default;

bool App::Impl::startDiscovery() {
  std::string error;
  auto list = endpoints(options, &error);
  if (!error.empty()) {
    spdlog::critical("candidates: {}", error);
    return false;
  }
  auto owned = std::make_unique<discovery::StaticSource>(list);
  source = owned.get();
  discoveryOwner =
      std::make_unique<discovery::DiscoveryService>(std::move(owned), discoveryOptions(options));
  discovery = discoveryOwner.get();
  discovery->probeOnce();  // the first table exists before any client arrives
  discovery->subscribe([this](const discovery::RoutingTablePtr& table) {
    eachManager([table](session::SessionManager& m) { m.onTableChanged(table); });
  });
  return true;
}

bool App::Impl::listen(const std::string& address, ListenerRole role) {
  if (address.empty()) return true;
  std::string error;
  auto parsed = core::parseListenAddress(address, &error);
  for (auto& manager : managers) {
    core::Fd fd = parsed ? core::listenOn(*parsed, 4096, &error) : core::Fd();
    if (!fd) {
      spdlog::critical("listen_{}: {}", router::toString(role), error);
      return false;
    }
    manager->addListener(std::move(fd), role);
  }
  spdlog::info("listening on {} for {} connections ({} workers)", parsed->str(),
               router::toString(role), managers.size());
  return true;
}

bool App::Impl::startWorkers() {
  const int count = options.workers > 0 ? options.workers : core::usableCpus();
  const session::SharedState shared{discovery->handle(), load, cancels,
                                    [d = discovery] { d->probeNow(); }};
  for (int i = 0; i < count; ++i) {
    workers.push_back(std::make_unique<core::Worker>(i));
    managers.push_back(std::make_unique<session::SessionManager>(workers.back()->loop(), shared,
                                                                 sessionSettings(options)));
  }
  if (!listen(options.listenPrimary, ListenerRole::Primary) ||
      !listen(options.listenReplica, ListenerRole::Replica))
    return false;
  for (auto& worker : workers) worker->start();
  return true;
}

void App::Impl::eachManager(std::function<void(session::SessionManager&)> task) {
  for (std::size_t i = 0; i < managers.size(); ++i)
    workers[i]->loop().post([m = managers[i].get(), task] { task(*m); });
}

std::size_t App::Impl::activeSessions() const {
  std::size_t total = 0;
  for (const auto& m : managers) total += m->sessionCount();
  return total;
}

// SIGHUP: re-read everything; a bad file keeps the running configuration. Listener addresses and
// the worker count apply at the next start.
void App::Impl::onReload() {
  auto result = reload();
  if (!result.ok()) {
    for (const auto& e : result.errors) spdlog::error("reload: {}", e);
    spdlog::error("reload failed: keeping the running configuration");
    return;
  }
  std::string error;
  auto list = endpoints(result.options, &error);
  if (!error.empty()) {
    spdlog::error("reload failed: candidates: {}", error);
    return;
  }
  options = result.options;
  common::setupLogging(options.logLevel, logStyle(options));
  source->setEndpoints(list);
  discovery->setOptions(discoveryOptions(options));
  eachManager([s = sessionSettings(options)](session::SessionManager& m) { m.applySettings(s); });
  discovery->probeNow();
  spdlog::info("configuration reloaded ({} candidates)", list.size());
}

void App::Impl::drainAndStop() {
  eachManager([](session::SessionManager& m) { m.stopAccepting(); });
  const auto deadline = std::chrono::steady_clock::now() + options.shutdownTimeout;
  std::size_t left = activeSessions();
  spdlog::info("shutting down: stopped accepting; waiting up to {} ms for {} session(s)",
               options.shutdownTimeout.count(), left);
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    left = activeSessions();
  }
  if (left > 0) spdlog::warn("shutdown_timeout reached: closing {} session(s)", left);
  eachManager([](session::SessionManager& m) { m.closeAll(session::CloseReason::Shutdown); });
  discovery->stop();
  for (auto& worker : workers) worker->stop();
  for (auto& worker : workers) worker->join();
  managers.clear();
  workers.clear();
  spdlog::info("stopped");
}

int App::run() {
  ::signal(SIGPIPE, SIG_IGN);  // splice(2) to a closed socket raises it; errors are handled
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
  // Blocked before any thread starts, so every thread inherits the mask and only sigwait sees them.
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  spdlog::info("open file limit: {}", core::raiseOpenFileLimit());
  if (!impl_->startDiscovery() || !impl_->startWorkers()) return 1;
  impl_->discovery->start();
  for (;;) {
    int signal = 0;
    if (::sigwait(&signals, &signal) != 0) continue;
    if (signal == SIGHUP) {
      impl_->onReload();
      continue;
    }
    spdlog::info("received {}", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  impl_->drainAndStop();
  return 0;
}

}  // namespace pgkeel::app
