// Doc tests: README's webhook tables (flags, sidecar-config keys, annotations) match the code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "../readme_tables.h"
#include "inject/pod_annotations.h"
#include "inject/sidecar_config.h"
#include "inject/webhook_flags.h"

namespace pgkeel::inject {
namespace {

using docs::readmeRegion;
using docs::tableRows;
using docs::unquote;

std::string defaultCell(const std::string& value) {
  return value.empty() ? "(none)" : "`" + value + "`";
}

// The flag table lists exactly the webhook's flags, each with its value name and default.
TEST(InjectReadme, FlagTableMatchesParser) {
  std::set<std::string> documented, parsed;
  for (const auto& row : tableRows(readmeRegion("inject-flags"), "flag")) {
    ASSERT_EQ(row.size(), 3u) << ::testing::PrintToString(row);
    std::string usage = unquote(row[0]);
    documented.insert(usage);
    const WebhookFlag* flag = findWebhookFlag(usage.substr(0, usage.find(' ')));
    if (flag != nullptr) {
      EXPECT_EQ(row[1], defaultCell(flag->defaultText())) << usage;
    }
  }
  for (const WebhookFlag& flag : webhookFlags()) parsed.insert(flag.usageName());
  EXPECT_EQ(documented, parsed);
}

// The sidecar-config table lists exactly the file's keys, each with its true default.
TEST(InjectReadme, SidecarConfigTableMatchesCatalogue) {
  std::set<std::string> documented, catalogued;
  for (const auto& row : tableRows(readmeRegion("sidecar-config"), "key")) {
    ASSERT_EQ(row.size(), 3u) << ::testing::PrintToString(row);
    std::string name = unquote(row[0]);
    documented.insert(name);
    for (const SidecarKey& key : sidecarKeys()) {
      if (key.name == name) {
        EXPECT_EQ(row[1], defaultCell(key.show(SidecarConfig{}))) << name;
      }
    }
  }
  for (const SidecarKey& key : sidecarKeys()) catalogued.insert(key.name);
  EXPECT_EQ(documented, catalogued);
}

// The annotation table lists exactly the annotations the webhook knows, with their values.
TEST(InjectReadme, AnnotationTableMatchesCatalogue) {
  std::set<std::pair<std::string, std::string>> documented, catalogued;
  for (const auto& row : tableRows(readmeRegion("inject-annotations"), "annotation")) {
    ASSERT_EQ(row.size(), 3u) << ::testing::PrintToString(row);
    documented.emplace(unquote(row[0]), unquote(row[1]));
  }
  for (const Annotation& a : annotations()) catalogued.emplace(a.name, a.valueName);
  EXPECT_EQ(documented, catalogued);
}

// The README's example sidecar config loads without a single problem.
TEST(InjectReadme, ExampleSidecarConfigLoads) {
  std::string region = readmeRegion("sidecar-config");
  size_t from = region.find("```yaml\n");
  ASSERT_NE(from, std::string::npos);
  from += 8;
  size_t to = region.find("```", from);
  ASSERT_NE(to, std::string::npos);
  SidecarConfigResult result = parseSidecarConfig(region.substr(from, to - from), "README.md");
  EXPECT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
}

}  // namespace
}  // namespace pgkeel::inject
