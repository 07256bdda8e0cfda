// Readiness and the /status document, built from a routing table snapshot.
#include "admin/status.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>

namespace pgkeel::admin {
namespace {

using Clock = std::chrono::system_clock;

// RFC 3339 in UTC with milliseconds; null for a time never set.
nlohmann::json timeJson(Clock::time_point at) {
  if (at == Clock::time_point{}) return nullptr;
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(millis / 1000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[40];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(millis % 1000));
  return text;
}

template <typename T>
nlohmann::json optionalJson(const std::optional<T>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json nodeJson(const discovery::NodeState& node) {
  return {
      {"endpoint", node.endpoint.str()},
      {"name", node.name},
      {"address", node.address},
      {"role", discovery::toString(node.role)},
      {"health", discovery::toString(node.health)},
      {"timeline", node.timeline},
      {"lagBytes", optionalJson(node.lagBytes)},
      {"lagSeconds", optionalJson(node.lagSeconds)},
      {"lastProbe", timeJson(node.lastProbe)},
      {"probeLatencyMs", std::chrono::duration<double, std::milli>(node.probeLatency).count()},
      {"lastError", node.lastError},
  };
}

}  // namespace

std::string readinessProblem(const discovery::RoutingTable& table, bool requireReplica) {
  if (table.primaryNode() == nullptr)
    return "no primary" + (table.primaryProblem.empty() ? "" : ": " + table.primaryProblem);
  if (requireReplica && table.healthyReplicas().empty()) return "no healthy replica";
  return "";
}

nlohmann::json statusJson(const discovery::RoutingTable& table, const ProcessStatus& process) {
  const discovery::NodeState* primary = table.primaryNode();
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& node : table.nodes) nodes.push_back(nodeJson(node));
  nlohmann::json listeners = nlohmann::json::array();
  for (const auto& l : process.listeners)
    listeners.push_back(
        {{"role", l.role}, {"address", l.address}, {"activeSessions", l.activeSessions}});
  return {
      {"version", table.version},
      {"changedAt", timeJson(table.changedAt)},
      {"primary", primary ? nlohmann::json(primary->endpoint.str()) : nlohmann::json(nullptr)},
      {"primaryProblem", table.primaryProblem},
      {"controlPlane", table.controlPlane},
      {"nodes", std::move(nodes)},
      {"listeners", std::move(listeners)},
      {"workers", process.workers},
  };
}

}  // namespace pgkeel::admin
