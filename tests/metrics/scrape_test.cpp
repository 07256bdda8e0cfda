// Tests for Scrape: the exposition is valid Prometheus text and carries the routing table.
#include "metrics/scrape.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "metrics/metric_list.h"

namespace pgkeel::metrics {
namespace {

discovery::RoutingTable twoNodeTable() {
  discovery::RoutingTable table;
  table.version = 7;
  discovery::NodeState primary, replica;
  primary.id = 0;
  primary.endpoint = {"10.0.0.1", 5432};
  primary.role = discovery::NodeRole::Primary;
  primary.health = discovery::NodeHealth::Healthy;
  replica.id = 1;
  replica.endpoint = {"10.0.0.2", 5432};
  replica.role = discovery::NodeRole::Replica;
  replica.health = discovery::NodeHealth::Healthy;
  replica.lagBytes = 128;
  replica.lagSeconds = 0.5;
  replica.probeDurations.add(std::chrono::microseconds(300));   // le 0.0005
  replica.probeDurations.add(std::chrono::microseconds(2000));  // le 0.0025
  table.nodes = {primary, replica};
  table.primary = 0;
  return table;
}

// A scrape with a sample for every metric of the list, as app builds one.
Scrape fullScrape() {
  Scrape scrape;
  addRoutingTable(scrape, twoNodeTable());
  for (const MetricInfo& info : metricList()) {
    if (info.name.starts_with("pgkeel_node_") || info.name == "pgkeel_routing_table_version")
      continue;
    if (info.type == MetricType::Histogram) {
      HistogramData data{{0.001, 0.01}, {1, 2, 3}, 0.5};
      scrape.addHistogram(info.name, std::vector<std::string>(info.labels.size(), "x\"y"), data);
      continue;
    }
    scrape.add(info.name, std::vector<std::string>(info.labels.size(), "x\"y"), 3);
  }
  return scrape;
}

// Every line is a comment or `name{labels} value`; each metric has HELP and TYPE before samples.
TEST(Scrape, ExpositionIsValidPrometheusText) {
  const std::regex sample(
      R"re(^(pgkeel_[a-z0-9_]+)(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? ([-+0-9.eE]+|[-+]?Inf|NaN)$)re");
  const std::regex help(R"(^# HELP (pgkeel_[a-z0-9_]+) .+$)");
  const std::regex type(R"(^# TYPE (pgkeel_[a-z0-9_]+) (counter|gauge|histogram)$)");
  const std::regex histogramPart(R"(^(.+)_(bucket|sum|count)$)");
  std::set<std::string> helped, typed, sampled;
  std::istringstream lines(fullScrape().text());
  std::string line;
  std::smatch m;
  while (std::getline(lines, line)) {
    if (std::regex_match(line, m, help)) {
      helped.insert(m[1]);
    } else if (std::regex_match(line, m, type)) {
      typed.insert(m[1]);
      EXPECT_EQ(m[2] == "counter", std::string(m[1]).ends_with("_total")) << line;
    } else {
      ASSERT_TRUE(std::regex_match(line, m, sample)) << "not a sample line: " << line;
      std::string name = m[1];
      std::smatch part;
      if (!typed.count(name) && std::regex_match(name, part, histogramPart)) name = part[1];
      EXPECT_TRUE(helped.count(name) && typed.count(name)) << "no HELP/TYPE before " << line;
      sampled.insert(name);
    }
  }
  std::set<std::string> listed;
  for (const MetricInfo& info : metricList()) listed.insert(info.name);
  EXPECT_EQ(helped, listed);
  EXPECT_EQ(typed, listed);
  EXPECT_EQ(sampled, listed);
}

// A histogram is written as cumulative buckets ending in +Inf, then _sum and _count.
TEST(Scrape, HistogramBucketsAreCumulative) {
  Scrape scrape;
  scrape.addHistogram("pgkeel_server_connect_duration_seconds", {},
                      HistogramData{{0.001, 0.01}, {1, 2, 3}, 0.25});
  const std::string text = scrape.text();
  EXPECT_NE(text.find("pgkeel_server_connect_duration_seconds_bucket{le=\"0.001\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("pgkeel_server_connect_duration_seconds_bucket{le=\"0.01\"} 3"),
            std::string::npos);
  EXPECT_NE(text.find("pgkeel_server_connect_duration_seconds_bucket{le=\"+Inf\"} 6"),
            std::string::npos);
  EXPECT_NE(text.find("pgkeel_server_connect_duration_seconds_count 6"), std::string::npos);
  EXPECT_NE(text.find("pgkeel_server_connect_duration_seconds_sum 0.25"), std::string::npos);
}

// The node metrics come from the table: roles as 1/0 per role, health, lag, version.
TEST(Scrape, RoutingTableBecomesNodeMetrics) {
  Scrape scrape;
  addRoutingTable(scrape, twoNodeTable());
  const std::string text = scrape.text();
  for (const char* expected :
       {"pgkeel_routing_table_version 7",
        R"(pgkeel_node_role{node="10.0.0.1:5432",role="primary"} 1)",
        R"(pgkeel_node_role{node="10.0.0.1:5432",role="replica"} 0)",
        R"(pgkeel_node_role{node="10.0.0.2:5432",role="replica"} 1)",
        R"(pgkeel_node_healthy{node="10.0.0.2:5432"} 1)",
        R"(pgkeel_node_replication_lag_bytes{node="10.0.0.2:5432"} 128)",
        R"(pgkeel_node_replication_lag_seconds{node="10.0.0.2:5432"} 0.5)",
        R"(pgkeel_node_probe_duration_seconds_bucket{node="10.0.0.2:5432",le="0.00025"} 0)",
        R"(pgkeel_node_probe_duration_seconds_bucket{node="10.0.0.2:5432",le="0.0005"} 1)",
        R"(pgkeel_node_probe_duration_seconds_bucket{node="10.0.0.2:5432",le="0.0025"} 2)",
        R"(pgkeel_node_probe_duration_seconds_count{node="10.0.0.2:5432"} 2)",
        R"(pgkeel_node_probe_duration_seconds_sum{node="10.0.0.2:5432"} 0.0023)",
        R"(pgkeel_node_probe_duration_seconds_count{node="10.0.0.1:5432"} 0)"})
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\nin\n" << text;
  EXPECT_EQ(text.find(R"(pgkeel_node_replication_lag_bytes{node="10.0.0.1:5432"})"),
            std::string::npos);
}

}  // namespace
}  // namespace pgkeel::metrics
