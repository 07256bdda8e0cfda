// Tests for the sidecar config file: every key read, defaults, and every problem with key and line.
#include "inject/sidecar_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace pgkeel::inject {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

SidecarConfigResult parse(const std::string& text) {
  return parseSidecarConfig(text, "sidecar.yaml");
}

// The spec's example file loads with every value as written.
TEST(InjectSidecarConfig, ReadsEveryKey) {
  SidecarConfigResult result = parse(R"(
image: ghcr.io/pgkeel/pgkeel:0.1.0
imagePullPolicy: Always
failurePolicy: Fail
listenAddress: 127.0.0.2
ports: {primary: 7432, replica: 7433, admin: 9500}
drainTimeout: 1m30s
resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {memory: 128Mi, cpu: "1"}}
securityContext: {runAsNonRoot: true, runAsUser: 1000, readOnlyRootFilesystem: true,
                  capabilities: {drop: [ALL]}}
config: {probe_interval: 1s, probe_from_secret: true, log_format: json, etcd_url: "http://e:2379"}
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
  const SidecarConfig& c = result.config;
  EXPECT_EQ(c.image, "ghcr.io/pgkeel/pgkeel:0.1.0");
  EXPECT_EQ(c.imagePullPolicy, "Always");
  EXPECT_EQ(c.failurePolicy, FailurePolicy::Fail);
  EXPECT_EQ(c.listenAddress, "127.0.0.2");
  EXPECT_EQ(c.primaryPort, 7432);
  EXPECT_EQ(c.replicaPort, 7433);
  EXPECT_EQ(c.adminPort, 9500);
  EXPECT_EQ(c.drainTimeout, "90s");
  EXPECT_EQ(c.resources, json::parse(R"({"requests":{"cpu":"50m","memory":"32Mi"},
                                         "limits":{"memory":"128Mi","cpu":"1"}})"));
  EXPECT_EQ(c.securityContext, json::parse(R"({"runAsNonRoot":true,"runAsUser":1000,
      "readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"]}})"));
  using Entry = std::pair<std::string, std::string>;
  EXPECT_THAT(c.config,
              ElementsAre(Entry{"probe_interval", "1s"}, Entry{"probe_from_secret", "true"},
                          Entry{"log_format", "json"}, Entry{"etcd_url", "http://e:2379"}));
}

// A file with only the image gets the documented defaults; `securityContext: {}` keeps the default.
TEST(InjectSidecarConfig, DefaultsAndEmptySecurityContext) {
  SidecarConfigResult result = parse("image: pgkeel:1\nsecurityContext: {}\nconfig: {}\n");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
  EXPECT_EQ(result.config.imagePullPolicy, "IfNotPresent");
  EXPECT_EQ(result.config.failurePolicy, FailurePolicy::Ignore);
  EXPECT_EQ(result.config.drainTimeout, "25s");
  EXPECT_EQ(result.config.securityContext, defaultSecurityContext());
  EXPECT_EQ(result.config.resources, defaultResources());
  EXPECT_EQ(result.config.securityContext["runAsUser"], 65532);
  EXPECT_TRUE(result.config.config.empty());
  EXPECT_EQ(parse("image: pgkeel:1\nresources: {}\n").config.resources, json::object());
}

