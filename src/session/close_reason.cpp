// CloseReason: every named way a client session ends (logged and counted).
#include "session/close_reason.h"

namespace pgkeel::session {

const char* toString(CloseReason reason) {
  switch (reason) {
    case CloseReason::ClientClosed:
      return "client_closed";
    case CloseReason::LoginTimeout:
      return "login_timeout";
    case CloseReason::TooManyClients:
      return "too_many_clients";
    case CloseReason::ServerClosed:
      return "server_closed";
    case CloseReason::ClientError:
      return "client_error";
    case CloseReason::ServerError:
      return "server_error";
    case CloseReason::BadStartup:
      return "bad_startup";
    case CloseReason::BadServerMessage:
      return "bad_server_message";
    case CloseReason::NoNode:
      return "no_node";
    case CloseReason::ConnectFailed:
      return "connect_failed";
    case CloseReason::NodeDemoted:
      return "node_demoted";
    case CloseReason::NodeLeft:
      return "node_left";
    case CloseReason::NodePromoted:
      return "node_promoted";
    case CloseReason::CancelForwarded:
      return "cancel_forwarded";
    case CloseReason::Shutdown:
      return "shutdown";
  }
  return "unknown";
}

}  // namespace pgkeel::session
