// DiscoveryService: the discovery thread; probes candidates each interval and publishes tables.
#include "discovery/discovery_service.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "prober.h"

namespace pgkeel::discovery {
namespace {

template <typename Keep>
std::string joinEndpoints(const RoutingTable& table, Keep keep) {
  std::string text;
  for (const NodeState& node : table.nodes) {
    if (!keep(node)) continue;
    if (!text.empty()) text += ", ";
    text += node.endpoint.str();
  }
  return text.empty() ? "none" : text;
}

// "routing table v4: primary a:5432 (timeline 3); replicas b:5432; unhealthy c:5432"
std::string summary(const RoutingTable& table) {
  const NodeState* primary = table.primaryNode();
  std::string text = "routing table v" + std::to_string(table.version) + ": primary ";
  text += primary
              ? primary->endpoint.str() + " (timeline " + std::to_string(primary->timeline) + ")"
              : "none";
  text += "; replicas " + joinEndpoints(table, [](const NodeState& node) {
            return node.healthy() && node.role == NodeRole::Replica;
          });
  text +=
      "; unhealthy " + joinEndpoints(table, [](const NodeState& node) { return !node.healthy(); });
  auto unelected = [primary](const NodeState& node) {
    return node.healthy() && node.role == NodeRole::Primary && &node != primary;
  };
  std::string stale = joinEndpoints(table, unelected);
  if (stale != "none") text += "; primaries not elected " + stale;
  return text;
}

bool becameUnhealthy(const RoutingTable& previous, const NodeState& node) {
  if (node.health != NodeHealth::Unhealthy) return false;
  const NodeState* before = previous.find(node.id);
  return before == nullptr || before->health != NodeHealth::Unhealthy;
}

}  // namespace

DiscoveryService::DiscoveryService(std::unique_ptr<Source> source, DiscoveryOptions options)
    : source_(std::move(source)),
      prober_(std::make_unique<Prober>(options.probeDsn, options.probeTimeout)),
      options_(std::move(options)),
      builder_(options_.health) {}

DiscoveryService::~DiscoveryService() {
  stop();
}

void DiscoveryService::subscribe(Listener listener) {
  listeners_.push_back(std::move(listener));
}

void DiscoveryService::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
    wake_ = handle_.load()->version == 0;  // no table published yet: first round at once
  }
  // A control-plane change ends a round in progress: its election would use a stale view, and a
  // round can last probe_timeout when a node does not answer.
  source_->start([this] {
    probeNow();
    prober_->interrupt();
  });
  thread_ = std::thread([this] { run(); });
}

void DiscoveryService::stop() {
  if (!thread_.joinable()) return;
  source_->stop();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DiscoveryService::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      auto interval = fast_ ? options_.fastProbeInterval : options_.probeInterval;
      cv_.wait_for(lock, interval, [this] { return wake_ || stopping_; });
      if (stopping_) return;
      wake_ = false;
    }
    probeOnce();
  }
}

void DiscoveryService::probeOnce() {
  std::lock_guard round(roundMutex_);
  prober_->clearInterrupt();  // changes from here on are in the snapshot or interrupt this round
  SourceSnapshot snapshot = source_->snapshot();
  applyOptions(snapshot);
  ControlView view;
  std::vector<std::pair<NodeId, Endpoint>> nodes = roundNodes(snapshot, view);
  const bool partial = partialRound(nodes, view);
  std::vector<ProbeResult> results = partial ? prober_->probeSome(nodes) : prober_->probeAll(nodes);
  const bool cut = prober_->interrupted();  // unfinished probes gave no result
  // The round took time (up to probe_timeout): a primary the control plane gave up meanwhile
  // must not be published, so the election uses the opinion as it is now.
  SourceSnapshot now = source_->snapshot();
  if (now.opinion != snapshot.opinion || !(now.leader == snapshot.leader)) {
    view.opinion = now.opinion;
    view.detail = now.detail;
    view.leaderName = now.leaderName.empty() ? now.leader.str() : now.leaderName;
    view.leader.reset();
    if (now.opinion == LeaderOpinion::Named) {
      NodeId id = idFor(now.leader);
      bool probed = std::any_of(results.begin(), results.end(),
                                [id](const ProbeResult& result) { return result.id == id; });
      // A node named only now gets writes after a probe of it, not on an older answer.
      if (id < kMaxNodes && probed) view.leader = id;
    }
    snapshot.opinion = now.opinion;
    snapshot.leader = now.leader;
    snapshot.leaderName = now.leaderName;
    snapshot.moving = now.moving;
    snapshot.detail = now.detail;
  }
  RoutingTable table = partial || cut ? builder_.applyPartial(*handle_.load(), results, view)
                                      : builder_.apply(*handle_.load(), results, view);
  bool fast = wantsFastRounds(snapshot, view, table);
  publish(std::move(table));
  std::lock_guard lock(mutex_);
  fast_ = fast;
  if (cut) {
    wake_ = true;  // the probes it cut short run again at once
    cv_.notify_all();
  }
}

