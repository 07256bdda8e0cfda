// Scrape: the samples of one /metrics request, checked against the metric list, as Prometheus text.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "discovery/routing_table.h"

namespace pgkeel::metrics {

inline constexpr const char* kContentType = "text/plain; version=0.0.4";

class Scrape {
 public:
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
};

// The per-node metrics and the table version from the current routing table.
void addRoutingTable(Scrape& scrape, const discovery::RoutingTable& table);

}  // namespace pgkeel::metrics
