// Session: one client connection and its server connection, from start-up packet to close.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "core/fd.h"
#include "core/splice_pump.h"
#include "discovery/routing_table.h"
#include "protocol/backend_scanner.h"
#include "protocol/error_response.h"
#include "protocol/startup.h"
#include "router/routing_policy.h"
#include "session/close_reason.h"

namespace pgkeel::session {

class SessionManager;

class Session {
 public:
  enum class State {
    ReadingStartup,            // waiting for a complete start-up packet
    WaitingForNode,            // the listener's role has no node; up to primary_wait
    Connecting,                // non-blocking connect in progress
    ConnectBackoff,            // a connect failed; retrying soon against the current table
    AwaitingEncryptionAnswer,  // SSLRequest/GSSENCRequest relayed, waiting for S/G/N
    Authenticating,            // start-up relayed; scanning the server's bytes up to ReadyForQuery
    Streaming,                 // both directions spliced
    Closing,                   // flushing an ErrorResponse before closing
    Closed,
  };

  Session(SessionManager& manager, std::uint64_t id, core::Fd client, const sockaddr_storage& peer,
          router::ListenerRole role);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // refusal: "" when admitted, else the 53300 message sent after the start-up packet.
  void start(std::string refusal = "");
  void onTable(const discovery::RoutingTable& table);
  void close(CloseReason reason);
  State state() const { return state_; }
  router::ListenerRole role() const { return role_; }

 private:
  struct Side : core::IoHandler {
    Session* session;
    bool client;
    Side(Session* s, bool c) : session(s), client(c) {}
    void onIo(std::uint32_t events) override;
  };

  void onClientIo(std::uint32_t events);
  void onClientWritable();
  void onServerIo(std::uint32_t events);
  void readStartup();
  void handleStartupPacket(const protocol::StartupParse& parsed);
  void route();
  void waitForNode(const std::string& missing);
  void connectTo(const discovery::NodeState& node);
  void onConnectResult(int error);
  void onConnected();
  void retryConnect(const std::string& why);
  void sendStartupToServer();
  void readEncryptionAnswer();
  void readAuthenticating();
  void startStreaming();
  void countMoved();
  void pumpClientToServer();
  void pumpServerToClient();
  bool flushToClient();
  void failWith(CloseReason reason, const protocol::SqlState& state, std::string message);
  void setTimer(std::chrono::milliseconds after, void (Session::*handler)());
  void clearTimer();
  void onWaitExpired();
  void onLoginTimeout();
  void onConnectTimeout();
  void onClosingTimeout();
  void updateInterest();
  void setInterest(int fd, std::uint32_t& current, std::uint32_t wanted, core::IoHandler* handler);
  void detachServer();
  std::string describe() const;

  SessionManager& manager_;
  std::uint64_t id_;
  router::ListenerRole role_;
  State state_ = State::ReadingStartup;
  core::Fd client_;
  core::Fd server_;
  sockaddr_storage peer_;
  Side clientSide_{this, true};
  Side serverSide_{this, false};
  std::uint32_t clientInterest_ = 0;
  std::uint32_t serverInterest_ = 0;
  bool serverRegistered_ = false;

  std::vector<std::uint8_t> startupBytes_;  // the packet being read, then relayed
  protocol::StartupKind startupKind_ = protocol::StartupKind::Startup;
  std::uint64_t countedToServer_ = 0;  // pump bytes already added to the worker's counters
  std::uint64_t countedToClient_ = 0;
  std::string toClient_;  // bytes pgkeel writes itself; always before spliced bytes
  protocol::BackendScanner scanner_;
  std::optional<core::SplicePump> clientToServer_;
  std::optional<core::SplicePump> serverToClient_;
  std::optional<protocol::CancelKey> cancelKey_;

  std::optional<discovery::NodeId> node_;  // set while the node's load is counted
  discovery::Endpoint nodeEndpoint_;
  bool fallback_ = false;
  std::vector<discovery::NodeId> failedNodes_;
  int connectAttempts_ = 0;
  core::Clock::time_point started_;
  core::Clock::time_point connectStarted_;  // of the current connect attempt
  std::optional<core::Clock::time_point> waitDeadline_;
  std::optional<core::Clock::time_point> connectDeadline_;
  core::EventLoop::TimerId timer_ = 0;
  CloseReason closingReason_ = CloseReason::ClientClosed;

  // An error decided while the client waited for an answer to SSLRequest/GSSENCRequest: sent
  // after the StartupMessage that follows our 'N'.
  struct DeferredError {
    CloseReason reason;
    protocol::SqlState state;
    std::string message;
  };
  std::optional<DeferredError> deferredError_;
  std::string refusal_;  // over a connection cap: refused once the start-up packet is read
};

const char* toString(Session::State state);

}  // namespace pgkeel::session
