// Writers for the messages pgkeel itself sends to clients: ErrorResponse.
#include "protocol/error_response.h"

#include <cstdint>

namespace pgkeel::protocol {
namespace {

void appendField(std::string& out, char code, std::string_view value) {
  if (value.empty()) return;
  out.push_back(code);
  for (char c : value)
    if (c != '\0') out.push_back(c);
  out.push_back('\0');
}

}  // namespace

std::string errorResponse(const ErrorFields& fields) {
  const std::string_view severity = fields.severity == Severity::Fatal ? "FATAL" : "ERROR";
  std::string body;
  appendField(body, 'S', severity);
  appendField(body, 'V', severity);
  appendField(body, 'C', fields.sqlState.code);
  appendField(body, 'M', fields.message);
  appendField(body, 'D', fields.detail);
  appendField(body, 'H', fields.hint);
  body.push_back('\0');
  const std::uint32_t length = static_cast<std::uint32_t>(body.size() + 4);
  std::string out;
  out.reserve(body.size() + 5);
  out.push_back('E');
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(length >> shift));
  out += body;
  return out;
}

}  // namespace pgkeel::protocol
