// Tests for `pgkeel drain` and `pgkeel reload`: their usage errors and their README tables.
#include "app/admin_commands.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "../readme_tables.h"

namespace pgkeel::app {
namespace {

int drain(std::vector<std::string> args) {
  return runDrainCommand(std::span<const std::string>(args));
}

int reload(std::vector<std::string> args) {
  return runReloadCommand(std::span<const std::string>(args));
}

// Bad flags and bad values are usage errors (2), before any connection is tried.
TEST(AdminCommands, RejectBadUsage) {
  EXPECT_EQ(drain({"--bogus"}), 2);
  EXPECT_EQ(drain({"--timeout", "soon"}), 2);
  EXPECT_EQ(drain({"--timeout", "5"}), 2);  // durations need a unit
  EXPECT_EQ(drain({"--timeout", "6m"}), 2);
  EXPECT_EQ(drain({"--admin", "127.0.0.1"}), 2);
  EXPECT_EQ(drain({"--admin", "127.0.0.1:0"}), 2);
  EXPECT_EQ(drain({"--admin", "127.0.0.1:70000"}), 2);
  EXPECT_EQ(drain({"--help"}), 0);
  EXPECT_EQ(reload({"--timeout", "1s"}), 2);  // reload waits for nothing
  EXPECT_EQ(reload({"--admin", "nonsense"}), 2);
  EXPECT_EQ(reload({"--help"}), 0);
}

std::set<std::string> documented(const std::string& region) {
  std::set<std::string> names;
  for (const auto& row : docs::tableRows(docs::readmeRegion(region), "flag")) {
    EXPECT_EQ(row.size(), 2u);
    names.insert(docs::unquote(row[0]));
  }
  return names;
}

std::set<std::string> accepted(std::span<const CommandFlag> flags) {
  std::set<std::string> names;
  for (const CommandFlag& flag : flags)
    names.insert(std::string(flag.name) + (*flag.valueName ? " " : "") + flag.valueName);
  return names;
}

// README's tables list exactly the flags each command accepts.
TEST(AdminCommands, ReadmeTablesMatchFlags) {
  EXPECT_EQ(documented("drain-flags"), accepted(drainFlags()));
  EXPECT_EQ(documented("reload-flags"), accepted(reloadFlags()));
}

}  // namespace
}  // namespace pgkeel::app
