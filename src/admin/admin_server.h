// AdminServer: the HTTP endpoints /healthz /readyz /status /metrics on a thread of their own.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/status.h"
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
};

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

  AdminSources sources_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> listenReturned_{false};
};

}  // namespace pgkeel::admin
