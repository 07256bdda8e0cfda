// Pure decisions from one probe round to the next routing table: hysteresis, roles, election, lag.
#include "discovery/table_builder.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <set>
#include <tuple>

namespace pgkeel::discovery {
namespace {

int atLeastOne(int n) {
  return std::max(n, 1);
}

int saturatingIncrement(int n) {
  return n == INT_MAX ? n : n + 1;
}

bool isPrimaryCandidate(const NodeState& node) {
  return node.healthy() && node.role == NodeRole::Primary;
}

// "a", "a and b", "a, b and c".
std::string joinNames(const RoutingTable& table, const std::vector<std::size_t>& indexes) {
  std::string text;
  for (std::size_t i = 0; i < indexes.size(); ++i) {
    if (i > 0) text += (i + 1 == indexes.size()) ? " and " : ", ";
    text += table.nodes[indexes[i]].endpoint.str();
  }
  return text;
}

std::string noPrimaryProblem(const RoutingTable& table) {
  if (table.nodes.empty()) return "no candidate nodes to probe";
  std::string text = "no node answers pg_is_in_recovery() = false";
  std::string unhealthy;
  for (const NodeState& node : table.nodes) {
    if (node.healthy()) continue;
    if (!unhealthy.empty()) unhealthy += ", ";
    unhealthy += node.endpoint.str();
    if (node.role == NodeRole::Primary) unhealthy += " (was primary)";
  }
  if (!unhealthy.empty()) text += "; unhealthy: " + unhealthy;
  return text;
}

std::string splitBrainProblem(const RoutingTable& table, const std::vector<std::size_t>& tied,
                              std::uint32_t timeline) {
  return "split brain: " + joinNames(table, tied) + (tied.size() == 2 ? " both" : " all") +
         " answer pg_is_in_recovery() = false on timeline " + std::to_string(timeline) +
         "; refusing writes";
}

// Timelines only grow within a cluster, so a node last seen as primary on a later timeline than
// the best healthy candidate means that candidate is a stale, diverged primary.
const NodeState* newerUnhealthyPrimary(const RoutingTable& table, std::uint32_t timeline) {
  for (const NodeState& node : table.nodes) {
    if (!node.healthy() && node.role == NodeRole::Primary && node.timeline > timeline) {
      return &node;
    }
  }
  return nullptr;
}

std::string stalePrimaryProblem(const NodeState& stale, const NodeState& newer) {
  return "stale primary: " + stale.endpoint.str() +
         " answers pg_is_in_recovery() = false on timeline " + std::to_string(stale.timeline) +
         " but " + newer.endpoint.str() + " (unhealthy) was primary on later timeline " +
         std::to_string(newer.timeline) + "; refusing writes";
}

// The one healthy node answering f on the strictly highest timeline, unless an unhealthy node was
// primary on a later one; else a reason for none.
void electPrimary(RoutingTable& table) {
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < table.nodes.size(); ++i) {
    if (isPrimaryCandidate(table.nodes[i])) candidates.push_back(i);
  }
  if (candidates.empty()) {
    table.primaryProblem = noPrimaryProblem(table);
    return;
  }
  std::uint32_t best = 0;
  for (std::size_t i : candidates) best = std::max(best, table.nodes[i].timeline);
  std::vector<std::size_t> top;
  for (std::size_t i : candidates) {
    if (table.nodes[i].timeline == best) top.push_back(i);
  }
  if (top.size() > 1) {
    table.primaryProblem = splitBrainProblem(table, top, best);
  } else if (const NodeState* newer = newerUnhealthyPrimary(table, best)) {
    table.primaryProblem = stalePrimaryProblem(table.nodes[top.front()], *newer);
  } else {
    table.primary = top.front();
  }
}

std::string nodeLabel(const NodeState& node) {
  return node.name.empty() ? node.endpoint.str() : node.name + " (" + node.endpoint.str() + ")";
}

// The control plane names the primary or says there is none; the probe must still agree.
void electWithOpinion(RoutingTable& table, const ControlView& view) {
  std::string who = view.detail.empty() ? std::string("control plane") : view.detail;
  if (view.opinion == LeaderOpinion::Nobody) {
    table.primaryProblem = who + ": no primary named (failover or switchover under way)";
    return;
  }
  const NodeState* leader = view.leader ? table.find(*view.leader) : nullptr;
  if (leader == nullptr) {
    table.primaryProblem = who + ": the named primary " +
                           (view.leaderName.empty() ? std::string("?") : view.leaderName) +
                           " is not among the probed nodes";
  } else if (!leader->healthy()) {
    table.primaryProblem = who + ": the named primary " + nodeLabel(*leader) + " is unhealthy";
  } else if (leader->role != NodeRole::Primary) {
    table.primaryProblem = who + ": the named primary " + nodeLabel(*leader) +
                           " answers pg_is_in_recovery() = true (not promoted yet)";
  } else {
    table.primary = static_cast<std::size_t>(leader - table.nodes.data());
  }
}

void fillLagBytes(RoutingTable& table) {
  const NodeState* primary = table.primaryNode();
  if (primary == nullptr) return;
  std::uint64_t primary_lsn = primary->walLsn;
  for (NodeState& node : table.nodes) {
    if (!node.healthy() || node.role != NodeRole::Replica) continue;
    node.lagBytes = primary_lsn > node.walLsn ? primary_lsn - node.walLsn : 0;
  }
}

void stampVersion(const RoutingTable& previous, RoutingTable& next) {
  if (routingDiffers(previous, next)) {
    next.version = previous.version + 1;
    next.changedAt = std::chrono::system_clock::now();
  } else {
    next.version = previous.version;
    next.changedAt = previous.changedAt;
  }
}

using RoutingKey = std::tuple<NodeId, NodeRole, NodeHealth>;

std::vector<RoutingKey> routingKeys(const RoutingTable& table) {
  std::vector<RoutingKey> keys;
  keys.reserve(table.nodes.size());
  for (const NodeState& node : table.nodes) keys.emplace_back(node.id, node.role, node.health);
  std::sort(keys.begin(), keys.end());
  return keys;
}

std::optional<NodeId> primaryId(const RoutingTable& table) {
  const NodeState* primary = table.primaryNode();
  return primary ? std::optional<NodeId>(primary->id) : std::nullopt;
}

std::optional<std::uint32_t> parseHex32(std::string_view text) {
  std::uint32_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value, 16);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

}  // namespace

