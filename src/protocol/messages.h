// PostgreSQL protocol constants: start-up request codes and message type bytes, named as in the
// docs.
#pragma once

#include <cstdint>

namespace pgkeel::protocol {

// Start-up packets carry a 32-bit code instead of a type byte.
inline constexpr std::uint32_t kProtocolVersion3 = 196608;  // 3.0
inline constexpr std::uint32_t kCancelRequestCode = 80877102;
inline constexpr std::uint32_t kSslRequestCode = 80877103;
inline constexpr std::uint32_t kGssEncRequestCode = 80877104;

// PostgreSQL's own limit (MAX_STARTUP_PACKET_LENGTH) for a start-up packet.
inline constexpr std::uint32_t kMaxStartupPacketLength = 10000;
// Largest regular message we accept a header for (PostgreSQL's PQ_LARGE_MESSAGE_LIMIT is 1 GB).
inline constexpr std::uint32_t kMaxMessageLength = 0x40000000;

// Backend (server to client) message types that pgkeel inspects.
enum class BackendTag : char {
  Authentication = 'R',
  BackendKeyData = 'K',
  ErrorResponse = 'E',
  NoticeResponse = 'N',
  ParameterStatus = 'S',
  ReadyForQuery = 'Z',
};

// Single-byte answers to SSLRequest / GSSENCRequest.
inline constexpr char kSslAccepted = 'S';
inline constexpr char kGssAccepted = 'G';
inline constexpr char kEncryptionRefused = 'N';

}  // namespace pgkeel::protocol
