// Tests for the metric list: naming rules, and README's metric table matching it both ways.
#include "metrics/metric_list.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace pgkeel::metrics {
namespace {

// Rows of README.md's "| metric | type | labels | description |" table: first cell unquoted.
std::map<std::string, std::string> readmeMetricTypes() {
  std::ifstream file(std::string(PGKEEL_SOURCE_DIR) + "/README.md");
  std::map<std::string, std::string> rows;
  std::string line;
  bool inTable = false;
  while (std::getline(file, line)) {
    if (line.rfind("| metric | type | labels | description |", 0) == 0) {
      inTable = true;
      continue;
    }
    if (!inTable) continue;
    if (line.rfind("|", 0) != 0) break;
    if (line.rfind("|---", 0) == 0) continue;
    std::regex row(R"(^\| `([^`]+)` \| (\w+) \|)");
    std::smatch match;
    EXPECT_TRUE(std::regex_search(line, match, row)) << line;
    if (!match.empty()) rows[match[1]] = match[2];
  }
  return rows;
}

// Every name is pgkeel_ snake case, listed once; counters and only counters end in _total.
TEST(MetricList, NamesFollowPrometheusConventions) {
  std::set<std::string> names;
  for (const MetricInfo& info : metricList()) {
    EXPECT_TRUE(names.insert(info.name).second) << info.name << " listed twice";
    EXPECT_TRUE(std::regex_match(info.name, std::regex("^pgkeel_[a-z0-9_]+$"))) << info.name;
    EXPECT_EQ(info.type == MetricType::Counter, info.name.ends_with("_total")) << info.name;
    EXPECT_FALSE(info.help.empty()) << info.name;
  }
}

// README's metric table lists exactly the metrics of the list, each with its type.
TEST(MetricList, ReadmeTableMatchesList) {
  const auto documented = readmeMetricTypes();
  std::map<std::string, std::string> listed;
  for (const MetricInfo& info : metricList()) listed[info.name] = toString(info.type);
  EXPECT_EQ(documented, listed);
}

}  // namespace
}  // namespace pgkeel::metrics
