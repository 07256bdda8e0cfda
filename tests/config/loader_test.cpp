// Tests for loading YAML files: every key, every problem with its key and line, syntax errors.
#include "config/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pgkeel::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string dataFile(const std::string& name) {
  return std::string(PGKEEL_SOURCE_DIR) + "/tests/data/config/" + name;
}

// A file that sets every key changes every field of Options.
TEST(ConfigLoader, LoadsEveryKeyFromValidFile) {
  LoadResult result = loadFile(dataFile("valid.yaml"));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
  const Options& o = result.options;
  EXPECT_EQ(o.listenPrimary, "127.0.0.1:7432");
  EXPECT_EQ(o.listenReplica, "[::1]:7433");
  EXPECT_EQ(o.workers, 4);
  EXPECT_THAT(o.candidates, ElementsAre("db-0.example:5432", "10.0.0.7:5433"));
  EXPECT_EQ(o.probe, "dbname=postgres user=probe application_name='pgkeel probe'");
  EXPECT_EQ(o.probeInterval, Millis(500));
  EXPECT_EQ(o.probeTimeout, Millis(1500));
  EXPECT_EQ(o.unhealthyAfter, 5);
  EXPECT_EQ(o.healthyAfter, 1);
  EXPECT_EQ(o.primaryWait, Millis(90000));
  EXPECT_EQ(o.connectTimeout, Millis(2000));
  EXPECT_FALSE(o.replicaFallback);
  EXPECT_FALSE(o.tcpKeepalive);
  EXPECT_EQ(o.shutdownTimeout, Millis(0));
  EXPECT_EQ(o.logLevel, "debug");
  EXPECT_EQ(o.logFormat, LogFormat::Json);
}

// A file with only comments leaves the base options untouched.
TEST(ConfigLoader, EmptyFileKeepsBase) {
  Options base;
  base.workers = 7;
  LoadResult result = loadFile(dataFile("empty.yaml"), base);
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(result.options.workers, 7);
  EXPECT_EQ(result.options.probeInterval, Options{}.probeInterval);
}

// Every mistake in a file is reported at once, each with file, line and key.
TEST(ConfigLoader, ReportsEveryProblemWithKeyAndLine) {
  std::string file = dataFile("many_problems.yaml");
  LoadResult result = loadFile(file);
  EXPECT_THAT(
      result.errors,
      ElementsAre(
          file + ":2: key 'listen_primary': '0.0.0.0:70000': the port must be a number from 1 to "
                 "65535",
          file + ":3: key 'workers': must be between 0 and 1024, not 2000",
          file + ":6: key 'candidates': 'db-1' is not ADDR:PORT, e.g. 10.0.0.5:5432 or [::1]:5432",
          file + ":7: key 'probe_interval': needs a unit, e.g. 2s",
          file + ":8: key 'probe_timeout': must be at most 1m, not '5m'",
          file + ":9: key 'unhealthy_after': must be between 1 and 1000, not 0",
          file + ":10: key 'replica_fallback': 'maybe' is not a boolean; use true/false, on/off, "
                 "yes/no or 1/0",
          file + ":11: key 'log_level': 'verbose' is not a log level; use trace, debug, info, "
                 "warn, error, critical or off",
          file + ":12: key 'log_format': 'xml' is not a log format; use text or json",
          file + ":13: unknown key 'probe_intervall' (did you mean 'probe_interval'?)",
          file + ":14: key 'probe': must not set host: host and port come from candidates"));
}

// An unknown key is an error with its line, and a near miss gets a suggestion.
TEST(ConfigLoader, UnknownKeyIsAnErrorWithLine) {
  LoadResult result = loadYaml("workers: 2\n\nprobe-timeout: 1s\ncolour: blue\n", "f.yaml");
  EXPECT_THAT(result.errors,
              ElementsAre("f.yaml:3: unknown key 'probe-timeout' (did you mean 'probe_timeout'?)",
                          "f.yaml:4: unknown key 'colour'"));
  EXPECT_EQ(result.options.workers, 2);
}

