// Tests for the command line: precedence, pg_gateway arguments, flag forms, check-config, reload.
#include "config/command_line.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/flags.h"
#include "config/keys.h"

namespace pgkeel::config {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string dataFile(const std::string& name) {
  return std::string(PGKEEL_SOURCE_DIR) + "/tests/data/config/" + name;
}

ParseResult parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  return parseCommandLine(std::span<const std::string>(args), mapEnv(std::move(env)));
}

// A YAML file in a directory of this test process, removed at the end of the test.
class TempFile {
 public:
  TempFile() {
    path_ = std::filesystem::temp_directory_path() /
            ("pgkeel_config_test_" + std::to_string(::getpid()) + ".yaml");
  }
  ~TempFile() { std::filesystem::remove(path_); }
  void write(const std::string& text) const { std::ofstream(path_) << text; }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// defaults < file < CANDIDATES < flags, key by key.
TEST(CommandLine, PrecedenceIsFileThenCandidatesEnvThenFlags) {
  std::string file = dataFile("file_layer.yaml");
  ParseResult fileOnly = parse({"--config", file});
  ASSERT_EQ(fileOnly.action, Action::Run) << ::testing::PrintToString(fileOnly.errors);
  EXPECT_THAT(fileOnly.options.candidates, ElementsAre("file-0:5432", "file-1:5432"));
  EXPECT_EQ(fileOnly.options.probeInterval, Millis(3000));
  EXPECT_EQ(fileOnly.options.probeTimeout, Options{}.probeTimeout);

  ParseResult withEnv = parse({"--config", file}, {{"CANDIDATES", "env-0:5432,env-1:5432"}});
  EXPECT_THAT(withEnv.options.candidates, ElementsAre("env-0:5432", "env-1:5432"));
  EXPECT_EQ(withEnv.options.probeInterval, Millis(3000));

  ParseResult withFlags =
      parse({"--candidates", "flag-0:5432", "--config", file, "--probe-interval", "250ms"},
            {{"CANDIDATES", "env-0:5432"}});
  ASSERT_EQ(withFlags.action, Action::Run) << ::testing::PrintToString(withFlags.errors);
  EXPECT_THAT(withFlags.options.candidates, ElementsAre("flag-0:5432"));
  EXPECT_EQ(withFlags.options.probeInterval, Millis(250));
  EXPECT_EQ(withFlags.options.workers, 2);
}

// An empty CANDIDATES is ignored rather than clearing the file's list.
TEST(CommandLine, EmptyCandidatesEnvIsIgnored) {
  ParseResult result = parse({"--config", dataFile("file_layer.yaml")}, {{"CANDIDATES", " "}});
  EXPECT_THAT(result.options.candidates, ElementsAre("file-0:5432", "file-1:5432"));
}

// A bad CANDIDATES value is reported as coming from the environment.
TEST(CommandLine, BadCandidatesEnvNamesTheVariable) {
  ParseResult result = parse({}, {{"CANDIDATES", "db-0:5432,db-1"}});
  EXPECT_EQ(result.action, Action::Invalid);
  EXPECT_THAT(result.errors,
              Contains("environment CANDIDATES: 'db-1' is not ADDR:PORT, e.g. 10.0.0.5:5432 or "
                       "[::1]:5432"));
}

// pg_gateway's "<listen_addr> <listen_port>" sets listen_primary.
TEST(CommandLine, PgGatewayPositionalArgsSetListenPrimary) {
  ParseResult result = parse({"127.0.0.1", "7432"}, {{"CANDIDATES", "h1:5432,h2:5432"}});
  ASSERT_EQ(result.action, Action::Run) << ::testing::PrintToString(result.errors);
  EXPECT_EQ(result.options.listenPrimary, "127.0.0.1:7432");
  EXPECT_THAT(result.options.candidates, ElementsAre("h1:5432", "h2:5432"));

  result = parse({"--workers", "2", "::1", "7432", "--candidates=h:1"});
  ASSERT_EQ(result.action, Action::Run) << ::testing::PrintToString(result.errors);
  EXPECT_EQ(result.options.listenPrimary, "[::1]:7432");
}

// A bad port, the wrong number of positional arguments, or a clash with the flag are errors.
TEST(CommandLine, PositionalArgumentProblems) {
  ParseResult result = parse({"0.0.0.0", "http", "--candidates", "h:1"});
  EXPECT_THAT(result.errors, ElementsAre("arguments <listen_addr> <listen_port>: '0.0.0.0:http': "
                                         "the port must be a number from 1 to 65535"));
  result = parse({"0.0.0.0", "--candidates", "h:1"});
  EXPECT_THAT(result.errors, ElementsAre("expected no positional arguments or two, <listen_addr> "
                                         "<listen_port>; got 1"));
  result = parse({"0.0.0.0", "6432", "--listen-primary", "0.0.0.0:7432", "--candidates", "h:1"});
  EXPECT_THAT(result.errors, ElementsAre(HasSubstr("both set listen_primary")));
}

// --flag=value works like --flag value, including an empty value and a value with '='.
TEST(CommandLine, FlagEqualsValueForm) {
  ParseResult result = parse({"--candidates=h1:5432,h2:5432", "--workers=3",
                              "--listen-replica=", "--probe=dbname=app user=probe"});
  ASSERT_EQ(result.action, Action::Run) << ::testing::PrintToString(result.errors);
  EXPECT_THAT(result.options.candidates, ElementsAre("h1:5432", "h2:5432"));
  EXPECT_EQ(result.options.workers, 3);
  EXPECT_EQ(result.options.listenReplica, "");
  EXPECT_EQ(result.options.probe, "dbname=app user=probe");
}

// Boolean flags take true/false, on/off, yes/no and 1/0 in both flag forms.
TEST(CommandLine, BooleanFlagsAcceptEveryForm) {
  const std::vector<std::pair<std::string, bool>> forms{
      {"true", true},   {"on", true},   {"yes", true}, {"1", true},
      {"false", false}, {"off", false}, {"no", false}, {"0", false}};
  for (const auto& [text, expected] : forms) {
    ParseResult spaced = parse({"--candidates", "h:1", "--replica-fallback", text});
    ParseResult joined = parse({"--candidates", "h:1", "--tcp-keepalive=" + text});
    ASSERT_EQ(spaced.action, Action::Run) << text;
    ASSERT_EQ(joined.action, Action::Run) << text;
    EXPECT_EQ(spaced.options.replicaFallback, expected) << text;
    EXPECT_EQ(joined.options.tcpKeepalive, expected) << text;
  }
  EXPECT_THAT(parse({"--candidates", "h:1", "--tcp-keepalive", "maybe"}).errors,
              ElementsAre("flag --tcp-keepalive: 'maybe' is not a boolean; use true/false, on/off, "
                          "yes/no or 1/0"));
}

// Running without any candidate is an error that says where to set them.
TEST(CommandLine, NoCandidatesIsAnError) {
  ParseResult result = parse({});
  EXPECT_EQ(result.action, Action::Invalid);
  EXPECT_EQ(result.exitCode, 2);
  EXPECT_THAT(result.errors,
              ElementsAre("no candidates: set --candidates, CANDIDATES or candidates:"));
}

// Problems from the command line, the file and the composition are all reported at once.
TEST(CommandLine, ReportsEveryProblemAtOnce) {
  std::string file = dataFile("many_problems.yaml");
  ParseResult result = parse({"--probe-intervall", "1s", "--config", file, "--workers", "x",
                              "--probe-timeout", "2", "--help=yes", "--log-level"});
  EXPECT_EQ(result.action, Action::Invalid);
  EXPECT_THAT(result.errors,
              Contains("unknown flag --probe-intervall (did you mean --probe-interval?)"));
  EXPECT_THAT(result.errors, Contains("flag --help takes no value"));
  EXPECT_THAT(result.errors, Contains("flag --log-level needs a value: --log-level LEVEL"));
  EXPECT_THAT(result.errors, Contains(file + ":7: key 'probe_interval': needs a unit, e.g. 2s"));
  EXPECT_THAT(result.errors, Contains("flag --workers: 'x' is not a whole number"));
  EXPECT_THAT(result.errors, Contains("flag --probe-timeout: needs a unit, e.g. 2s"));
  // 4 from the command line itself (the "1s" after the unknown flag is a lone positional
  // argument), 11 from the file, 2 flag values, and "no candidates" (the file's list was bad).
  EXPECT_EQ(result.errors.size(), 4u + 11u + 2u + 1u);
}

// A flag followed by another flag has no value; single-dash words are unknown flags.
TEST(CommandLine, MissingValueAndSingleDash) {
  ParseResult result = parse({"--candidates", "--workers", "2", "-h"});
  EXPECT_THAT(result.errors,
              Contains("flag --candidates needs a value: --candidates HOST:PORT,..."));
  EXPECT_THAT(result.errors, Contains("unknown flag -h (flags start with --, e.g. --help)"));
}

// Both listeners on one address is reported after all sources are merged.
TEST(CommandLine, SameListenersIsAnError) {
  ParseResult result = parse({"--candidates", "h:1", "--listen-replica", "0.0.0.0:6432"});
  EXPECT_THAT(result.errors,
              ElementsAre("listen_primary and listen_replica are both 0.0.0.0:6432"));
}

// --help prints usage with every flag, its description and its default, and exits 0.
TEST(CommandLine, HelpListsEveryFlagWithDefault) {
  ParseResult result = parse({"--workers", "bad", "--help"});
  EXPECT_EQ(result.action, Action::Help);
  EXPECT_EQ(result.exitCode, 0);
  for (const Flag& flag : flags()) {
    EXPECT_THAT(result.output, HasSubstr(flag.usageName())) << flag.name;
    EXPECT_THAT(result.output, HasSubstr(flag.description)) << flag.name;
  }
  EXPECT_THAT(result.output, HasSubstr("(default: 1s)"));
  EXPECT_THAT(result.output, HasSubstr("(default: 0.0.0.0:6432)"));
}

// --version prints the version and exits 0.
TEST(CommandLine, VersionPrintsVersion) {
  ParseResult result = parse({"--version"});
  EXPECT_EQ(result.action, Action::Version);
  EXPECT_EQ(result.exitCode, 0);
  EXPECT_THAT(result.output, HasSubstr("pgkeel "));
}

// The argc/argv overload skips the program name and reads the environment map.
TEST(CommandLine, ArgcArgvOverload) {
  std::vector<std::string> words{"pgkeel", "--workers", "5"};
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  ParseResult result = parseCommandLine(static_cast<int>(argv.size()), argv.data(),
                                        std::map<std::string, std::string>{{"CANDIDATES", "h:1"}});
  ASSERT_EQ(result.action, Action::Run) << ::testing::PrintToString(result.errors);
  EXPECT_EQ(result.options.workers, 5);
}

// A good file checks out: exit 0 and "configuration OK".
TEST(CheckConfig, GoodFileExitsZero) {
  ParseResult result = parse({"--check-config", dataFile("valid.yaml")});
  EXPECT_EQ(result.action, Action::CheckConfig);
  EXPECT_EQ(result.exitCode, 0);
  EXPECT_EQ(result.output, "configuration OK\n");
  EXPECT_THAT(result.errors, IsEmpty());
}

// A bad file lists every problem and exits 1.
TEST(CheckConfig, BadFileExitsOneWithEveryProblem) {
  ParseResult result = parse({"--check-config=" + dataFile("many_problems.yaml")});
  EXPECT_EQ(result.action, Action::CheckConfig);
  EXPECT_EQ(result.exitCode, 1);
  EXPECT_EQ(result.errors.size(), 11u);
  EXPECT_EQ(result.output, "");
  result = parse({"--check-config", dataFile("same_listeners.yaml")});
  EXPECT_EQ(result.exitCode, 1);
  EXPECT_THAT(result.errors,
              ElementsAre(dataFile("same_listeners.yaml") +
                          ": listen_primary and listen_replica are both 0.0.0.0:6432"));
}

// check-config reads the file alone: no environment, no other flags, no "no candidates".
TEST(CheckConfig, IgnoresEnvironmentAndOtherFlags) {
  ParseResult result = parse({"--check-config", dataFile("empty.yaml"), "--workers", "9999"},
                             {{"CANDIDATES", "not-an-address"}});
  EXPECT_EQ(result.exitCode, 0);
  EXPECT_THAT(result.errors, IsEmpty());
}

// A missing file and a broken command line also fail the check.
TEST(CheckConfig, MissingFileOrBadFlagExitsOne) {
  EXPECT_EQ(parse({"--check-config", "/nonexistent.yaml"}).exitCode, 1);
  ParseResult result = parse({"--check-config", dataFile("valid.yaml"), "--bogus"});
  EXPECT_EQ(result.exitCode, 1);
  EXPECT_THAT(result.errors, ElementsAre("unknown flag --bogus (see --help)"));
  EXPECT_EQ(parse({"--check-config"}).action, Action::Invalid);
}

// A reload reads the file again and applies the original flags on top of it.
TEST(Reload, ReadsFileAgainAndKeepsFlags) {
  TempFile file;
  file.write("candidates: [a:5432]\nprobe_interval: 1s\nworkers: 2\n");
  ParseResult first = parse({"--config", file.path(), "--workers", "4"});
  ASSERT_EQ(first.action, Action::Run) << ::testing::PrintToString(first.errors);
  EXPECT_EQ(first.options.workers, 4);

  file.write("candidates: [b:5432]\nprobe_interval: 2s\nworkers: 3\n");
  LoadResult reloaded = reloadOptions(first.invocation, mapEnv({}));
  ASSERT_TRUE(reloaded.ok()) << ::testing::PrintToString(reloaded.errors);
  EXPECT_THAT(reloaded.options.candidates, ElementsAre("b:5432"));
  EXPECT_EQ(reloaded.options.probeInterval, Millis(2000));
  EXPECT_EQ(reloaded.options.workers, 4);
  EXPECT_EQ(changedKeys(first.options, reloaded.options),
            (std::vector<std::string>{"candidates", "probe_interval"}));
}

// A reload of a broken file returns every problem and leaves the caller's options alone.
TEST(Reload, BadFileReturnsErrors) {
  TempFile file;
  file.write("candidates: [a:5432]\n");
  ParseResult first = parse({"--config", file.path()});
  ASSERT_EQ(first.action, Action::Run);
  file.write("candidates: [a:5432]\nprobe_interval: 2\nworkers: lots\n");
  LoadResult reloaded = reloadOptions(first.invocation, mapEnv({}));
  EXPECT_THAT(reloaded.errors,
              ElementsAre(file.path() + ":2: key 'probe_interval': needs a unit, e.g. 2s",
                          file.path() + ":3: key 'workers': 'lots' is not a whole number"));
  EXPECT_EQ(first.options.probeInterval, Options{}.probeInterval);
}

}  // namespace
}  // namespace pgkeel::config
