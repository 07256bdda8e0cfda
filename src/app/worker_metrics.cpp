// The data-plane metrics: each worker's own counters, summed at scrape time, and the source's.
#include "app/worker_metrics.h"

namespace pgkeel::app {

using router::ListenerRole;

// Client connections open now through one listener, summed over workers (never below zero).
std::uint64_t activeOn(const Managers& managers, ListenerRole role) {
  using session::WorkerCounters;
  const auto r = static_cast<std::size_t>(role);
  std::uint64_t accepted = 0, closed = 0;
  for (const auto& m : managers) {
    for (const auto& counter : m->counters().closed[r]) closed += WorkerCounters::read(counter);
    accepted += WorkerCounters::read(m->counters().accepted[r]);
  }
  return accepted > closed ? accepted - closed : 0;
}

// Server connections per node of the current table, summed over workers (indexed by NodeId).
void addServerCounters(metrics::Scrape& scrape, const Managers& managers,
                       const discovery::RoutingTable& table) {
  using session::WorkerCounters;
  for (const auto& node : table.nodes) {
    const auto slot = node.id % discovery::kMaxNodes;
    std::uint64_t opened = 0, failed = 0;
    for (const auto& m : managers) {
      opened += WorkerCounters::read(m->counters().serverOpened[slot]);
      failed += WorkerCounters::read(m->counters().serverFailed[slot]);
    }
    scrape.add("pgkeel_server_connections_opened_total", {node.endpoint.str()}, opened);
    scrape.add("pgkeel_server_connections_failed_total", {node.endpoint.str()}, failed);
  }
}

// Connect latency: the workers' buckets summed (the bounds match metrics::kLatencyBuckets).
void addConnectHistogram(metrics::Scrape& scrape, const Managers& managers) {
  using session::WorkerCounters;
  static_assert(WorkerCounters::kConnectBoundsMicros.size() == metrics::kLatencyBuckets.size());
  metrics::HistogramData data;
  data.bounds.assign(metrics::kLatencyBuckets.begin(), metrics::kLatencyBuckets.end());
  data.counts.assign(data.bounds.size() + 1, 0);
  std::uint64_t micros = 0;
  for (const auto& m : managers) {
    for (std::size_t b = 0; b < data.counts.size(); ++b)
      data.counts[b] += WorkerCounters::read(m->counters().connectBuckets[b]);
    micros += WorkerCounters::read(m->counters().connectMicrosSum);
  }
  data.sum = static_cast<double>(micros) / 1e6;
  scrape.addHistogram("pgkeel_server_connect_duration_seconds", {}, std::move(data));
}

// The discovery source's list/watch or poll counters.
void addSourceStats(metrics::Scrape& scrape, const discovery::Source& source) {
  const discovery::SourceStats stats = source.stats();
  const std::string name = source.name();
  scrape.add("pgkeel_discovery_source_synced", {name}, stats.synced ? 1 : 0);
  scrape.add("pgkeel_discovery_events_total", {name}, static_cast<double>(stats.events));
  scrape.add("pgkeel_discovery_relists_total", {name}, static_cast<double>(stats.relists));
  scrape.add("pgkeel_discovery_rewatches_total", {name}, static_cast<double>(stats.rewatches));
  for (const auto& [kind, count] : stats.errors)
    scrape.add("pgkeel_discovery_errors_total", {name, kind}, static_cast<double>(count));
}

void addSessionCounters(metrics::Scrape& scrape, const Managers& managers) {
  using session::WorkerCounters;
  std::uint64_t toServer = 0, toClient = 0;
  for (const auto& m : managers) {
    toServer += WorkerCounters::read(m->counters().bytesClientToServer);
    toClient += WorkerCounters::read(m->counters().bytesServerToClient);
  }
  scrape.add("pgkeel_bytes_forwarded_total", {"client_to_server"}, toServer);
  scrape.add("pgkeel_bytes_forwarded_total", {"server_to_client"}, toClient);
  for (ListenerRole role : {ListenerRole::Primary, ListenerRole::Replica}) {
    const auto r = static_cast<std::size_t>(role);
    const std::string listener = router::toString(role);
    std::uint64_t accepted = 0;
    for (const auto& m : managers) accepted += WorkerCounters::read(m->counters().accepted[r]);
    scrape.add("pgkeel_client_connections_accepted_total", {listener}, accepted);
    scrape.add("pgkeel_client_connections_active", {listener}, activeOn(managers, role));
    std::uint64_t waited = 0;
    for (const auto& m : managers) waited += WorkerCounters::read(m->counters().waited[r]);
    scrape.add("pgkeel_client_connections_waited_total", {listener}, waited);
    for (std::size_t reason = 0; reason < session::kCloseReasonCount; ++reason) {
      std::uint64_t closed = 0;
      for (const auto& m : managers)
        closed += WorkerCounters::read(m->counters().closed[r][reason]);
      scrape.add("pgkeel_client_connections_closed_total",
                 {listener, session::toString(static_cast<session::CloseReason>(reason))}, closed);
    }
  }
}

}  // namespace pgkeel::app
