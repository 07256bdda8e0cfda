// Tests for the flags of `pgkeel inject-webhook`: both spellings, defaults, and every problem.
#include "inject/webhook_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "inject/command.h"

namespace pgkeel::inject {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

WebhookFlagsResult parse(std::vector<std::string> args) {
  return parseWebhookFlags(args);
}

// "--flag value" and "--flag=value" both set their option; the rest keep their defaults.
TEST(InjectWebhookFlags, ReadsBothSpellings) {
  WebhookFlagsResult result =
      parse({"--listen=127.0.0.1:9443", "--tls-cert", "/tls/tls.crt", "--tls-key=/tls/tls.key",
             "--sidecar-config", "/etc/s.yaml", "--log-level", "DEBUG"});
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(result.errors);
  EXPECT_EQ(result.options.listen, "127.0.0.1:9443");
  EXPECT_EQ(result.options.tlsCert, "/tls/tls.crt");
  EXPECT_EQ(result.options.tlsKey, "/tls/tls.key");
  EXPECT_EQ(result.options.sidecarConfig, "/etc/s.yaml");
  EXPECT_EQ(result.options.logLevel, "debug");
  EXPECT_EQ(result.options.logFormat, "text");
  EXPECT_FALSE(result.options.check);
}

// Serving needs the TLS files and the sidecar config; --check needs only the config.
TEST(InjectWebhookFlags, RequiredFlags) {
  EXPECT_THAT(parse({}).errors,
              ElementsAre("--sidecar-config FILE is required", "--tls-cert FILE is required",
                          "--tls-key FILE is required"));
  WebhookFlagsResult check = parse({"--check", "--sidecar-config", "s.yaml"});
  EXPECT_TRUE(check.ok()) << ::testing::PrintToString(check.errors);
  EXPECT_TRUE(check.options.check);
  EXPECT_TRUE(parse({"--help"}).options.help);
}

// Unknown flags (with a suggestion), missing and bad values are each reported.
TEST(InjectWebhookFlags, EveryProblem) {
  EXPECT_THAT(
      parse({"--lisen", "0.0.0.0:8443", "--listen", "nope", "--log-format=xml", "--check=yes",
             "--tls-cert"})
          .errors,
      ElementsAre("unknown flag --lisen (did you mean --listen?)",
                  "unexpected argument '0.0.0.0:8443' (flags start with --, see --help)",
                  HasSubstr("flag --listen: "), HasSubstr("flag --log-format: 'xml'"),
                  "flag --check takes no value", "flag --tls-cert needs a value: --tls-cert FILE"));
}

// --help prints every flag; bad flags exit 2; --check on a bad file exits 1.
TEST(InjectWebhookFlags, CommandExitCodes) {
  std::vector<std::string> help{"--help"};
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(runCommand(help), 0);
  std::string usage = ::testing::internal::GetCapturedStdout();
  for (const WebhookFlag& flag : webhookFlags()) EXPECT_THAT(usage, HasSubstr(flag.usageName()));
  std::vector<std::string> bad{"--nope"};
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(runCommand(bad), 2);
  std::vector<std::string> missing{"--check", "--sidecar-config", "/nonexistent/sidecar.yaml"};
  EXPECT_EQ(runCommand(missing), 1);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("/nonexistent/sidecar.yaml"));
}

}  // namespace
}  // namespace pgkeel::inject
