// Writers for the messages pgkeel itself sends to clients: ErrorResponse.
#pragma once

#include <string>
#include <string_view>

#include "protocol/sqlstate.h"

namespace pgkeel::protocol {

enum class Severity { Error, Fatal };

struct ErrorFields {
  Severity severity = Severity::Fatal;
  SqlState sqlState;
  std::string message;
  std::string detail;  // optional
  std::string hint;    // optional
};

// A complete ErrorResponse message ('E', length, fields, terminator). NUL bytes inside texts
// are dropped, as the protocol cannot carry them.
std::string errorResponse(const ErrorFields& fields);

}  // namespace pgkeel::protocol
