// Parsing of the first packet a client sends: StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgkeel::protocol {

enum class StartupKind { Startup, SslRequest, GssEncRequest, CancelRequest };

// Protocol 3.0 keys are 4 bytes; 3.2 (PostgreSQL 18) allows 4 to 256.
inline constexpr std::size_t kMinCancelSecret = 4;
inline constexpr std::size_t kMaxCancelSecret = 256;

struct CancelKey {
  std::int32_t processId = 0;
  std::string secret;  // the secret key bytes, as the server sent them
  bool operator==(const CancelKey&) const = default;
};

struct StartupPacket {
  StartupKind kind = StartupKind::Startup;
  std::uint32_t protocolVersion = 0;                            // StartupMessage only
  std::vector<std::pair<std::string, std::string>> parameters;  // StartupMessage only
  CancelKey cancelKey;                                          // CancelRequest only

  std::optional<std::string_view> parameter(std::string_view name) const;
};

enum class ParseStatus { NeedMore, Ok, Invalid };

struct StartupParse {
  ParseStatus status = ParseStatus::NeedMore;
  std::size_t length = 0;  // bytes the packet occupies, when Ok
  StartupPacket packet;
  std::string error;  // when Invalid: a reason fit for a client's ErrorResponse
};

// Parses one start-up packet from the front of `bytes`. Never reads past `bytes`.
StartupParse parseStartup(std::span<const std::uint8_t> bytes);

// The 16 bytes of a CancelRequest for `key`.
std::vector<std::uint8_t> cancelRequestBytes(const CancelKey& key);

}  // namespace pgkeel::protocol
