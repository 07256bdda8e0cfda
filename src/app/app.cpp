// App: builds discovery, workers and listeners from Options, runs until a signal, shuts down in
// order.
#include "app/app.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include "admin/admin_server.h"
#include "app/worker_metrics.h"
#include "common/logging.h"
#include "config/keys.h"
#include "core/cpu_count.h"
#include "core/socket.h"
#include "core/worker.h"
#include "discovery/discovery_service.h"
#include "discovery/kubernetes_source.h"
#include "discovery/patroni_source.h"
#include "metrics/scrape.h"
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
  d.fastProbeInterval = o.fastProbeInterval;
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
  s.limits.total = o.maxClientConnections;
  s.limits.perListener = {o.maxPrimaryConnections, o.maxReplicaConnections};
  return s;
}

std::vector<discovery::Endpoint> endpoints(const config::Options& o, std::string* error) {
  std::string joined;
  for (const auto& c : o.candidates) joined += c + ",";
  return discovery::parseEndpointList(joined, error);
}

bool sameAddress(const core::SocketAddress& a, const core::SocketAddress& b) {
  return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

std::uint16_t portOf(const core::SocketAddress& address) {
  if (address.storage.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_port);
}

// Keys a reload cannot change in a running process.
bool restartOnlyKey(const std::string& key) {
  static const std::set<std::string> kKeys{
      "workers",     "admin_listen",       "readyz_requires_replica",
      "source",      "kubernetes_cluster", "kubernetes_namespace",
      "kubeconfig",  "postgres_port",      "probe_from_secret",
      "secret_user", "patroni_urls",       "patroni_poll_interval",
      "etcd_url",    "etcd_leader_key"};
  return kKeys.count(key) > 0;
}

common::LogStyle logStyle(const config::Options& o) {
  return o.logFormat == config::LogFormat::Json ? common::LogStyle::Json : common::LogStyle::Text;
}

std::int64_t steadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
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
  session::ClientCounts clients;
  std::vector<std::unique_ptr<core::Worker>> workers;
  Managers managers;
  std::unique_ptr<admin::AdminServer> admin;
  std::vector<admin::ListenerStatus> listeners;  // /status reads them; guarded by listenersMutex
  std::mutex listenersMutex;
  std::atomic<std::uint64_t> primaryChanges{0};
  std::atomic<std::int64_t> noPrimarySince{
      0};  // steady ns when the primary went missing; 0: there is one
  std::atomic<std::uint64_t> noPrimaryNanos{0};  // closed spells without a primary
  std::atomic<std::uint64_t> reloadsSucceeded{0};
  std::atomic<std::uint64_t> reloadsFailed{0};
  std::atomic<bool> draining{false};        // SIGTERM seen: /readyz fails
  std::atomic<bool> drainRequested{false};  // POST /drain (a preStop): /readyz fails
  std::mutex reloadMutex;
  std::optional<discovery::NodeId> lastPrimary;  // discovery thread only, after start

  bool startDiscovery();
  bool startAdmin();
  void notePrimary(const discovery::RoutingTable& table);
  std::string workersProblem();
  std::string metricsText();
  admin::ProcessStatus processStatus();
  bool startWorkers();
  bool listen(const std::string& address, ListenerRole role);
  struct MovedListener {
    ListenerRole role;
    std::string address;        // empty: switched off
    std::vector<core::Fd> fds;  // one per worker, bound and listening
  };
  std::vector<MovedListener> openMovedListeners(const config::Options& next,
                                                std::vector<std::string>& errors);
  void moveListeners(std::vector<MovedListener> moved);
  std::vector<std::string> onReload();
  void keepRestartOnlyKeys(config::LoadResult& result);
  void waitDrainDelay(const sigset_t& signals);
  void drainAndStop();
  std::size_t activeSessions() const;
  void eachManager(std::function<void(session::SessionManager&)> task);
};

App::App(config::Options options, Reloader reload) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->reload = std::move(reload);
}

App::~App() = default;

