// Tests for the ErrorResponse writer: framing, fields and the SQLSTATE catalogue.
#include "protocol/error_response.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace pgkeel::protocol {
namespace {

// The message is 'E', a length that counts itself, then S/V/C/M fields and a terminator.
TEST(ErrorResponse, FramesFieldsInOrder) {
  ErrorFields f;
  f.sqlState = sqlstate::kCannotConnectNow;
  f.message = "no primary";
  const std::string m = errorResponse(f);
  ASSERT_EQ(m[0], 'E');
  const std::uint32_t length = (std::uint32_t(std::uint8_t(m[1])) << 24) |
                               (std::uint32_t(std::uint8_t(m[2])) << 16) |
                               (std::uint32_t(std::uint8_t(m[3])) << 8) | std::uint8_t(m[4]);
  EXPECT_EQ(length, m.size() - 1);
  const std::string body = m.substr(5);
  EXPECT_EQ(body, std::string("SFATAL\0VFATAL\0C57P03\0Mno primary\0\0", 34));
}

// Detail and hint appear only when set; NUL bytes in texts cannot break the framing.
TEST(ErrorResponse, DropsNulBytesAndEmptyFields) {
  ErrorFields f;
  f.severity = Severity::Error;
  f.sqlState = sqlstate::kProtocolViolation;
  f.message = std::string("a\0b", 3);
  f.hint = "try again";
  const std::string body = errorResponse(f).substr(5);
  EXPECT_EQ(body, std::string("SERROR\0VERROR\0C08P01\0Mab\0Htry again\0\0", 37));
}

// Every emitted SQLSTATE has five characters and appears once.
TEST(SqlStateCatalogue, CodesAreWellFormedAndUnique) {
  std::set<std::string_view> seen;
  for (const auto& s : kEmittedSqlStates) {
    EXPECT_EQ(s.code.size(), 5u) << s.name;
    EXPECT_TRUE(seen.insert(s.code).second) << s.code;
  }
}

// README's "Errors pgkeel sends" table lists exactly the SQLSTATEs pgkeel emits, with their names.
TEST(SqlStateCatalogue, ReadmeTableMatchesCatalogue) {
  std::ifstream in(PGKEEL_SOURCE_DIR "/README.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  const auto start = readme.find("### Errors pgkeel sends");
  ASSERT_NE(start, std::string::npos);
  const auto end = readme.find("\n\n", readme.find("|---|", start));
  const std::string table = readme.substr(start, end - start);
  const std::regex row(R"(\| `([0-9A-Z]{5})` ([a-z_]+) \|)");
  std::set<std::string> documented, emitted;
  for (std::sregex_iterator it(table.begin(), table.end(), row), done; it != done; ++it)
    documented.insert((*it)[1].str() + " " + (*it)[2].str());
  for (const auto& s : kEmittedSqlStates)
    emitted.insert(std::string(s.code) + " " + std::string(s.name));
  EXPECT_FALSE(emitted.empty());
  EXPECT_EQ(documented, emitted);
}

}  // namespace
}  // namespace pgkeel::protocol