// Every mistake is reported at once, each naming the file, the line and the key.
TEST(InjectSidecarConfig, EveryProblemWithKeyAndLine) {
  SidecarConfigResult result = parse(R"(image: pgkeel:1
imagePullPolicy: Sometimes
failurePolicy: fail
listenAddres: 127.0.0.1
ports:
  primary: 6432
  replica: 0
  extra: 1
drainTimeout: 25
resources: {requests: {cpu: lots}, limit: {memory: 1Gi}}
securityContext: {runAsUser: "x", rootless: true}
config:
  probe_interval: 1
  listen_primary: 0.0.0.0:1
  probe_intervl: 1s
  candidates: db:5432
image: again
)");
  EXPECT_THAT(
      result.errors,
      ElementsAre(
          "sidecar.yaml:2: key 'imagePullPolicy': 'Sometimes' is not one of Always, IfNotPresent, "
          "Never",
          "sidecar.yaml:3: key 'failurePolicy': 'fail' is not one of Ignore, Fail",
          "sidecar.yaml:4: key 'listenAddres': unknown key (did you mean 'listenAddress'?)",
          "sidecar.yaml:7: key 'ports.replica': must be between 1 and 65535, not 0",
          "sidecar.yaml:8: key 'ports.extra': unknown key",
          "sidecar.yaml:9: key 'drainTimeout': needs a unit, e.g. 2s",
          "sidecar.yaml:10: key 'resources.requests.cpu': 'lots' is not a Kubernetes quantity, "
          "e.g. 50m, 1.5 or 32Mi",
          "sidecar.yaml:10: key 'resources.limit': unknown key; resources take requests, limits "
          "and claims",
          "sidecar.yaml:11: key 'securityContext.runAsUser': must be an integer",
          "sidecar.yaml:11: key 'securityContext.rootless': unknown key; not a field of a "
          "container securityContext",
          "sidecar.yaml:13: key 'config.probe_interval': needs a unit, e.g. 2s",
          "sidecar.yaml:14: key 'config.listen_primary': is set by the webhook from the sidecar "
          "config's listenAddress and ports",
          "sidecar.yaml:15: key 'config.probe_intervl': not a pgkeel configuration key (did you "
          "mean 'probe_interval'?)",
          "sidecar.yaml:16: key 'config.candidates': is set by the webhook from annotation "
          "pgkeel.io/candidates",
          "sidecar.yaml:17: key 'image': is set twice"));
}

// The image is required; an empty file says so.
TEST(InjectSidecarConfig, ImageIsRequired) {
  EXPECT_THAT(parse("").errors, ElementsAre("sidecar.yaml: key 'image': is required"));
  EXPECT_THAT(parse("imagePullPolicy: Always\n").errors,
              ElementsAre("sidecar.yaml: key 'image': is required"));
  EXPECT_THAT(parse("image:\n").errors, ElementsAre("sidecar.yaml:1: key 'image': needs a value"));
}

// Syntax errors, a top level that is no map, nested maps given as text, clashing ports.
TEST(InjectSidecarConfig, ShapeProblems) {
  EXPECT_THAT(parse("image: [\n").errors,
              ElementsAre(HasSubstr("sidecar.yaml:2: YAML syntax error")));
  EXPECT_THAT(parse("- image\n").errors,
              ElementsAre("sidecar.yaml:1: the top level must be a map of keys, e.g. image: IMAGE",
                          "sidecar.yaml: key 'image': is required"));
  EXPECT_THAT(parse("image: x\nports: 6432\n").errors,
              ElementsAre("sidecar.yaml:2: key 'ports': must be a map"));
  EXPECT_THAT(parse("image: x\nports: {admin: 6432}\n").errors,
              ElementsAre("sidecar.yaml: key 'ports': primary, replica and admin need three "
                          "different ports"));
  EXPECT_THAT(parse("image: x\nconfig: [a]\n").errors,
              ElementsAre(HasSubstr("sidecar.yaml:2: key 'config': must be a map")));
  EXPECT_THAT(parse("image: x\nresources: {requests: {cpu: [1]}}\n").errors,
              ElementsAre(HasSubstr("key 'resources.requests.cpu': must be a quantity")));
}

// loadSidecarConfig reads a file, and says when it cannot.
TEST(InjectSidecarConfig, LoadsFiles) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / "pgkeel-sidecar-test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "sidecar.yaml") << "image: pgkeel:2\n";
  SidecarConfigResult result = loadSidecarConfig((dir / "sidecar.yaml").string());
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(result.config.image, "pgkeel:2");
  EXPECT_THAT(loadSidecarConfig((dir / "missing.yaml").string()).errors,
              ElementsAre(HasSubstr("missing.yaml: cannot read: No such file")));
  EXPECT_THAT(loadSidecarConfig(dir.string()).errors, ElementsAre(HasSubstr("is a directory")));
  std::filesystem::remove_all(dir);
}

// Quoted scalars stay text; plain ones are typed as YAML 1.2's core schema says.
TEST(InjectSidecarConfig, SecurityContextTypes) {
  SidecarConfigResult result = parse(
      "image: x\nsecurityContext: {runAsUser: 10, runAsNonRoot: True, procMount: Default,\n"
      "  seLinuxOptions: {level: \"s0:c123\", user: '5'}}\n");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
  EXPECT_EQ(result.config.securityContext,
            json::parse(R"({"runAsUser":10,"runAsNonRoot":true,"procMount":"Default",
                            "seLinuxOptions":{"level":"s0:c123","user":"5"}})"));
}

}  // namespace
}  // namespace pgkeel::inject
