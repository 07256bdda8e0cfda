// A PostgreSQL node's network address, its stable id, and parsing of "host:port" lists.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgkeel::discovery {

// Stable small integer naming one endpoint for the life of the process; ids are never reused,
// so data-plane counters can be kept in flat arrays indexed by it.
using NodeId = std::uint32_t;
inline constexpr NodeId kMaxNodes = 1024;

struct Endpoint {
  std::string host;
  std::uint16_t port = 5432;

  // "host:port", with IPv6 hosts in brackets.
  std::string str() const;
  bool operator==(const Endpoint&) const = default;
};

// Parses "host:port", "[v6addr]:port" or "host" (port 5432). Empty optional on bad input.
std::optional<Endpoint> parseEndpoint(std::string_view text);

// Parses a comma- or whitespace-separated list; on a bad item sets *error naming it and returns {}.
std::vector<Endpoint> parseEndpointList(std::string_view text, std::string* error);

}  // namespace pgkeel::discovery
