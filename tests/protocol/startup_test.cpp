// Tests for the start-up packet parser: every first-packet kind, partial input and bad input.
#include "protocol/startup.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/messages.h"

namespace pgkeel::protocol {
namespace {

void putU32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

std::vector<std::uint8_t> startupPacket(std::uint32_t version, const std::vector<std::string>& kv) {
  std::vector<std::uint8_t> body;
  putU32(body, version);
  for (const auto& s : kv) {
    body.insert(body.end(), s.begin(), s.end());
    body.push_back(0);
  }
  body.push_back(0);
  std::vector<std::uint8_t> out;
  putU32(out, static_cast<std::uint32_t>(body.size() + 4));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<std::uint8_t> codePacket(std::uint32_t code) {
  std::vector<std::uint8_t> out;
  putU32(out, 8);
  putU32(out, code);
  return out;
}

// A StartupMessage yields its protocol version and parameters in order.
TEST(StartupParser, ParsesStartupMessageParameters) {
  auto bytes = startupPacket(kProtocolVersion3, {"user", "alice", "database", "shop"});
  auto r = parseStartup(bytes);
  ASSERT_EQ(r.status, ParseStatus::Ok);
  EXPECT_EQ(r.length, bytes.size());
  EXPECT_EQ(r.packet.kind, StartupKind::Startup);
  EXPECT_EQ(r.packet.protocolVersion, kProtocolVersion3);
  EXPECT_EQ(r.packet.parameter("user"), "alice");
  EXPECT_EQ(r.packet.parameter("database"), "shop");
  EXPECT_FALSE(r.packet.parameter("options"));
}

// Every proper prefix of a valid packet asks for more bytes rather than failing.
TEST(StartupParser, AsksForMoreOnEveryPrefix) {
  auto bytes = startupPacket(kProtocolVersion3, {"user", "bob"});
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_EQ(parseStartup({bytes.data(), n}).status, ParseStatus::NeedMore) << n;
}

// SSLRequest and GSSENCRequest are recognised by their codes.
TEST(StartupParser, RecognisesEncryptionRequests) {
  EXPECT_EQ(parseStartup(codePacket(kSslRequestCode)).packet.kind, StartupKind::SslRequest);
  EXPECT_EQ(parseStartup(codePacket(kGssEncRequestCode)).packet.kind, StartupKind::GssEncRequest);
}

// A CancelRequest carries the backend's process id and secret key.
TEST(StartupParser, ReadsCancelKey) {
  const CancelKey key{1234, std::string("\xff\x00\x01\x02", 4)};
  auto bytes = cancelRequestBytes(key);
  ASSERT_EQ(bytes.size(), 16u);
  auto r = parseStartup(bytes);
  ASSERT_EQ(r.status, ParseStatus::Ok);
  EXPECT_EQ(r.packet.kind, StartupKind::CancelRequest);
  EXPECT_EQ(r.packet.cancelKey, key);
}

// Protocol 3.2 keys (up to 256 bytes) round-trip; shorter than 4 or longer than 256 are invalid.
TEST(StartupParser, ReadsLongCancelKeysOfProtocol32) {
  const CancelKey key{77, std::string(kMaxCancelSecret, 'k')};
  auto r = parseStartup(cancelRequestBytes(key));
  ASSERT_EQ(r.status, ParseStatus::Ok);
  EXPECT_EQ(r.packet.cancelKey, key);
  EXPECT_EQ(parseStartup(cancelRequestBytes({77, std::string(kMaxCancelSecret + 1, 'k')})).status,
            ParseStatus::Invalid);
  EXPECT_EQ(parseStartup(cancelRequestBytes({77, "abc"})).status, ParseStatus::Invalid);
}

// Lengths outside 8..10000 are rejected before waiting for the body.
TEST(StartupParser, RejectsBadLengths) {
  std::vector<std::uint8_t> tooShort;
  putU32(tooShort, 4);
  putU32(tooShort, kProtocolVersion3);
  EXPECT_EQ(parseStartup(tooShort).status, ParseStatus::Invalid);
  std::vector<std::uint8_t> tooLong;
  putU32(tooLong, kMaxStartupPacketLength + 1);
  putU32(tooLong, kProtocolVersion3);
  EXPECT_EQ(parseStartup(tooLong).status, ParseStatus::Invalid);
}

// An SSLRequest with a wrong length is invalid.
TEST(StartupParser, RejectsSslRequestWithWrongLength) {
  std::vector<std::uint8_t> bytes;
  putU32(bytes, 12);
  putU32(bytes, kSslRequestCode);
  putU32(bytes, 0);
  EXPECT_EQ(parseStartup(bytes).status, ParseStatus::Invalid);
}

// Protocol 2.0 is refused with a message that names the versions.
TEST(StartupParser, RejectsProtocolTwo) {
  auto r = parseStartup(startupPacket(0x20000, {"user", "x"}));
  ASSERT_EQ(r.status, ParseStatus::Invalid);
  EXPECT_NE(r.error.find("2.0"), std::string::npos);
}

// A StartupMessage without a user is invalid, as PostgreSQL says.
TEST(StartupParser, RequiresUser) {
  auto r = parseStartup(startupPacket(kProtocolVersion3, {"database", "x"}));
  ASSERT_EQ(r.status, ParseStatus::Invalid);
  EXPECT_NE(r.error.find("user"), std::string::npos);
}

// A parameter list without its final terminator is invalid.
TEST(StartupParser, RejectsUnterminatedParameters) {
  auto bytes = startupPacket(kProtocolVersion3, {"user", "x"});
  bytes.pop_back();  // drop the list terminator and fix the length
  bytes[3] = static_cast<std::uint8_t>(bytes.size());
  EXPECT_EQ(parseStartup(bytes).status, ParseStatus::Invalid);
}

// Bytes after the packet (pipelined data) are not part of it.
TEST(StartupParser, ReportsLengthWithTrailingBytes) {
  auto bytes = startupPacket(kProtocolVersion3, {"user", "x"});
  const std::size_t length = bytes.size();
  bytes.push_back('Q');
  auto r = parseStartup(bytes);
  ASSERT_EQ(r.status, ParseStatus::Ok);
  EXPECT_EQ(r.length, length);
}

}  // namespace
}  // namespace pgkeel::protocol