// While the named primary is not confirmed yet, fast rounds leave out the nodes whose last probe
// failed: an unreachable old primary, whose probes last probe_timeout, must not hold back the
// rounds that watch for the new one. They keep their state (TableBuilder::applyPartial) until the
// next full round: once the primary is confirmed, when fast rounds end, or when the candidates
// differ from the table's nodes.
bool DiscoveryService::partialRound(std::vector<std::pair<NodeId, Endpoint>>& nodes,
                                    const ControlView& view) {
  {
    std::lock_guard lock(mutex_);
    if (!fast_) return false;
  }
  if (view.opinion != LeaderOpinion::Named || !view.leader) return false;
  RoutingTablePtr table = handle_.load();
  const NodeState* primary = table->primaryNode();
  if (primary != nullptr && primary->id == *view.leader) return false;
  if (table->nodes.size() != nodes.size()) return false;
  for (const auto& node : nodes) {
    if (table->find(node.first) == nullptr) return false;
  }
  std::erase_if(nodes, [&](const auto& node) {
    return node.first != view.leader && table->find(node.first)->consecutiveFailures > 0;
  });
  return true;
}

// Fast rounds while the control plane's view and the probed table disagree on the primary, for at
// most kFastProbeLimit after the view last changed (a named primary that never comes up must not
// keep discovery probing every few milliseconds).
bool DiscoveryService::wantsFastRounds(const SourceSnapshot& snapshot, const ControlView& view,
                                       const RoutingTable& table) {
  auto now = std::chrono::steady_clock::now();
  // The window restarts when the control plane's word on the primary changes, not on candidate
  // churn or a credentials rotation.
  if (snapshot.opinion != lastSnapshot_.opinion || !(snapshot.leader == lastSnapshot_.leader) ||
      snapshot.moving != lastSnapshot_.moving) {
    viewChangedAt_ = now;
  }
  if (snapshot.detail != lastSnapshot_.detail && !snapshot.detail.empty()) {
    spdlog::info("discovery: {}", snapshot.detail);
  }
  lastSnapshot_ = snapshot;
  if (now - viewChangedAt_ > kFastProbeLimit) return false;
  const NodeState* primary = table.primaryNode();
  switch (view.opinion) {
    case LeaderOpinion::NoOpinion:
      return snapshot.moving;
    case LeaderOpinion::Nobody:
      return snapshot.moving;  // a failover under way; a standby cluster's "nobody" is for good
    case LeaderOpinion::Named:
      return snapshot.moving ? primary == nullptr || primary->id != view.leader
                             : primary == nullptr;
  }
  return false;
}

// The round's probe DSN carries the snapshot's credentials, if any. A changed DSN (a rotated
// password, a reload) makes the prober close its kept connections, so the next probe of every
// node authenticates with what is current.
void DiscoveryService::applyOptions(const SourceSnapshot& snapshot) {
  DiscoveryOptions options;
  {
    std::lock_guard lock(mutex_);
    options = options_;
  }
  builder_.setPolicy(options.health);
  noteCredentials(snapshot);
  prober_->setOptions(
      probeDsnWithCredentials(options.probeDsn, snapshot.probeUser, snapshot.probePassword),
      options.probeTimeout);
}

