// SplicePump: moves one direction of a TCP pair through a kernel pipe with splice(2), no user-space
// copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/fd.h"

namespace pgkeel::core {

struct Pipe {
  Fd readEnd;
  Fd writeEnd;
  std::size_t capacity = 0;  // F_GETPIPE_SZ: smaller than 64 KiB past pipe-user-pages-soft
  static Pipe create();      // non-blocking, close-on-exec; invalid ends on failure
  bool valid() const { return readEnd.valid() && writeEnd.valid(); }
};

// Keeps empty pipes of finished sessions for the next ones (two fewer syscalls per connect).
class PipeCache {
 public:
  explicit PipeCache(std::size_t keep = 64) : keep_(keep) {}
  Pipe take();
  void give(Pipe pipe);  // only pipes known to be empty

 private:
  std::size_t keep_;
  std::vector<Pipe> pipes_;
};

class SplicePump {
 public:
  enum class Status {
    Idle,          // source drained (would block), pipe flushed
    DestBlocked,   // bytes wait in the pipe for the destination to become writable
    SourceClosed,  // the source reached end of stream (pipe flushed)
    SourceError,
    DestError,
  };

  explicit SplicePump(Pipe pipe) : pipe_(std::move(pipe)) {}

  // Moves what is readable now from `src` to `dst`. Call when src is readable or dst writable.
  Status pump(int src, int dst);
  // Only flushes bytes already in the pipe.
  Status flush(int dst);

  std::size_t pending() const { return pending_; }
  std::uint64_t moved() const { return moved_; }
  Pipe release() { return std::move(pipe_); }

 private:
  Pipe pipe_;
  std::size_t pending_ = 0;
  std::uint64_t moved_ = 0;
};

}  // namespace pgkeel::core
