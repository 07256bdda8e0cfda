// Scrape: collects samples by metric name and serialises them with prometheus-cpp.
#include "metrics/scrape.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cassert>
#include <limits>

#include "metrics/metric_list.h"

namespace pgkeel::metrics {

void Scrape::add(std::string_view name, std::vector<std::string> labelValues, double value) {
  [[maybe_unused]] const MetricInfo* info = findMetric(name);
  assert(info != nullptr && info->labels.size() == labelValues.size());
  auto it = samples_.find(name);
  if (it == samples_.end()) it = samples_.emplace(std::string(name), std::vector<Sample>{}).first;
  it->second.push_back({std::move(labelValues), value});
}

void Scrape::addHistogram(std::string_view name, std::vector<std::string> labelValues,
                          HistogramData data) {
  [[maybe_unused]] const MetricInfo* info = findMetric(name);
  assert(info != nullptr && info->type == MetricType::Histogram &&
         info->labels.size() == labelValues.size() && data.counts.size() == data.bounds.size() + 1);
  auto it = histograms_.find(name);
  if (it == histograms_.end())
    it = histograms_.emplace(std::string(name), std::vector<Histogram>{}).first;
  it->second.push_back({std::move(labelValues), std::move(data)});
}

namespace {

prometheus::ClientMetric histogramMetric(const HistogramData& data) {
  prometheus::ClientMetric metric;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < data.counts.size(); ++i) {
    cumulative += data.counts[i];
    const double bound =
        i < data.bounds.size() ? data.bounds[i] : std::numeric_limits<double>::infinity();
    metric.histogram.bucket.push_back({cumulative, bound});
  }
  metric.histogram.sample_count = cumulative;
  metric.histogram.sample_sum = data.sum;
  return metric;
}

prometheus::MetricType familyType(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return prometheus::MetricType::Counter;
    case MetricType::Histogram:
      return prometheus::MetricType::Histogram;
    case MetricType::Gauge:
      break;
  }
  return prometheus::MetricType::Gauge;
}

}  // namespace

std::string Scrape::text() const {
  std::vector<prometheus::MetricFamily> families;
  for (const MetricInfo& info : metricList()) {
    prometheus::MetricFamily family{info.name, info.help, familyType(info.type), {}};
    if (auto it = histograms_.find(info.name); it != histograms_.end()) {
      for (const Histogram& histogram : it->second) {
        prometheus::ClientMetric metric = histogramMetric(histogram.data);
        for (std::size_t i = 0; i < info.labels.size(); ++i)
          metric.label.push_back({info.labels[i], histogram.labelValues[i]});
        family.metric.push_back(std::move(metric));
      }
    }
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

static_assert(discovery::kProbeBoundsMicros.size() == kLatencyBuckets.size());

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
    HistogramData durations;
    durations.bounds.assign(kLatencyBuckets.begin(), kLatencyBuckets.end());
    durations.counts.assign(node.probeDurations.counts.begin(), node.probeDurations.counts.end());
    durations.sum = static_cast<double>(node.probeDurations.microsSum) / 1e6;
    scrape.addHistogram("pgkeel_node_probe_duration_seconds", {name}, std::move(durations));
  }
}

}  // namespace pgkeel::metrics
