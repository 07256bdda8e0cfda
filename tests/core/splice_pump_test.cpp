// Tests for the splice pump over real loopback TCP sockets: bytes arrive intact; EOF is reported.
#include "core/splice_pump.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>

#include "core/socket.h"

namespace pgkeel::core {
namespace {

// A connected pair of loopback TCP sockets (splice needs sockets, not socketpair pipes).
std::pair<Fd, Fd> tcpPair() {
  std::string error;
  auto any = parseListenAddress("127.0.0.1:1", &error);
  auto* in = reinterpret_cast<sockaddr_in*>(&any->storage);
  in->sin_port = 0;
  Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(in), sizeof *in), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  socklen_t len = sizeof *in;
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(in), &len);
  Fd a(::socket(AF_INET, SOCK_STREAM, 0));
  EXPECT_EQ(::connect(a.get(), reinterpret_cast<sockaddr*>(in), sizeof *in), 0);
  Fd b(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK));
  return {std::move(a), std::move(b)};
}

std::string readAll(int fd, std::size_t want) {
  std::string out(want, '\0');
  std::size_t got = 0;
  while (got < want) {
    const ssize_t n = ::recv(fd, out.data() + got, want - got, 0);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

// 1 MB written on one pair comes out of the other pair unchanged, through the pipe.
TEST(SplicePump, MovesBytesIntact) {
  auto [srcWriter, src] = tcpPair();
  auto [dst, dstReader] = tcpPair();
  std::string payload(1 << 20, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
  SplicePump pump(Pipe::create());
  std::size_t sent = 0;
  std::string received;
  while (received.size() < payload.size()) {
    if (sent < payload.size()) {
      const ssize_t n = ::send(srcWriter.get(), payload.data() + sent,
                               std::min<std::size_t>(65536, payload.size() - sent), MSG_DONTWAIT);
      if (n > 0) sent += static_cast<std::size_t>(n);
    }
    ASSERT_NE(pump.pump(src.get(), dst.get()), SplicePump::Status::SourceError);
    received +=
        readAll(dstReader.get(), std::min<std::size_t>(pump.moved() - received.size(), 1 << 16));
  }
  EXPECT_EQ(received, payload);
  EXPECT_EQ(pump.moved(), payload.size());
}

// When the source closes, the pump reports SourceClosed after delivering what was sent.
TEST(SplicePump, ReportsSourceClosed) {
  auto [srcWriter, src] = tcpPair();
  auto [dst, dstReader] = tcpPair();
  ASSERT_EQ(::send(srcWriter.get(), "bye", 3, 0), 3);
  srcWriter.reset();
  SplicePump pump(Pipe::create());
  SplicePump::Status status = SplicePump::Status::Idle;
  for (int i = 0; i < 100 && status != SplicePump::Status::SourceClosed; ++i)
    status = pump.pump(src.get(), dst.get());
  EXPECT_EQ(status, SplicePump::Status::SourceClosed);
  EXPECT_EQ(readAll(dstReader.get(), 3), "bye");
}

}  // namespace
}  // namespace pgkeel::core
