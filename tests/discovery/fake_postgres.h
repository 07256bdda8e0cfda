// A minimal PostgreSQL server for probe tests: records password logins, answers as a primary.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_ports.h"

namespace pgkeel::discovery::testing {

// Asks each client for a cleartext password, records who logged in with what, accepts one
// password, and answers every query with one primary-like probe row.
class FakePostgres {
 public:
  struct Login {
    std::string user;
    std::string password;
    bool operator==(const Login&) const = default;
  };

  explicit FakePostgres(std::string password) : password_(std::move(password)) {
    fd_ = openLoopbackSocket(&port_, 16);
    if (fd_ >= 0) accepter_ = std::thread([this] { acceptLoop(); });
  }
  ~FakePostgres() {
    stopping_ = true;
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    if (accepter_.joinable()) accepter_.join();
    std::vector<std::thread> sessions;
    {
      std::lock_guard lock(mutex_);
      for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
      sessions.swap(sessions_);
    }
    for (std::thread& session : sessions) session.join();
    if (fd_ >= 0) ::close(fd_);
  }
  FakePostgres(const FakePostgres&) = delete;
  FakePostgres& operator=(const FakePostgres&) = delete;

  bool ok() const { return fd_ >= 0; }
  std::uint16_t port() const { return port_; }
  // The password accepted from now on (sessions already logged in stay, as in PostgreSQL).
  void setPassword(std::string password) {
    std::lock_guard lock(mutex_);
    password_ = std::move(password);
  }
  std::vector<Login> logins() const {
    std::lock_guard lock(mutex_);
    return logins_;
  }
  int openSessions() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(open_.size());
  }

 private:
  void acceptLoop() {
    while (!stopping_) {
      int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      std::lock_guard lock(mutex_);
      open_.push_back(client);
      sessions_.emplace_back([this, client] {
        serve(client);
        std::lock_guard lock(mutex_);
        std::erase(open_, client);
        ::close(client);
      });
    }
  }

  static bool readAll(int fd, void* data, std::size_t size) {
    auto* bytes = static_cast<char*>(data);
    while (size > 0) {
      ssize_t n = ::recv(fd, bytes, size, 0);
      if (n <= 0) return false;
      bytes += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  static std::uint32_t be32(const char* p) {
    return (std::uint32_t(std::uint8_t(p[0])) << 24) | (std::uint32_t(std::uint8_t(p[1])) << 16) |
           (std::uint32_t(std::uint8_t(p[2])) << 8) | std::uint32_t(std::uint8_t(p[3]));
  }
  static void put32(std::string& out, std::int32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8)
      out += char((std::uint32_t(value) >> shift) & 0xff);
  }
  static void put16(std::string& out, std::int16_t value) {
    out += char((std::uint16_t(value) >> 8) & 0xff);
    out += char(std::uint16_t(value) & 0xff);
  }
  static std::string message(char type, const std::string& body) {
    std::string out(1, type);
    put32(out, static_cast<std::int32_t>(body.size() + 4));
    return out + body;
  }
  static bool send(int fd, const std::string& data) {
    return ::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // A length-prefixed body (the length counts itself); false on EOF or nonsense.
  static bool readBody(int fd, std::string* body) {
    char length[4];
    if (!readAll(fd, length, 4)) return false;
    std::uint32_t size = be32(length);
    if (size < 4 || size > (1u << 20)) return false;
    body->assign(size - 4, '\0');
    return readAll(fd, body->data(), body->size());
  }

  // SSLRequest and GSSENCRequest get 'N'; returns the startup packet's user.
  static bool readStartup(int fd, std::string* user) {
    std::string body;
    for (;;) {
      if (!readBody(fd, &body) || body.size() < 4) return false;
      std::uint32_t code = be32(body.data());
      if (code == 80877103 || code == 80877104) {
        if (!send(fd, "N")) return false;
        continue;
      }
      break;
    }
    for (std::size_t at = 4; at < body.size() && body[at] != '\0';) {
      std::string key = body.c_str() + at;
      at += key.size() + 1;
      std::string value = at < body.size() ? body.c_str() + at : "";
      at += value.size() + 1;
      if (key == "user") *user = value;
    }
    return true;
  }

  void serve(int fd) {
    Login login;
    if (!readStartup(fd, &login.user)) return;
    std::string ask;
    put32(ask, 3);  // AuthenticationCleartextPassword
    if (!send(fd, message('R', ask))) return;
    char type = 0;
    std::string body;
    if (!readAll(fd, &type, 1) || type != 'p' || !readBody(fd, &body)) return;
    login.password = body.c_str();
    bool accepted = false;
    {
      std::lock_guard lock(mutex_);
      logins_.push_back(login);
      accepted = login.password == password_;
    }
    if (!accepted) {
      std::string error = std::string("SFATAL") + '\0' + "C28P01" + '\0' +
                          "Mpassword authentication failed for user \"" + login.user + "\"" + '\0' +
                          '\0';
      send(fd, message('E', error));
      return;
    }
    std::string ok;
    put32(ok, 0);  // AuthenticationOk
    if (!send(fd, message('R', ok) + message('Z', "I"))) return;
    while (readAll(fd, &type, 1) && readBody(fd, &body) && type == 'Q') {
      if (!send(fd, probeAnswer())) return;
    }
  }

  // The probe's four columns as a primary on timeline 1 answers them.
  static std::string probeAnswer() {
    std::string fields;
    put16(fields, 4);
    for (const char* name : {"r", "lsn", "timeline", "delay"}) {
      fields += std::string(name) + '\0';
      put32(fields, 0);
      put16(fields, 0);
      put32(fields, 25);  // text
      put16(fields, -1);
      put32(fields, -1);
      put16(fields, 0);
    }
    std::string row;
    put16(row, 4);
    for (const char* value : {"f", "0/3000060", "1"}) {
      put32(row, static_cast<std::int32_t>(std::strlen(value)));
      row += value;
    }
    put32(row, -1);  // replay delay: NULL on a primary
    return message('T', fields) + message('D', row) + message('C', std::string("SELECT 1") + '\0') +
           message('Z', "I");
  }

  std::uint16_t port_ = 0;
  int fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread accepter_;
  mutable std::mutex mutex_;  // guards everything below
  std::string password_;
  std::vector<Login> logins_;
  std::vector<int> open_;
  std::vector<std::thread> sessions_;
};

}  // namespace pgkeel::discovery::testing
