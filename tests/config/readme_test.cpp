// Doc tests: README.md's key and flag tables and its example must match the catalogue and parser.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "../readme_tables.h"
#include "config/command_line.h"
#include "config/flags.h"
#include "config/keys.h"
#include "config/loader.h"

namespace pgkeel::config {
namespace {

using pgkeel::docs::readmeRegion;
using pgkeel::docs::tableRows;
using pgkeel::docs::unquote;

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
