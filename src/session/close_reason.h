// CloseReason: every named way a client session ends (logged and counted).
#pragma once

#include <array>
#include <cstddef>

namespace pgkeel::session {

enum class CloseReason {
  ClientClosed,      // the client hung up
  LoginTimeout,      // no complete start-up packet within client_login_timeout
  TooManyClients,    // over max_client_connections or the listener's cap (53300 sent)
  ServerClosed,      // the server hung up
  ClientError,       // socket error on the client side
  ServerError,       // socket error on the server side
  BadStartup,        // invalid start-up packet (08P01 sent)
  BadServerMessage,  // the server's start-up bytes did not frame (08P01 sent)
  NoNode,            // nothing to route to after waiting (57P03 sent)
  ConnectFailed,     // every connect attempt failed within connect_timeout (08006 sent)
  NodeDemoted,       // primary port: its node is no longer the primary
  NodeLeft,          // its node left the table or became unhealthy
  NodePromoted,      // replica port: its replica became the primary (not a fallback session)
  CancelForwarded,   // a CancelRequest connection, done
  Shutdown,          // pgkeel is stopping
};

inline constexpr std::size_t kCloseReasonCount = 15;

const char* toString(CloseReason reason);

}  // namespace pgkeel::session
