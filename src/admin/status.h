// Readiness and the /status document: pure functions of the routing table and process counts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "discovery/routing_table.h"

namespace pgkeel::admin {

struct ListenerStatus {
  std::string role;     // "primary" or "replica"
  std::string address;  // as configured, "ADDR:PORT"
  std::uint64_t activeSessions = 0;
};

struct ProcessStatus {
  int workers = 0;
  std::vector<ListenerStatus> listeners;
};

// "" when the table has a primary (and, with requireReplica, a healthy replica); else one line.
std::string readinessProblem(const discovery::RoutingTable& table, bool requireReplica);

nlohmann::json statusJson(const discovery::RoutingTable& table, const ProcessStatus& process);

}  // namespace pgkeel::admin
