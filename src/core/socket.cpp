// Socket helpers: addresses, SO_REUSEPORT listeners, non-blocking accept and connect, TCP options.
#include "core/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace pgkeel::core {
namespace {

bool setInt(int fd, int level, int name, int value) {
  return ::setsockopt(fd, level, name, &value, sizeof value) == 0;
}

bool splitHostPort(const std::string& text, std::string& host, std::string& port) {
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    return true;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  port = text.substr(colon + 1);
  return true;
}

}  // namespace

std::string SocketAddress::str() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (storage.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

std::optional<SocketAddress> resolve(const std::string& host, std::uint16_t port,
                                     std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (host.empty() ? AI_PASSIVE : 0);
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc =
      ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    if (error) *error = "cannot resolve '" + host + "': " + ::gai_strerror(rc);
    return std::nullopt;
  }
  SocketAddress address;
  std::memcpy(&address.storage, found->ai_addr, found->ai_addrlen);
  address.length = found->ai_addrlen;
  ::freeaddrinfo(found);
  return address;
}

std::optional<SocketAddress> parseListenAddress(const std::string& text, std::string* error) {
  std::string host, port;
  if (!splitHostPort(text, host, port) || port.empty()) {
    if (error) *error = "'" + text + "' is not ADDR:PORT";
    return std::nullopt;
  }
  char* end = nullptr;
  const long value = std::strtol(port.c_str(), &end, 10);
  if (*end != '\0' || value < 1 || value > 65535) {
    if (error) *error = "bad port in '" + text + "'";
    return std::nullopt;
  }
  if (host == "*") host = "0.0.0.0";
  return resolve(host, static_cast<std::uint16_t>(value), error);
}

std::string checkAddressFree(const SocketAddress& address) {
  Fd fd(::socket(address.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd && setInt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1) &&
      ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address.storage), address.length) == 0)
    return "";
  return "cannot listen on " + address.str() + ": " + std::strerror(errno);
}

Fd listenOn(const SocketAddress& address, int backlog, std::string* error) {
  Fd fd(::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd && setInt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1) &&
      setInt(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1) &&
      ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address.storage), address.length) == 0 &&
      ::listen(fd.get(), backlog) == 0)
    return fd;
  if (error) *error = "cannot listen on " + address.str() + ": " + std::strerror(errno);
  return Fd();
}

Fd acceptConnection(int listener) {
  return Fd(::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

ConnectStart connectNonBlocking(const SocketAddress& address) {
  ConnectStart start;
  start.fd = Fd(::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!start.fd) {
    start.error = errno;
    return start;
  }
  if (::connect(start.fd.get(), reinterpret_cast<const sockaddr*>(&address.storage),
                address.length) == 0)
    return start;
  if (errno == EINPROGRESS) {
    start.inProgress = true;
    return start;
  }
  start.error = errno;
  start.fd.reset();
  return start;
}

int connectError(int fd) {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}

void setNoDelay(int fd) {
  setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

void setKeepalive(int fd, bool on) {
  setInt(fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0);
  if (!on) return;
  // Notice a dead peer within about two minutes instead of the kernel's two hours.
  setInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60);
  setInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10);
  setInt(fd, IPPROTO_TCP, TCP_KEEPCNT, 6);
}

std::uint64_t raiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

}  // namespace pgkeel::core
