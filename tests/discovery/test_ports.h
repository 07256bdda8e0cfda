// Loopback ports for discovery tests: a port with nothing listening, and a server that never
// answers.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

namespace pgkeel::discovery::testing {

// Binds 127.0.0.1:0 and returns the chosen port; with `listen_backlog` > 0 it keeps listening.
inline int openLoopbackSocket(std::uint16_t* port, int listen_backlog) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      (listen_backlog > 0 && ::listen(fd, listen_backlog) != 0)) {
    return -1;
  }
  *port = ntohs(address.sin_port);
  return fd;
}

// A loopback port that nothing listens on (bound once by us, then closed).
inline std::uint16_t closedPort() {
  std::uint16_t port = 0;
  int fd = openLoopbackSocket(&port, 0);
  if (fd >= 0) ::close(fd);
  return port;
}

// Accepts TCP connections in the kernel but never reads or answers: a black-holed server.
class SilentServer {
 public:
  SilentServer() : fd_(openLoopbackSocket(&port_, 64)) {}
  ~SilentServer() {
    if (fd_ >= 0) ::close(fd_);
  }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  bool ok() const { return fd_ >= 0; }
  std::uint16_t port() const { return port_; }

 private:
  std::uint16_t port_ = 0;
  int fd_;
};

}  // namespace pgkeel::discovery::testing