// The source named by `source`: a static list, a Kubernetes operator's objects, or Patroni.
std::unique_ptr<discovery::Source> makeSource(const config::Options& o,
                                              discovery::StaticSource** staticSource) {
  if (o.source == "cnpg" || o.source == "zalando") {
    discovery::KubernetesOptions k;
    k.op = o.source == "cnpg" ? discovery::KubernetesOptions::Operator::Cnpg
                              : discovery::KubernetesOptions::Operator::Zalando;
    k.cluster = o.kubernetesCluster;
    k.ns = o.kubernetesNamespace;
    k.kubeconfig = o.kubeconfig;
    k.port = static_cast<std::uint16_t>(o.postgresPort);
    k.probeFromSecret = o.probeFromSecret;
    k.secretUser = o.secretUser;
    return discovery::makeKubernetesSource(k);
  }
  if (o.source == "patroni") {
    discovery::PatroniOptions p;
    p.restUrls = o.patroniUrls;
    p.pollInterval = o.patroniPollInterval;
    p.requestTimeout = std::max(o.probeTimeout, std::chrono::milliseconds(500));
    p.etcdUrl = o.etcdUrl;
    p.etcdLeaderKey = o.etcdLeaderKey;
    return discovery::makePatroniSource(p);
  }
  std::string error;
  auto list = endpoints(o, &error);
  if (!error.empty()) throw std::invalid_argument("candidates: " + error);
  auto owned = std::make_unique<discovery::StaticSource>(list);
  *staticSource = owned.get();
  return owned;
}

bool App::Impl::startDiscovery() {
  std::unique_ptr<discovery::Source> owned;
  try {
    owned = makeSource(options, &source);
  } catch (const std::exception& e) {
    spdlog::critical("source {}: {}", options.source, e.what());
    return false;
  }
  discoveryOwner =
      std::make_unique<discovery::DiscoveryService>(std::move(owned), discoveryOptions(options));
  discovery = discoveryOwner.get();
  discovery->probeOnce();  // the first table exists before any client arrives
  notePrimary(*discovery->current());
  discovery->subscribe([this](const discovery::RoutingTablePtr& table) {
    notePrimary(*table);
    eachManager([table](session::SessionManager& m) { m.onTableChanged(table); });
  });
  return true;
}

// Counts a primary that differs from the last one seen (the first one seen is not a change).
void App::Impl::notePrimary(const discovery::RoutingTable& table) {
  const discovery::NodeState* primary = table.primaryNode();
  const std::int64_t now = steadyNanos();
  if (primary == nullptr) {
    std::int64_t none = 0;
    noPrimarySince.compare_exchange_strong(none, now, std::memory_order_relaxed);
    return;
  }
  if (const std::int64_t since = noPrimarySince.exchange(0, std::memory_order_relaxed); since != 0)
    noPrimaryNanos.fetch_add(static_cast<std::uint64_t>(now - since), std::memory_order_relaxed);
  if (lastPrimary && *lastPrimary != primary->id)
    primaryChanges.fetch_add(1, std::memory_order_relaxed);
  lastPrimary = primary->id;
}

bool App::Impl::listen(const std::string& address, ListenerRole role) {
  if (address.empty()) return true;
  std::string error;
  auto parsed = core::parseListenAddress(address, &error);
  if (parsed) error = core::checkAddressFree(*parsed);
  if (!error.empty()) parsed.reset();
  for (auto& manager : managers) {
    core::Fd fd = parsed ? core::listenOn(*parsed, 4096, &error) : core::Fd();
    if (!fd) {
      spdlog::critical("listen_{}: {}", router::toString(role), error);
      return false;
    }
    manager->addListener(std::move(fd), role);
  }
  {
    std::lock_guard lock(listenersMutex);
    listeners.push_back({router::toString(role), address, 0});
  }
  spdlog::info("listening on {} for {} connections ({} workers)", parsed->str(),
               router::toString(role), managers.size());
  return true;
}