// A YAML syntax error is reported with the line it is on.
TEST(ConfigLoader, SyntaxErrorReportsLine) {
  std::string file = dataFile("syntax_error.yaml");
  LoadResult result = loadFile(file);
  EXPECT_THAT(result.errors, ElementsAre(file + ":3: YAML syntax error: illegal map value"));
}

// A flow list that never closes is a syntax error at the line where the parser gives up.
TEST(ConfigLoader, UnclosedListIsSyntaxErrorWithLine) {
  LoadResult result = loadYaml("workers: 2\ncandidates: [a:1, b:2\nprobe_interval: 1s\n", "f.yaml");
  EXPECT_THAT(result.errors,
              ElementsAre("f.yaml:3: YAML syntax error: end of sequence flow not found"));
}

// candidates may be one comma-separated string instead of a list.
TEST(ConfigLoader, CandidatesAcceptOneCommaSeparatedString) {
  LoadResult result = loadFile(dataFile("candidates_string.yaml"));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
  EXPECT_THAT(result.options.candidates, ElementsAre("db-0:5432", "db-1:5432", "db-2:5432"));
}

// Each bad list item is reported on its own line; repeats across items on the key's line.
TEST(ConfigLoader, ListItemsReportTheirOwnLines) {
  LoadResult result = loadYaml("candidates:\n  - a:1\n  - b\n  - [c]\n", "f.yaml");
  EXPECT_THAT(result.errors,
              ElementsAre("f.yaml:3: key 'candidates': 'b' is not ADDR:PORT, e.g. 10.0.0.5:5432 or "
                          "[::1]:5432",
                          "f.yaml:4: key 'candidates': items must be text"));
  result = loadYaml("candidates:\n  - a:1\n  - a:1\n", "f.yaml");
  EXPECT_THAT(result.errors, ElementsAre("f.yaml:1: key 'candidates': 'a:1' is listed twice"));
}

// A key given twice is an error naming the first line.
TEST(ConfigLoader, DuplicateKeyIsAnError) {
  LoadResult result = loadYaml("workers: 2\nworkers: 3\n", "f.yaml");
  EXPECT_THAT(result.errors, ElementsAre("f.yaml:2: key 'workers' is set twice (first on line 1)"));
}

// Lists and maps where one value is expected, and a top level that is not a map, are errors.
TEST(ConfigLoader, ShapeErrorsNameKeyAndLine) {
  LoadResult result = loadYaml("workers: [1, 2]\nlog_level:\n  a: b\n", "f.yaml");
  EXPECT_THAT(result.errors,
              ElementsAre("f.yaml:1: key 'workers': expects a single value, not a list",
                          "f.yaml:2: key 'log_level': expects a single value, not a map"));
  result = loadYaml("- workers\n- probe\n", "f.yaml");
  EXPECT_THAT(result.errors, ElementsAre("f.yaml:1: the top level must be a map of keys, e.g. "
                                         "probe_interval: 1s"));
}

// A key with no value is read as empty text, which each key accepts or rejects.
TEST(ConfigLoader, NullValueIsEmptyText) {
  LoadResult result = loadYaml("listen_replica:\nprobe_interval: ~\n", "f.yaml");
  EXPECT_EQ(result.options.listenReplica, "");
  EXPECT_THAT(result.errors, ElementsAre("f.yaml:2: key 'probe_interval': needs a value, e.g. 2s"));
}

// A file that cannot be read is one error naming the file.
TEST(ConfigLoader, MissingFileIsAnError) {
  LoadResult result = loadFile("/nonexistent/pgkeel.yaml");
  EXPECT_THAT(result.errors,
              ElementsAre("/nonexistent/pgkeel.yaml: cannot read: No such file or directory"));
  result = loadFile(std::string(PGKEEL_SOURCE_DIR) + "/tests/data/config");
  EXPECT_THAT(result.errors, ElementsAre(HasSubstr("is a directory")));
}

}  // namespace
}  // namespace pgkeel::config
