// Tests for the ErrorResponse writer: framing, fields and the SQLSTATE catalogue.
#include "protocol/error_response.h"

#include <gtest/gtest.h>

#include <set>

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

}  // namespace
}  // namespace pgkeel::protocol
