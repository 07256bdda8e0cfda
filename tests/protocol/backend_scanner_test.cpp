// Tests for the backend scanner: finding BackendKeyData and ReadyForQuery across arbitrary splits.
#include "protocol/backend_scanner.h"

#include <gtest/gtest.h>

#include <string>

namespace pgkeel::protocol {
namespace {

std::string message(char tag, const std::string& body) {
  std::string out(1, tag);
  const auto length = static_cast<std::uint32_t>(body.size() + 4);
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(length >> shift));
  return out + body;
}

std::string int32(std::uint32_t v) {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
  return out;
}

// The start-up answer of a real server: AuthenticationOk, ParameterStatus, BackendKeyData, RFQ.
std::string serverStartup() {
  return message('R', int32(0)) + message('S', std::string("TimeZone\0UTC\0", 13)) +
         message('K', int32(4242) + int32(0xdeadbeef)) + message('Z', "I");
}

std::span<const std::uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// In one chunk: the key is read and ReadyForQuery ends exactly at the end of the chunk.
TEST(BackendScanner, FindsKeyAndReadyInOneChunk) {
  const std::string bytes = serverStartup();
  BackendScanner scanner;
  auto feed = scanner.feed(bytesOf(bytes));
  ASSERT_EQ(feed.state, BackendScanner::State::Ready);
  EXPECT_EQ(feed.readyEnd, bytes.size());
  ASSERT_TRUE(scanner.cancelKey());
  EXPECT_EQ(scanner.cancelKey()->processId, 4242);
  EXPECT_EQ(scanner.cancelKey()->secret, int32(0xdeadbeef));
}

// Fed one byte at a time, the result is the same: headers and bodies may split anywhere.
TEST(BackendScanner, HandlesOneByteChunks) {
  const std::string bytes = serverStartup();
  BackendScanner scanner;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto feed = scanner.feed(bytesOf(bytes.substr(i, 1)));
    EXPECT_EQ(feed.state == BackendScanner::State::Ready, i + 1 == bytes.size()) << i;
  }
  ASSERT_TRUE(scanner.cancelKey());
  EXPECT_EQ(scanner.cancelKey()->processId, 4242);
}

// A protocol 3.2 BackendKeyData carries a longer secret; all of it is kept.
TEST(BackendScanner, KeepsLongSecretOfProtocol32) {
  const std::string secret(32, 's');
  const std::string bytes = message('K', int32(9) + secret) + message('Z', "I");
  BackendScanner scanner;
  ASSERT_EQ(scanner.feed(bytesOf(bytes)).state, BackendScanner::State::Ready);
  ASSERT_TRUE(scanner.cancelKey());
  EXPECT_EQ(scanner.cancelKey()->processId, 9);
  EXPECT_EQ(scanner.cancelKey()->secret, secret);
}

// Bytes after ReadyForQuery in the same chunk are left for the caller.
TEST(BackendScanner, StopsRightAfterReadyForQuery) {
  const std::string bytes = serverStartup() + message('N', "notice");
  BackendScanner scanner;
  auto feed = scanner.feed(bytesOf(bytes));
  EXPECT_EQ(feed.state, BackendScanner::State::Ready);
  EXPECT_EQ(feed.readyEnd, serverStartup().size());
}

// An ErrorResponse (failed authentication) is noticed and does not end the scan.
TEST(BackendScanner, NoticesErrorResponse) {
  BackendScanner scanner;
  auto feed = scanner.feed(bytesOf(message('E', std::string("SFATAL\0", 7) + '\0')));
  EXPECT_EQ(feed.state, BackendScanner::State::Scanning);
  EXPECT_TRUE(scanner.sawError());
  EXPECT_FALSE(scanner.cancelKey());
}

// A length below 4 cannot frame a message.
TEST(BackendScanner, RejectsImpossibleLength) {
  BackendScanner scanner;
  auto feed = scanner.feed(bytesOf(std::string("R\0\0\0\x02", 5)));
  EXPECT_EQ(feed.state, BackendScanner::State::Invalid);
  EXPECT_FALSE(scanner.invalidReason().empty());
}

}  // namespace
}  // namespace pgkeel::protocol
