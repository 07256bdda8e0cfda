// Doc tests: README.md's key and flag tables and its example must match the catalogue and parser.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "config/command_line.h"
#include "config/flags.h"
#include "config/keys.h"
#include "config/loader.h"

namespace pgkeel::config {
namespace {

// The text between <!-- NAME:begin --> and <!-- NAME:end --> in README.md.
std::string readmeRegion(const std::string& name) {
  std::ifstream file(std::string(PGKEEL_SOURCE_DIR) + "/README.md");
  std::stringstream text;
  text << file.rdbuf();
  std::string readme = text.str();
  std::string begin = "<!-- " + name + ":begin -->", end = "<!-- " + name + ":end -->";
  size_t from = readme.find(begin), to = readme.find(end);
  EXPECT_NE(from, std::string::npos) << begin;
  EXPECT_NE(to, std::string::npos) << end;
  if (from == std::string::npos || to == std::string::npos || to < from) return "";
  return readme.substr(from + begin.size(), to - from - begin.size());
}

std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::stringstream stream(row.substr(1));
  std::string cell;
  while (std::getline(stream, cell, '|')) {
    size_t first = cell.find_first_not_of(' '), last = cell.find_last_not_of(' ');
    out.push_back(first == std::string::npos ? "" : cell.substr(first, last - first + 1));
  }
  return out;
}

// Body rows of the markdown table whose header starts with "| header |"; cells trimmed.
std::vector<std::vector<std::string>> tableRows(const std::string& region,
                                                const std::string& header) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream lines(region);
  std::string line;
  bool inTable = false;
  while (std::getline(lines, line)) {
    if (line.rfind("| " + header + " |", 0) == 0) inTable = true;
    if (!inTable || line.rfind("|", 0) != 0) continue;
    if (line.rfind("|---", 0) != 0 && line.rfind("| " + header + " |", 0) != 0) {
      rows.push_back(cells(line));
    }
  }
  return rows;
}

std::string unquote(const std::string& cell) {
  if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`') {
    return cell.substr(1, cell.size() - 2);
  }
  return cell;
}

// The key table lists exactly the catalogue's keys, each with its true default.
TEST(ReadmeDocs, ConfigKeyTableMatchesCatalogue) {
  std::set<std::string> documented, catalogued;
  for (const auto& row : tableRows(readmeRegion("config-keys"), "key")) {
    ASSERT_EQ(row.size(), 3u) << ::testing::PrintToString(row);
    std::string name = unquote(row[0]);
    documented.insert(name);
    const Key* key = findKey(name);
    if (key == nullptr) continue;
    std::string fallback = key->defaultText();
    EXPECT_EQ(row[1], fallback.empty() ? "(none)" : "`" + fallback + "`") << name;
  }
  for (const Key& key : keys()) catalogued.insert(key.name);
  EXPECT_EQ(documented, catalogued);
}

// The flag table lists exactly the flags the parser accepts, with their value names.
TEST(ReadmeDocs, FlagTableMatchesParser) {
  std::set<std::string> documented, parsed;
  for (const auto& row : tableRows(readmeRegion("flags"), "flag")) {
    ASSERT_EQ(row.size(), 2u) << ::testing::PrintToString(row);
    documented.insert(unquote(row[0]));
  }
  for (const Flag& flag : flags()) parsed.insert(flag.usageName());
  EXPECT_EQ(documented, parsed);
  for (const std::string& usage : documented) {
    std::vector<std::string> args{usage.substr(0, usage.find(' ')), "x"};
    ParseResult result = parseCommandLine(std::span<const std::string>(args), mapEnv({}));
    EXPECT_THAT(
        result.errors,
        ::testing::Not(::testing::Contains(::testing::HasSubstr("unknown flag " + args[0]))));
  }
}

// The example YAML in the README loads without a single problem.
TEST(ReadmeDocs, ExampleConfigLoadsCleanly) {
  std::string region = readmeRegion("config-keys");
  size_t from = region.find("```yaml\n");
  ASSERT_NE(from, std::string::npos);
  from += 8;
  size_t to = region.find("```", from);
  ASSERT_NE(to, std::string::npos);
  LoadResult result = loadYaml(region.substr(from, to - from), "README.md example");
  EXPECT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
  EXPECT_FALSE(result.options.candidates.empty());
}

}  // namespace
}  // namespace pgkeel::config
