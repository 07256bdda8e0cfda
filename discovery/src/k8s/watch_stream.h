// Kubernetes watch streams: splitting a chunked body into events, and reading Status objects
// (410 Gone / Expired, too-large resourceVersion).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace pgkeel::discovery::k8s {

enum class EventType { Added, Modified, Deleted, Bookmark, Error };

struct WatchEvent {
  EventType type = EventType::Added;
  nlohmann::json object;  // the object; a Status for Error; only metadata.resourceVersion (and
                          // some empty fields) for Bookmark
};

// One line of a watch body ({"type":T,"object":{...}}); nullopt and *error when it is not one.
std::optional<WatchEvent> parseWatchEvent(std::string_view line, std::string* error);

// Buffers a watch body until '\n': an event may be split across chunks, and one chunk may carry
// several events. Not thread-safe; one per stream.
class WatchStreamParser {
 public:
  // Return false to stop at this event (the rest of the buffer is kept).
  using Handler = std::function<bool(WatchEvent&&)>;

  static constexpr std::size_t kMaxEventBytes = 64 * 1024 * 1024;

  // Hands each complete event to `handler`. False when the handler stopped or a line was not an
  // event (error() says why; the stream cannot be trusted after that).
  bool feed(std::string_view data, const Handler& handler);
  // At the end of the stream: a last event without its '\n'. False as for feed().
  bool finish(const Handler& handler);
  const std::string& error() const { return error_; }
  std::size_t buffered() const { return buffer_.size(); }

 private:
  bool drain(const Handler& handler);
  bool handleLine(std::string_view line, const Handler& handler);

  std::string buffer_;
  std::size_t scanned_ = 0;  // bytes of buffer_ known to hold no '\n'
  std::string error_;
};

// A Status saying the resourceVersion is too old (code 410, or reason "Expired" / "Gone").
bool isGone(const nlohmann::json& status);
// A Status saying the resourceVersion is newer than the server knows (after an API server
// failover): code 504 with cause ResourceVersionTooLarge, or that message.
bool isTooLargeResourceVersion(const nlohmann::json& status);
// The Status's HTTP code (0 when absent).
int statusCode(const nlohmann::json& status);
// "message (reason, code N)" for logs; the raw text when `status` is not a Status.
std::string describeStatus(const nlohmann::json& status);

}  // namespace pgkeel::discovery::k8s
