// The SQLSTATE codes pgkeel itself emits in ErrorResponse messages: the one list.
#pragma once

#include <array>
#include <string_view>

namespace pgkeel::protocol {

struct SqlState {
  std::string_view code;
  std::string_view name;  // condition name from PostgreSQL's errcodes.txt
};

namespace sqlstate {
inline constexpr SqlState kCannotConnectNow{"57P03", "cannot_connect_now"};
inline constexpr SqlState kConnectionFailure{"08006", "connection_failure"};
inline constexpr SqlState kProtocolViolation{"08P01", "protocol_violation"};
inline constexpr SqlState kTooManyConnections{"53300", "too_many_connections"};
}  // namespace sqlstate

inline constexpr std::array kEmittedSqlStates{
    sqlstate::kCannotConnectNow, sqlstate::kConnectionFailure, sqlstate::kProtocolViolation,
    sqlstate::kTooManyConnections};

}  // namespace pgkeel::protocol
