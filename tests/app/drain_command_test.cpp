// Tests for `pgkeel drain`: its usage errors and its README table.
#include "app/drain_command.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "../readme_tables.h"

namespace pgkeel::app {
namespace {

int run(std::vector<std::string> args) {
  return runDrainCommand(std::span<const std::string>(args));
}

// Bad flags and bad values are usage errors (2), before any connection is tried.
TEST(DrainCommand, RejectsBadUsage) {
  EXPECT_EQ(run({"--bogus"}), 2);
  EXPECT_EQ(run({"--timeout", "soon"}), 2);
  EXPECT_EQ(run({"--timeout", "5"}), 2);  // durations need a unit
  EXPECT_EQ(run({"--admin", "127.0.0.1"}), 2);
  EXPECT_EQ(run({"--admin", "127.0.0.1:0"}), 2);
  EXPECT_EQ(run({"--admin", "127.0.0.1:70000"}), 2);
  EXPECT_EQ(run({"--help"}), 0);
}

// README's `pgkeel drain` table lists exactly the flags the command accepts.
TEST(DrainCommand, ReadmeTableMatchesFlags) {
  std::set<std::string> documented, accepted;
  for (const auto& row : docs::tableRows(docs::readmeRegion("drain-flags"), "flag")) {
    ASSERT_EQ(row.size(), 2u);
    documented.insert(docs::unquote(row[0]));
  }
  for (const DrainFlag& flag : drainFlags())
    accepted.insert(std::string(flag.name) + (*flag.valueName ? " " : "") + flag.valueName);
  EXPECT_EQ(documented, accepted);
}

}  // namespace
}  // namespace pgkeel::app
