// SplicePump: moves one direction of a TCP pair through a kernel pipe with splice(2), no user-space
// copy.
#include "core/splice_pump.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

namespace pgkeel::core {
namespace {

constexpr std::size_t kChunk = 1 << 16;  // the default pipe capacity
constexpr unsigned kFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

}  // namespace

Pipe Pipe::create() {
  int fds[2];
  Pipe pipe;
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return pipe;
  pipe.readEnd.reset(fds[0]);
  pipe.writeEnd.reset(fds[1]);
  const int size = ::fcntl(fds[1], F_GETPIPE_SZ);
  pipe.capacity = size > 0 ? static_cast<std::size_t>(size) : 4096;
  return pipe;
}

Pipe PipeCache::take() {
  if (pipes_.empty()) return Pipe::create();
  Pipe pipe = std::move(pipes_.back());
  pipes_.pop_back();
  return pipe;
}

void PipeCache::give(Pipe pipe) {
  if (pipe.valid() && pipes_.size() < keep_) pipes_.push_back(std::move(pipe));
}

SplicePump::Status SplicePump::flush(int dst) {
  while (pending_ > 0) {
    const ssize_t n = ::splice(pipe_.readEnd.get(), nullptr, dst, nullptr, pending_, kFlags);
    if (n > 0) {
      pending_ -= static_cast<std::size_t>(n);
      moved_ += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return Status::DestBlocked;
    return Status::DestError;
  }
  return Status::Idle;
}

SplicePump::Status SplicePump::pump(int src, int dst) {
  for (;;) {
    if (Status s = flush(dst); s != Status::Idle) return s;
    const std::size_t room = std::min(kChunk, pipe_.capacity);
    const ssize_t n = ::splice(src, nullptr, pipe_.writeEnd.get(), nullptr, room, kFlags);
    if (n > 0) {
      pending_ = static_cast<std::size_t>(n);
      if (Status s = flush(dst); s != Status::Idle) return s;
      // A short read drained the socket: skip the read that would only say EAGAIN.
      if (static_cast<std::size_t>(n) < room) return Status::Idle;
      continue;
    }
    if (n == 0) return Status::SourceClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Status::Idle;
    return Status::SourceError;
  }
}

}  // namespace pgkeel::core
