// Follows the server's byte stream during start-up to find BackendKeyData and the first
// ReadyForQuery.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "protocol/startup.h"

namespace pgkeel::protocol {

// Incremental: feed it every chunk the server sends, in order. It never copies message bodies
// except the 8 bytes of BackendKeyData; chunks may split headers and bodies anywhere.
class BackendScanner {
 public:
  enum class State { Scanning, Ready, Invalid };

  struct Feed {
    State state = State::Scanning;
    // When Ready: bytes of this chunk up to and including the ReadyForQuery message.
    std::size_t readyEnd = 0;
  };

  Feed feed(std::span<const std::uint8_t> chunk);

  State state() const { return state_; }
  const std::optional<CancelKey>& cancelKey() const { return cancelKey_; }
  bool sawError() const { return sawError_; }  // an ErrorResponse went by (start-up failed)
  const std::string& invalidReason() const { return invalidReason_; }

 private:
  bool takeHeaderByte(std::uint8_t byte);
  void takeBodyBytes(std::span<const std::uint8_t> bytes);
  void endMessage();

  State state_ = State::Scanning;
  std::array<std::uint8_t, 5> header_{};
  std::size_t headerFill_ = 0;
  std::uint32_t bodyLeft_ = 0;  // body bytes of the current message still to come
  std::uint32_t bodySeen_ = 0;
  std::array<std::uint8_t, 4 + kMaxCancelSecret> keyBytes_{};  // BackendKeyData's body
  std::optional<CancelKey> cancelKey_;
  bool sawError_ = false;
  std::string invalidReason_;
};

}  // namespace pgkeel::protocol
