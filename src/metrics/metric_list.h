// The one list of pgkeel's metrics: name, type, help and label names; docs and tests check it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pgkeel::metrics {

enum class MetricType { Counter, Gauge, Histogram };

const char* toString(MetricType type);

struct MetricInfo {
  std::string name;  // pgkeel_..., counters end in _total
  MetricType type;
  std::string help;                 // one line
  std::vector<std::string> labels;  // label names, in the order Scrape::add takes their values
};

// Every metric, in exposition order.
const std::vector<MetricInfo>& metricList();

const MetricInfo* findMetric(std::string_view name);

}  // namespace pgkeel::metrics
