// The one list of pgkeel's metrics; the exposition, README table and tests derive from it.
#include "metrics/metric_list.h"

namespace pgkeel::metrics {
namespace {

std::vector<MetricInfo> buildList() {
  using enum MetricType;
  return {
      {"pgkeel_up", Gauge, "1 while pgkeel is running", {}},
      {"pgkeel_build_info", Gauge, "always 1; the version label names the build", {"version"}},
      {"pgkeel_workers", Gauge, "worker threads (epoll loops)", {}},
      {"pgkeel_client_connections_accepted_total",
       Counter,
       "client connections accepted, by listener",
       {"listener"}},
      {"pgkeel_client_connections_active",
       Gauge,
       "client connections open now, by listener",
       {"listener"}},
      {"pgkeel_client_connections_closed_total",
       Counter,
       "client connections closed, by listener and close reason",
       {"listener", "reason"}},
      {"pgkeel_bytes_forwarded_total",
       Counter,
       "bytes spliced between clients and servers after start-up, by direction",
       {"direction"}},
      {"pgkeel_routing_table_version", Gauge, "version of the current routing table", {}},
      {"pgkeel_server_connect_duration_seconds",
       Histogram,
       "time from connect() to an established TCP connection to a node, per successful attempt",
       {}},
      {"pgkeel_client_connections_waited_total",
       Counter,
       "new connections that waited (up to primary_wait) for a node of their listener's role",
       {"listener"}},
      {"pgkeel_server_connections_opened_total",
       Counter,
       "server connections opened to a node",
       {"node"}},
      {"pgkeel_server_connections_failed_total",
       Counter,
       "connect attempts to a node that failed (refused, timed out, unreachable)",
       {"node"}},
      {"pgkeel_no_primary_seconds_total",
       Counter,
       "time spent with no primary in the routing table",
       {}},
      {"pgkeel_node_probe_failures_total",
       Counter,
       "failed probes of a node since start",
       {"node"}},
      {"pgkeel_config_reloads_total",
       Counter,
       "configuration reloads (SIGHUP or POST /reload) by outcome",
       {"result"}},
      {"pgkeel_primary_changes_total",
       Counter,
       "routing tables naming a primary different from the last one seen",
       {}},
      {"pgkeel_node_role",
       Gauge,
       "1 for the node's role from its last successful probe, 0 for the others",
       {"node", "role"}},
      {"pgkeel_node_healthy", Gauge, "1 while the node is healthy (routable), else 0", {"node"}},
      {"pgkeel_node_replication_lag_bytes",
       Gauge,
       "replica's replay lag behind the primary in bytes of WAL",
       {"node"}},
      {"pgkeel_node_replication_lag_seconds",
       Gauge,
       "replica's replay lag: now minus its last replayed transaction's time",
       {"node"}},
      {"pgkeel_node_probe_latency_seconds", Gauge, "duration of the node's last probe", {"node"}},
      {"pgkeel_discovery_source_synced",
       Gauge,
       "1 once the source has its first full view (every list done, or a poll answered)",
       {"source"}},
      {"pgkeel_discovery_events_total",
       Counter,
       "watch events or poll answers the source applied",
       {"source"}},
      {"pgkeel_discovery_relists_total",
       Counter,
       "full re-lists after 410 Gone or a watch that could not resume",
       {"source"}},
      {"pgkeel_discovery_rewatches_total",
       Counter,
       "watches restarted from the last resourceVersion (a stream ended)",
       {"source"}},
      {"pgkeel_discovery_errors_total",
       Counter,
       "failed control-plane requests by kind: 401, 403, 410, 429, 5xx, other_http, network, parse",
       {"source", "kind"}},
      {"pgkeel_node_probe_duration_seconds",
       Histogram,
       "duration of the node's successful probes since it joined the table",
       {"node"}},
  };
}

}  // namespace

const char* toString(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Histogram:
      return "histogram";
  }
  return "?";
}

const std::vector<MetricInfo>& metricList() {
  static const std::vector<MetricInfo> kList = buildList();
  return kList;
}

const MetricInfo* findMetric(std::string_view name) {
  for (const MetricInfo& info : metricList())
    if (info.name == name) return &info;
  return nullptr;
}

}  // namespace pgkeel::metrics
