// AdminServer: the HTTP endpoints /healthz /readyz /status /metrics /reload /drain on a thread of
// their own.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/status.h"
#include "common/http_thread.h"
#include "discovery/routing_table.h"

namespace httplib {
class Server;
}

namespace pgkeel::admin {

// What the endpoints read; app wires these. Each is called on the admin thread.
struct AdminSources {
  std::function<discovery::RoutingTablePtr()> table;
  std::function<std::string()> livenessProblem;  // "" while every worker answers
  std::function<ProcessStatus()> process;
  std::function<std::string()> metricsText;  // Prometheus text exposition
  bool readyRequiresReplica = false;
  std::function<bool()> draining = [] { return false; };  // /readyz fails at once while true
  // POST /reload: re-reads the configuration; returns every problem (none: reloaded).
  std::function<std::vector<std::string>()> reload = [] { return std::vector<std::string>{}; };
  // POST /drain turns draining on (true) and DELETE /drain off (false); sessions counts the open
  // client sessions a drain waits for.
  std::function<void(bool)> requestDrain = [](bool) {};
  std::function<std::size_t()> sessions = [] { return std::size_t{0}; };
};

// True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x: the only peers whose POST and DELETE requests
// (reload, drain) are answered.
bool isLoopbackAddress(const std::string& address);

// The longest a POST /drain may wait (wait_ms), and so `pgkeel drain --timeout`.
constexpr long kMaxDrainWaitMs = 300000;

class AdminServer {
 public:
  explicit AdminServer(AdminSources sources);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds "ADDR:PORT" (port 0 picks one) and starts serving; false with *error if it cannot.
  bool start(const std::string& address, std::string* error);
  void stop();
  int port() const { return port_; }

 private:
  void route();
  void routeDrain();

  AdminSources sources_;
  std::unique_ptr<httplib::Server> server_;
  common::HttpThread http_;  // after server_: destroyed (and so stopped) before it
  int port_ = 0;
  std::atomic<bool> stopping_{false};      // ends a POST /drain that is still waiting
  std::atomic<bool> drainWaiting_{false};  // a POST /drain is waiting for sessions to end
};

}  // namespace pgkeel::admin
