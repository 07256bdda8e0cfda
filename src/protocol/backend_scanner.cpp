// Follows the server's byte stream during start-up to find BackendKeyData and the first
// ReadyForQuery.
#include "protocol/backend_scanner.h"

#include <algorithm>

#include "protocol/messages.h"

namespace pgkeel::protocol {
namespace {

std::int32_t readI32(const std::uint8_t* p) {
  return static_cast<std::int32_t>((std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                                   (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]});
}

char tagOf(BackendTag t) {
  return static_cast<char>(t);
}

}  // namespace

BackendScanner::Feed BackendScanner::feed(std::span<const std::uint8_t> chunk) {
  std::size_t at = 0;
  while (at < chunk.size() && state_ == State::Scanning) {
    if (headerFill_ < header_.size()) {
      if (!takeHeaderByte(chunk[at++])) break;
      continue;
    }
    const std::size_t n = std::min<std::size_t>(bodyLeft_, chunk.size() - at);
    takeBodyBytes(chunk.subspan(at, n));
    at += n;
    if (bodyLeft_ == 0) endMessage();
  }
  Feed result;
  result.state = state_;
  if (state_ == State::Ready) result.readyEnd = at;
  return result;
}

bool BackendScanner::takeHeaderByte(std::uint8_t byte) {
  header_[headerFill_++] = byte;
  if (headerFill_ < header_.size()) return true;
  const std::uint32_t length = static_cast<std::uint32_t>(readI32(header_.data() + 1));
  if (length < 4 || length > kMaxMessageLength) {
    state_ = State::Invalid;
    invalidReason_ = "server sent a message with invalid length " + std::to_string(length);
    return false;
  }
  bodyLeft_ = length - 4;
  bodySeen_ = 0;
  if (bodyLeft_ == 0) endMessage();
  return true;
}

void BackendScanner::takeBodyBytes(std::span<const std::uint8_t> bytes) {
  if (static_cast<char>(header_[0]) == tagOf(BackendTag::BackendKeyData)) {
    for (std::uint8_t b : bytes) {
      if (bodySeen_ < keyBytes_.size()) keyBytes_[bodySeen_] = b;
      ++bodySeen_;
    }
  } else {
    bodySeen_ += static_cast<std::uint32_t>(bytes.size());
  }
  bodyLeft_ -= static_cast<std::uint32_t>(bytes.size());
}

void BackendScanner::endMessage() {
  const char tag = static_cast<char>(header_[0]);
  if (tag == tagOf(BackendTag::BackendKeyData) && bodySeen_ >= 4 + kMinCancelSecret &&
      bodySeen_ <= keyBytes_.size())
    cancelKey_ = CancelKey{readI32(keyBytes_.data()),
                           std::string(keyBytes_.begin() + 4, keyBytes_.begin() + bodySeen_)};
  if (tag == tagOf(BackendTag::ErrorResponse)) sawError_ = true;
  if (tag == tagOf(BackendTag::ReadyForQuery)) state_ = State::Ready;
  headerFill_ = 0;
}

}  // namespace pgkeel::protocol
