// Socket helpers: addresses, SO_REUSEPORT listeners, non-blocking accept and connect, TCP options.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

#include "core/fd.h"

namespace pgkeel::core {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string str() const;
};

// Resolves "host" + port to one address: numeric hosts without a lookup, names with getaddrinfo
// (blocking; names in candidates are resolved when a session connects). Empty on failure.
std::optional<SocketAddress> resolve(const std::string& host, std::uint16_t port,
                                     std::string* error);

// Parses "ADDR:PORT" / "[v6]:PORT" with numeric or named ADDR ("*" and "" mean any).
std::optional<SocketAddress> parseListenAddress(const std::string& text, std::string* error);

// Empty when nothing listens on `address` now; else why. SO_REUSEPORT would let a second process
// of the same user share a port silently, so this binds a plain socket to find out first.
std::string checkAddressFree(const SocketAddress& address);

// A non-blocking listening socket with SO_REUSEADDR and SO_REUSEPORT (one per worker).
Fd listenOn(const SocketAddress& address, int backlog, std::string* error);

// Accepts one connection, non-blocking and close-on-exec; invalid Fd when none is pending.
Fd acceptConnection(int listener);

struct ConnectStart {
  Fd fd;
  bool inProgress = false;  // wait for writability, then check connectError()
  int error = 0;            // errno when fd is invalid
};
ConnectStart connectNonBlocking(const SocketAddress& address);
int connectError(int fd);  // SO_ERROR: 0 when connected

void setNoDelay(int fd);
void setKeepalive(int fd, bool on);

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
std::uint64_t raiseOpenFileLimit();

}  // namespace pgkeel::core
