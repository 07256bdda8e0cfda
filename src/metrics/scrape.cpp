// Scrape: collects samples by metric name and serialises them with prometheus-cpp.
#include "metrics/scrape.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cassert>

#include "metrics/metric_list.h"

namespace pgkeel::metrics {

void Scrape::add(std::string_view name, std::vector<std::string> labelValues, double value) {
  [[maybe_unused]] const MetricInfo* info = findMetric(name);
  assert(info != nullptr && info->labels.size() == labelValues.size());
  auto it = samples_.find(name);
  if (it == samples_.end()) it = samples_.emplace(std::string(name), std::vector<Sample>{}).first;
  it->second.push_back({std::move(labelValues), value});
}

std::string Scrape::text() const {
  std::vector<prometheus::MetricFamily> families;
  for (const MetricInfo& info : metricList()) {
    prometheus::MetricFamily family{info.name,
                                    info.help,
                                    info.type == MetricType::Counter
                                        ? prometheus::MetricType::Counter
                                        : prometheus::MetricType::Gauge,
                                    {}};
    if (auto it = samples_.find(info.name); it != samples_.end()) {
      for (const Sample& sample : it->second) {
        prometheus::ClientMetric metric;
        for (std::size_t i = 0; i < info.labels.size(); ++i)
          metric.label.push_back({info.labels[i], sample.labelValues[i]});
        (info.type == MetricType::Counter ? metric.counter.value : metric.gauge.value) =
            sample.value;
        family.metric.push_back(std::move(metric));
      }
    }
    families.push_back(std::move(family));
  }
  return prometheus::TextSerializer().Serialize(families);
}

void addRoutingTable(Scrape& scrape, const discovery::RoutingTable& table) {
  using discovery::NodeRole;
  scrape.add("pgkeel_routing_table_version", {}, static_cast<double>(table.version));
  for (const discovery::NodeState& node : table.nodes) {
    const std::string name = node.endpoint.str();
    for (NodeRole role : {NodeRole::Primary, NodeRole::Replica, NodeRole::Unknown})
      scrape.add("pgkeel_node_role", {name, discovery::toString(role)}, node.role == role ? 1 : 0);
    scrape.add("pgkeel_node_healthy", {name}, node.healthy() ? 1 : 0);
    if (node.lagBytes)
      scrape.add("pgkeel_node_replication_lag_bytes", {name}, static_cast<double>(*node.lagBytes));
    if (node.lagSeconds)
      scrape.add("pgkeel_node_replication_lag_seconds", {name}, *node.lagSeconds);
    scrape.add("pgkeel_node_probe_failures_total", {name}, static_cast<double>(node.probeFailures));
    scrape.add("pgkeel_node_probe_latency_seconds", {name},
               std::chrono::duration<double>(node.probeLatency).count());
  }
}

}  // namespace pgkeel::metrics
