// Scrape: the samples of one /metrics request, checked against the metric list, as Prometheus text.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "discovery/routing_table.h"

namespace pgkeel::metrics {

inline constexpr const char* kContentType = "text/plain; version=0.0.4";

// Bucket upper bounds in seconds for latency histograms (a +Inf bucket follows the last).
inline constexpr std::array<double, 15> kLatencyBuckets{
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

struct HistogramData {
  std::vector<double> bounds;         // upper bounds, ascending
  std::vector<std::uint64_t> counts;  // per bucket, not cumulative; bounds.size() + 1 (+Inf last)
  double sum = 0;
};

class Scrape {
 public:
  // For histogram metrics of the list.
  void addHistogram(std::string_view name, std::vector<std::string> labelValues,
                    HistogramData data);
  // `name` must be in metricList() and `labelValues` match its labels, in order.
  void add(std::string_view name, std::vector<std::string> labelValues, double value);
  // The text exposition format 0.0.4; every listed metric gets # HELP and # TYPE.
  std::string text() const;

 private:
  struct Sample {
    std::vector<std::string> labelValues;
    double value;
  };
  std::map<std::string, std::vector<Sample>, std::less<>> samples_;
  struct Histogram {
    std::vector<std::string> labelValues;
    HistogramData data;
  };
  std::map<std::string, std::vector<Histogram>, std::less<>> histograms_;
};

// The per-node metrics and the table version from the current routing table.
void addRoutingTable(Scrape& scrape, const discovery::RoutingTable& table);

}  // namespace pgkeel::metrics
