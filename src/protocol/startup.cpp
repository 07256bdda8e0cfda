// Parsing of the first packet a client sends: StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest.
#include "protocol/startup.h"

#include "protocol/messages.h"

namespace pgkeel::protocol {
namespace {

std::uint32_t readU32(std::span<const std::uint8_t> b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
         (std::uint32_t{b[at + 2]} << 8) | std::uint32_t{b[at + 3]};
}

void writeU32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

StartupParse invalid(std::string reason) {
  StartupParse r;
  r.status = ParseStatus::Invalid;
  r.error = std::move(reason);
  return r;
}

// Reads a NUL-terminated string starting at `at`; empty optional when no NUL before `end`.
std::optional<std::string> readCString(std::span<const std::uint8_t> b, std::size_t& at,
                                       std::size_t end) {
  std::size_t start = at;
  while (at < end && b[at] != 0) ++at;
  if (at >= end) return std::nullopt;
  std::string s(reinterpret_cast<const char*>(b.data() + start), at - start);
  ++at;
  return s;
}

StartupParse parseParameters(std::span<const std::uint8_t> b, std::uint32_t length,
                             std::uint32_t version) {
  StartupParse r;
  r.packet.kind = StartupKind::Startup;
  r.packet.protocolVersion = version;
  std::size_t at = 8;
  while (true) {
    if (at >= length) return invalid("invalid startup packet layout: missing terminator");
    if (b[at] == 0) break;
    auto name = readCString(b, at, length);
    auto value = name ? readCString(b, at, length) : std::nullopt;
    if (!value) return invalid("invalid startup packet layout: unterminated parameter");
    r.packet.parameters.emplace_back(std::move(*name), std::move(*value));
  }
  if (at + 1 != length) return invalid("invalid startup packet layout: bytes after terminator");
  if (!r.packet.parameter("user"))
    return invalid("no PostgreSQL user name specified in startup packet");
  r.status = ParseStatus::Ok;
  r.length = length;
  return r;
}

StartupParse fixedLength(StartupKind kind, std::uint32_t length, std::uint32_t expected) {
  if (length != expected) return invalid("invalid length of startup packet");
  StartupParse r;
  r.status = ParseStatus::Ok;
  r.length = length;
  r.packet.kind = kind;
  return r;
}

}  // namespace

std::optional<std::string_view> StartupPacket::parameter(std::string_view name) const {
  for (const auto& [key, value] : parameters)
    if (key == name) return std::string_view(value);
  return std::nullopt;
}

StartupParse parseStartup(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 8) return {};
  const std::uint32_t length = readU32(bytes, 0);
  if (length < 8 || length > kMaxStartupPacketLength)
    return invalid("invalid length of startup packet");
  if (bytes.size() < length) return {};
  const std::uint32_t code = readU32(bytes, 4);
  if (code == kSslRequestCode) return fixedLength(StartupKind::SslRequest, length, 8);
  if (code == kGssEncRequestCode) return fixedLength(StartupKind::GssEncRequest, length, 8);
  if (code == kCancelRequestCode) {
    if (length < 12 + kMinCancelSecret || length > 12 + kMaxCancelSecret)
      return invalid("invalid length of cancel request");
    StartupParse r = fixedLength(StartupKind::CancelRequest, length, length);
    r.packet.cancelKey.processId = static_cast<std::int32_t>(readU32(bytes, 8));
    r.packet.cancelKey.secret.assign(reinterpret_cast<const char*>(bytes.data()) + 12, length - 12);
    return r;
  }
  if ((code >> 16) != 3)
    return invalid("unsupported frontend protocol " + std::to_string(code >> 16) + "." +
                   std::to_string(code & 0xffff) + ": server supports 3.0");
  return parseParameters(bytes, length, code);
}

std::vector<std::uint8_t> cancelRequestBytes(const CancelKey& key) {
  std::vector<std::uint8_t> out;
  out.reserve(12 + key.secret.size());
  writeU32(out, static_cast<std::uint32_t>(12 + key.secret.size()));
  writeU32(out, kCancelRequestCode);
  writeU32(out, static_cast<std::uint32_t>(key.processId));
  out.insert(out.end(), key.secret.begin(), key.secret.end());
  return out;
}

}  // namespace pgkeel::protocol