RoutingTable TableBuilder::apply(const RoutingTable& previous,
                                 const std::vector<ProbeResult>& round, const ControlView& view) {
  return build(previous, round, view, false);
}

RoutingTable TableBuilder::applyPartial(const RoutingTable& previous,
                                        const std::vector<ProbeResult>& round,
                                        const ControlView& view) {
  return build(previous, round, view, true);
}

RoutingTable TableBuilder::build(const RoutingTable& previous,
                                 const std::vector<ProbeResult>& round, const ControlView& view,
                                 bool partial) {
  RoutingTable next;
  std::set<NodeId> seen;
  for (const ProbeResult& result : round) {
    if (!seen.insert(result.id).second) continue;
    next.nodes.push_back(observe(result));
    auto name = view.names.find(result.id);
    if (name != view.names.end()) next.nodes.back().name = name->second;
  }
  if (partial) {
    for (const NodeState& node : previous.nodes) {
      if (seen.insert(node.id).second) next.nodes.push_back(node);
    }
  } else {
    std::erase_if(trackers_, [&](const auto& entry) { return seen.count(entry.first) == 0; });
  }
  next.controlPlane = view.detail.empty() ? "static" : view.detail;
  if (view.opinion == LeaderOpinion::NoOpinion) {
    electPrimary(next);
  } else {
    electWithOpinion(next, view);
  }
  fillLagBytes(next);
  stampVersion(previous, next);
  return next;
}

NodeState TableBuilder::observe(const ProbeResult& result) {
  Tracker& tracker = trackers_[result.id];
  updateHealth(tracker, result.ok);
  if (result.ok) {
    tracker.role = result.inRecovery ? NodeRole::Replica : NodeRole::Primary;
    tracker.address = result.address;
    tracker.timeline = result.timeline;
    tracker.lsn = result.lsn;
    tracker.replayDelaySeconds = result.replayDelaySeconds;
    tracker.durations.add(result.latency);
  }
  NodeState node;
  node.id = result.id;
  node.endpoint = result.endpoint;
  node.address = tracker.address;
  node.role = tracker.role;
  node.health = tracker.health;
  node.timeline = tracker.timeline;
  node.walLsn = tracker.lsn;
  if (node.healthy() && node.role == NodeRole::Replica)
    node.lagSeconds = tracker.replayDelaySeconds;
  node.lastProbe = result.at;
  node.probeLatency = result.latency;
  node.probeDurations = tracker.durations;
  if (!result.ok) node.lastError = result.error.empty() ? "probe failed" : result.error;
  node.consecutiveFailures = tracker.failures;
  node.probeFailures = tracker.failuresTotal;
  return node;
}

void TableBuilder::updateHealth(Tracker& tracker, bool ok) const {
  if (ok) {
    tracker.failures = 0;
    tracker.successes = saturatingIncrement(tracker.successes);
    bool recovered = tracker.health == NodeHealth::Unhealthy &&
                     tracker.successes >= atLeastOne(policy_.healthyAfter);
    if (tracker.health == NodeHealth::Unknown || recovered) tracker.health = NodeHealth::Healthy;
  } else {
    tracker.successes = 0;
    tracker.failures = saturatingIncrement(tracker.failures);
    ++tracker.failuresTotal;
    bool failed = tracker.health == NodeHealth::Healthy &&
                  tracker.failures >= atLeastOne(policy_.unhealthyAfter);
    if (tracker.health == NodeHealth::Unknown || failed) tracker.health = NodeHealth::Unhealthy;
  }
}

bool routingDiffers(const RoutingTable& a, const RoutingTable& b) {
  return primaryId(a) != primaryId(b) || routingKeys(a) != routingKeys(b);
}

std::optional<std::uint64_t> parseLsn(std::string_view text) {
  std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::optional<std::uint32_t> high = parseHex32(text.substr(0, slash));
  std::optional<std::uint32_t> low = parseHex32(text.substr(slash + 1));
  if (!high || !low) return std::nullopt;
  return (static_cast<std::uint64_t>(*high) << 32) | *low;
}

}  // namespace pgkeel::discovery