// Logs when the control plane's probe credentials appear, change or go (the user, never the
// password).
void DiscoveryService::noteCredentials(const SourceSnapshot& snapshot) {
  if (snapshot.probeUser == probeUser_ && snapshot.probePassword == probePassword_) return;
  if (snapshot.probeUser.empty()) {
    spdlog::warn(
        "discovery: no probe credentials from the control plane now; probing with the "
        "probe DSN's own user and password");
  } else if (probeUser_.empty()) {
    spdlog::info("discovery: probing as user {} with the control plane's credentials",
                 snapshot.probeUser);
  } else {
    spdlog::info(
        "discovery: the control plane's probe credentials changed (user {}); the probes "
        "connect again with them",
        snapshot.probeUser);
  }
  probeUser_ = snapshot.probeUser;
  probePassword_ = snapshot.probePassword;
}

// The source's candidates with their ids, each node once; fills `view` from the snapshot.
std::vector<std::pair<NodeId, Endpoint>> DiscoveryService::roundNodes(SourceSnapshot& snapshot,
                                                                      ControlView& view) {
  view.opinion = snapshot.opinion;
  view.detail = snapshot.detail;
  view.leaderName = snapshot.leaderName.empty() ? snapshot.leader.str() : snapshot.leaderName;
  std::vector<std::pair<NodeId, Endpoint>> nodes;
  for (const Candidate& candidate : snapshot.candidates) {
    NodeId id = idFor(candidate.endpoint);
    if (id >= kMaxNodes) continue;
    if (!candidate.name.empty()) view.names.emplace(id, candidate.name);
    if (snapshot.opinion == LeaderOpinion::Named && candidate.endpoint == snapshot.leader) {
      view.leader = id;
    }
    bool seen = std::any_of(nodes.begin(), nodes.end(),
                            [id](const auto& node) { return node.first == id; });
    if (!seen) nodes.emplace_back(id, candidate.endpoint);
  }
  return nodes;
}

// Always stores the table (lag and probe times move every round); listeners hear only of
// version changes.
void DiscoveryService::publish(RoutingTable table) {
  RoutingTablePtr previous = handle_.load();
  auto next = std::make_shared<const RoutingTable>(std::move(table));
  handle_.store(next);
  if (next->version != previous->version) {
    logChanges(*previous, *next);
    for (const Listener& listener : listeners_) listener(next);
  }
  if (next->primaryProblem != lastProblem_) {
    lastProblem_ = next->primaryProblem;
    if (lastProblem_.starts_with("split brain") || lastProblem_.starts_with("stale primary")) {
      spdlog::error("discovery: {}", lastProblem_);
    } else if (!lastProblem_.empty()) {
      spdlog::warn("discovery: no primary: {}", lastProblem_);
    }
  }
}

void DiscoveryService::logChanges(const RoutingTable& previous, const RoutingTable& next) {
  spdlog::info("discovery: {}", summary(next));
  for (const NodeState& node : next.nodes) {
    if (becameUnhealthy(previous, node)) {
      spdlog::warn("discovery: {} is unhealthy after {} failed probe(s): {}", node.endpoint.str(),
                   node.consecutiveFailures, node.lastError);
    }
  }
}

void DiscoveryService::setOptions(DiscoveryOptions options) {
  {
    std::lock_guard lock(mutex_);
    options_ = std::move(options);
  }
  cv_.notify_all();
}

void DiscoveryService::probeNow() {
  {
    std::lock_guard lock(mutex_);
    wake_ = true;
  }
  cv_.notify_all();
}

NodeId DiscoveryService::idFor(const Endpoint& endpoint) {
  std::lock_guard lock(mutex_);
  auto it = std::find(ids_.begin(), ids_.end(), endpoint);
  if (it != ids_.end()) return static_cast<NodeId>(it - ids_.begin());
  if (ids_.size() >= kMaxNodes) {
    if (!idsExhaustedLogged_) {
      spdlog::error("discovery: all {} node ids are used; not probing {} or any other new node",
                    kMaxNodes, endpoint.str());
      idsExhaustedLogged_ = true;
    }
    return kMaxNodes;
  }
  ids_.push_back(endpoint);
  return static_cast<NodeId>(ids_.size() - 1);
}

}  // namespace pgkeel::discovery
