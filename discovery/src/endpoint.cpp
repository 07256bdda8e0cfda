// Endpoint formatting and parsing of "host", "host:port", "[v6]:port" and lists of them.
#include "discovery/endpoint.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace pgkeel::discovery {
namespace {

constexpr std::uint16_t kDefaultPort = 5432;

bool isSeparator(char c) {
  return c == ',' || std::isspace(static_cast<unsigned char>(c));
}

bool isHostnameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

bool isV6Char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '.' || c == '%';
}

bool validHostname(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), isHostnameChar);
}

bool validV6(std::string_view host) {
  return host.find(':') != std::string_view::npos &&
         std::all_of(host.begin(), host.end(), isV6Char);
}

std::optional<std::uint16_t> parsePort(std::string_view text) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

// "[v6]" or "[v6]:port".
std::optional<Endpoint> parseBracketed(std::string_view text) {
  std::size_t close = text.find(']');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view host = text.substr(1, close - 1);
  std::string_view rest = text.substr(close + 1);
  if (!validV6(host)) return std::nullopt;
  if (rest.empty()) return Endpoint{std::string(host), kDefaultPort};
  if (rest.front() != ':') return std::nullopt;
  std::optional<std::uint16_t> port = parsePort(rest.substr(1));
  if (!port) return std::nullopt;
  return Endpoint{std::string(host), *port};
}

// Appends the endpoint `item` names; returns the problem instead when it is bad or repeated.
std::string addItem(std::string_view item, std::vector<Endpoint>& endpoints) {
  std::optional<Endpoint> endpoint = parseEndpoint(item);
  if (!endpoint) {
    return "bad endpoint \"" + std::string(item) +
           "\": expected host, host:port or [ipv6]:port with a port from 1 to 65535";
  }
  if (std::find(endpoints.begin(), endpoints.end(), *endpoint) != endpoints.end()) {
    return "duplicate endpoint \"" + std::string(item) + "\"";
  }
  endpoints.push_back(std::move(*endpoint));
  return {};
}

}  // namespace

std::string Endpoint::str() const {
  std::string port_text = std::to_string(port);
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + port_text;
  return host + ":" + port_text;
}

std::optional<Endpoint> parseEndpoint(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text.front() == '[') return parseBracketed(text);
  std::size_t colon = text.find(':');
  std::string_view host = text.substr(0, colon);
  if (!validHostname(host)) return std::nullopt;  // also rejects a bare "::1"
  if (colon == std::string_view::npos) return Endpoint{std::string(host), kDefaultPort};
  std::optional<std::uint16_t> port = parsePort(text.substr(colon + 1));
  if (!port) return std::nullopt;
  return Endpoint{std::string(host), *port};
}

std::vector<Endpoint> parseEndpointList(std::string_view text, std::string* error) {
  std::vector<Endpoint> endpoints;
  if (error) error->clear();
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = pos;
    while (end < text.size() && !isSeparator(text[end])) ++end;
    std::string_view item = text.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    std::string problem = addItem(item, endpoints);
    if (!problem.empty()) {
      if (error) *error = std::move(problem);
      return {};
    }
  }
  return endpoints;
}

}  // namespace pgkeel::discovery
