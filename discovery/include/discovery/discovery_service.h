// DiscoveryService: the discovery thread that probes candidates and publishes routing tables.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "discovery/routing_table.h"
#include "discovery/source.h"
#include "discovery/table_builder.h"

namespace pgkeel::discovery {

class Prober;  // discovery/src/prober.h: concurrent libpq probes with a deadline

struct DiscoveryOptions {
  std::string probeDsn;  // libpq conninfo without host/port; PG* variables fill the rest
  std::chrono::milliseconds probeInterval{1000};
  std::chrono::milliseconds probeTimeout{1000};
  // While the control plane says the primary is moving, or names a primary the table does not
  // have yet, rounds run this often (for at most kFastProbeLimit after the view last changed).
  std::chrono::milliseconds fastProbeInterval{50};
  HealthPolicy health;
};

// Empty when `dsn` is a valid libpq conninfo for DiscoveryOptions::probeDsn; else the problem.
std::string checkProbeDsn(const std::string& dsn);

// `value` as a libpq conninfo value: in single quotes, with `\` and `'` escaped by a backslash.
std::string quoteConninfoValue(std::string_view value);

// The probe DSN for a round whose snapshot carries credentials (SourceSnapshot::probeUser): `dsn`
// with its user and password replaced by `user` and `password`, its other settings kept (written
// as key='value' settings, a URI too). An empty `user` gives `dsn` itself, and an empty `password`
// leaves none (libpq's PGPASSWORD or .pgpass may then supply it). An unparsable `dsn` comes back
// with the two settings appended; the prober reports it as invalid.
std::string probeDsnWithCredentials(const std::string& dsn, const std::string& user,
                                    const std::string& password);

inline constexpr std::chrono::seconds kFastProbeLimit{60};

class DiscoveryService {
 public:
  using Listener = std::function<void(const RoutingTablePtr&)>;

  DiscoveryService(std::unique_ptr<Source> source, DiscoveryOptions options);
  ~DiscoveryService();
  DiscoveryService(const DiscoveryService&) = delete;
  DiscoveryService& operator=(const DiscoveryService&) = delete;

  // Subscribe before start(). Listeners run on the discovery thread after each version change.
  void subscribe(Listener listener);
  void start();
  void stop();

  // Runs one probe round synchronously (for start-up and tests) and publishes its table.
  void probeOnce();

  RoutingTablePtr current() const { return handle_.load(); }
  const RoutingTableHandle& handle() const { return handle_; }
  Source& source() { return *source_; }

  // Applied from the next round (reload).
  void setOptions(DiscoveryOptions options);
  // Wakes the thread for an immediate round.
  void probeNow();

  // Id for an endpoint, assigned on first sight and never reused. Returns kMaxNodes (and logs)
  // once all kMaxNodes ids are taken; such an endpoint is not probed.
  NodeId idFor(const Endpoint& endpoint);

 private:
  void run();
  void publish(RoutingTable table);
  void applyOptions(const SourceSnapshot& snapshot);
  void noteCredentials(const SourceSnapshot& snapshot);
  std::vector<std::pair<NodeId, Endpoint>> roundNodes(SourceSnapshot& snapshot, ControlView& view);
  bool partialRound(std::vector<std::pair<NodeId, Endpoint>>& nodes, const ControlView& view);
  bool wantsFastRounds(const SourceSnapshot& snapshot, const ControlView& view,
                       const RoutingTable& table);
  void logChanges(const RoutingTable& previous, const RoutingTable& next);

  std::unique_ptr<Source> source_;
  std::unique_ptr<Prober> prober_;
  DiscoveryOptions options_;
  TableBuilder builder_;
  RoutingTableHandle handle_;
  std::vector<Listener> listeners_;
  std::vector<Endpoint> ids_;  // index = NodeId

  std::mutex roundMutex_;        // serialises rounds: probeOnce() may race the discovery thread
  std::string lastProblem_;      // primaryProblem last logged; guarded by roundMutex_
  SourceSnapshot lastSnapshot_;  // guarded by roundMutex_
  std::string probeUser_;        // the control plane's credentials in use; guarded by roundMutex_
  std::string probePassword_;
  std::chrono::steady_clock::time_point viewChangedAt_{};  // guarded by roundMutex_
  std::mutex mutex_;  // guards options_, ids_, idsExhaustedLogged_, wake_, stopping_
  bool idsExhaustedLogged_ = false;
  std::condition_variable cv_;
  bool wake_ = false;
  bool fast_ = false;  // the next wait is options_.fastProbeInterval
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pgkeel::discovery