bool App::Impl::startWorkers() {
  const int count = options.workers > 0 ? options.workers : core::usableCpus();
  const session::SharedState shared{discovery->handle(), load, cancels, clients,
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

// Every worker loop answers a posted ping within a second, or names the first that did not.
std::string App::Impl::workersProblem() {
  struct Pongs {
    explicit Pongs(std::size_t n) : answered(n) {}
    std::vector<std::atomic<bool>> answered;
  };
  auto pongs = std::make_shared<Pongs>(workers.size());
  for (std::size_t i = 0; i < workers.size(); ++i)
    workers[i]->loop().post([pongs, i] { pongs->answered[i].store(true); });
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    while (!pongs->answered[i].load()) {
      if (std::chrono::steady_clock::now() > deadline)
        return "worker " + std::to_string(i) + " did not answer within 1s";
      std::this_thread::sleep_for(2ms);
    }
  }
  return "";
}

std::string App::Impl::metricsText() {
  metrics::Scrape scrape;
  scrape.add("pgkeel_up", {}, 1);
  scrape.add("pgkeel_build_info", {PGKEEL_VERSION}, 1);
  scrape.add("pgkeel_workers", {}, static_cast<double>(workers.size()));
  addSessionCounters(scrape, managers);
  scrape.add("pgkeel_config_reloads_total", {"success"},
             static_cast<double>(reloadsSucceeded.load(std::memory_order_relaxed)));
  scrape.add("pgkeel_config_reloads_total", {"failure"},
             static_cast<double>(reloadsFailed.load(std::memory_order_relaxed)));
  scrape.add("pgkeel_primary_changes_total", {},
             static_cast<double>(primaryChanges.load(std::memory_order_relaxed)));
  const std::int64_t since = noPrimarySince.load(std::memory_order_relaxed);
  const auto open = since != 0 ? static_cast<std::uint64_t>(steadyNanos() - since) : 0;
  scrape.add("pgkeel_no_primary_seconds_total", {},
             static_cast<double>(noPrimaryNanos.load(std::memory_order_relaxed) + open) / 1e9);
  const discovery::RoutingTablePtr table = discovery->current();
  addServerCounters(scrape, managers, *table);
  addConnectHistogram(scrape, managers);
  metrics::addRoutingTable(scrape, *table);
  addSourceStats(scrape, discovery->source());
  return scrape.text();
}

admin::ProcessStatus App::Impl::processStatus() {
  admin::ProcessStatus status{static_cast<int>(workers.size()), {}};
  {
    std::lock_guard lock(listenersMutex);
    status.listeners = listeners;
  }
  for (auto& listener : status.listeners)
    listener.activeSessions = activeOn(
        managers, listener.role == "primary" ? ListenerRole::Primary : ListenerRole::Replica);
  return status;
}

// The admin server reads only what these callbacks give it; readyz_requires_replica and
// admin_listen apply at start.
bool App::Impl::startAdmin() {
  if (options.adminListen.empty()) return true;
  admin::AdminSources sources{[d = discovery] { return d->current(); },
                              [this] { return workersProblem(); },
                              [this] { return processStatus(); }, [this] { return metricsText(); },
                              options.readyzRequiresReplica};
  sources.draining = [this] { return draining.load() || drainRequested.load(); };
  sources.requestDrain = [this](bool on) {
    if (drainRequested.exchange(on) == on) return;
    spdlog::info("drain {}: {} session(s) open", on ? "requested, /readyz fails" : "cancelled",
                 activeSessions());
  };
  sources.sessions = [this] { return activeSessions(); };
  sources.reload = [this] { return onReload(); };
  admin = std::make_unique<admin::AdminServer>(std::move(sources));
  std::string error;
  if (!admin->start(options.adminListen, &error)) {
    spdlog::critical("admin_listen: {}", error);
    return false;
  }
  spdlog::info("admin HTTP server listening on {} (port {})", options.adminListen, admin->port());
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

// A listener whose address changes gets its new sockets (one per worker) bound here, before
// anything else of the reload applies; a failure to bind fails the whole reload.
std::vector<App::Impl::MovedListener> App::Impl::openMovedListeners(
    const config::Options& next, std::vector<std::string>& errors) {
  std::vector<MovedListener> moved;
  for (ListenerRole role : {ListenerRole::Primary, ListenerRole::Replica}) {
    const bool primary = role == ListenerRole::Primary;
    const std::string& before = primary ? options.listenPrimary : options.listenReplica;
    const std::string& after = primary ? next.listenPrimary : next.listenReplica;
    if (before == after) continue;
    if (draining.load()) {
      errors.push_back("listen_" + std::string(router::toString(role)) +
                       ": not moved while shutting down");
      continue;
    }
    const std::string& other = primary ? options.listenReplica : options.listenPrimary;
    if (!after.empty() && after == other) {
      errors.push_back("listen_" + std::string(router::toString(role)) + ": " + after +
                       " is where the other listener runs now; move one at a time");
      continue;
    }
    MovedListener listener{role, after, {}};
    std::string error;
    auto parsed = after.empty() ? std::nullopt : core::parseListenAddress(after, &error);
    std::string ignored;
    auto current = before.empty() ? std::nullopt : core::parseListenAddress(before, &ignored);
    if (parsed && current && sameAddress(*parsed, *current)) continue;  // only spelled anew
    // Our own listener may hold the port (wildcard to one address, or back): no exclusive check.
    if (parsed && !(current && portOf(*parsed) == portOf(*current)))
      error = core::checkAddressFree(*parsed);
    if (!error.empty()) parsed.reset();
    for (std::size_t i = 0; !after.empty() && i < managers.size(); ++i) {
      core::Fd fd = parsed ? core::listenOn(*parsed, 4096, &error) : core::Fd();
      if (!fd) {
        errors.push_back("listen_" + std::string(router::toString(role)) + ": " + error);
        break;
      }
      listener.fds.push_back(std::move(fd));
    }
    moved.push_back(std::move(listener));
  }
  return moved;
}

// Each worker starts accepting on its new socket, then takes in the old one's queue and closes it.
void App::Impl::moveListeners(std::vector<MovedListener> moved) {
  for (MovedListener& listener : moved) {
    for (std::size_t i = 0; i < managers.size(); ++i) {
      auto fd = std::make_shared<core::Fd>(listener.fds.empty() ? core::Fd()
                                                                : std::move(listener.fds[i]));
      workers[i]->loop().post([m = managers[i].get(), fd, role = listener.role] {
        m->replaceListener(std::move(*fd), role);
      });
    }
    const std::string role = router::toString(listener.role);
    std::lock_guard lock(listenersMutex);
    std::erase_if(listeners, [&](const admin::ListenerStatus& l) { return l.role == role; });
    if (!listener.address.empty()) listeners.push_back({role, listener.address, 0});
    spdlog::info("listen_{}: now {}", role, listener.address.empty() ? "off" : listener.address);
  }
}

// SIGHUP: re-read everything; a bad file keeps the running configuration. Listener addresses move
// (new socket first); the worker count, admin_listen and the source kind apply at the next start.
// SIGHUP (main thread) and POST /reload (admin thread) both land here, one at a time.
// Keys a running process cannot change keep their running values (and say so), and the settings
// are checked again as the process will run them: a file that switches `source` away from static
// must not leave the running static source with an empty candidate list.
void App::Impl::keepRestartOnlyKeys(config::LoadResult& result) {
  for (const std::string& name : config::changedKeys(options, result.options)) {
    if (!restartOnlyKey(name)) continue;
    const config::Key* key = config::findKey(name);
    spdlog::warn("reload: {} changed to '{}'; it applies at the next start (still '{}')", name,
                 key->get(result.options), key->get(options));
    key->set(result.options, key->get(options));
  }
  for (std::string& problem : config::missingForSource(result.options))
    result.errors.push_back(problem);
}

std::vector<std::string> App::Impl::onReload() {
  std::lock_guard lock(reloadMutex);
  auto result = reload();
  std::string error;
  auto list = result.ok() ? endpoints(result.options, &error) : std::vector<discovery::Endpoint>{};
  if (!error.empty()) result.errors.push_back("candidates: " + error);
  if (result.ok()) keepRestartOnlyKeys(result);
  std::vector<MovedListener> moved;
  if (result.ok()) moved = openMovedListeners(result.options, result.errors);
  if (!result.ok()) {
    for (const auto& e : result.errors) spdlog::error("reload: {}", e);
    spdlog::error("reload failed: keeping the running configuration");
    reloadsFailed.fetch_add(1, std::memory_order_relaxed);
    return result.errors;
  }
  reloadsSucceeded.fetch_add(1, std::memory_order_relaxed);
  options = result.options;
  moveListeners(std::move(moved));
  common::setupLogging(options.logLevel, logStyle(options));
  if (source != nullptr) source->setEndpoints(list);
  discovery->setOptions(discoveryOptions(options));
  eachManager([s = sessionSettings(options)](session::SessionManager& m) { m.applySettings(s); });
  discovery->probeNow();
  if (source != nullptr) {
    spdlog::info("configuration reloaded ({} candidates)", list.size());
  } else {
    spdlog::info("configuration reloaded");
  }
  return {};
}

// Rolling updates: /readyz already fails, so Kubernetes removes the endpoint while listeners keep
// accepting for drain_delay. A second SIGTERM or SIGINT ends the delay; SIGHUP still reloads.
void App::Impl::waitDrainDelay(const sigset_t& signals) {
  if (options.drainDelay.count() == 0) return;
  spdlog::info("draining: /readyz fails; still accepting for drain_delay {} ms",
               options.drainDelay.count());
  const auto deadline = std::chrono::steady_clock::now() + options.drainDelay;
  for (auto left = options.drainDelay; left.count() > 0;
       left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                           std::chrono::steady_clock::now())) {
    const timespec wait{static_cast<time_t>(left.count() / 1000),
                        static_cast<long>(left.count() % 1000) * 1000000L};
    const int signal = ::sigtimedwait(&signals, nullptr, &wait);
    if (signal == SIGHUP) onReload();
    if (signal == SIGTERM || signal == SIGINT) return;
  }
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
  if (admin) admin->stop();  // it reads workers and managers: stop it before them
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
  if (!impl_->startAdmin()) {
    impl_->drainAndStop();
    return 1;
  }
  impl_->discovery->start();
  for (;;) {
    int signal = 0;
    if (::sigwait(&signals, &signal) != 0) continue;
    if (signal == SIGHUP) {
      impl_->onReload();
      continue;
    }
    spdlog::info("received {}", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    impl_->draining = true;
    if (signal == SIGTERM) impl_->waitDrainDelay(signals);
    break;
  }
  impl_->drainAndStop();
  return 0;
}

}  // namespace pgkeel::app
