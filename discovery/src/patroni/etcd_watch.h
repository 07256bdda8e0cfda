// Pure parts of the etcd v3 JSON gateway (etcd >= 3.4, /v3/...): request bodies, range answers,
// and the watch stream's newline-delimited messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgkeel::discovery::patroni {

// Keys and values travel base64-encoded (protobuf `bytes` in JSON).
std::string base64Encode(std::string_view data);
std::optional<std::string> base64Decode(std::string_view text);

// POST /v3/kv/range: {"key":"<b64>"}.
std::string rangeRequestBody(std::string_view key);
// POST /v3/watch: {"create_request":{"key":"<b64>","start_revision":"<n>","prev_kv":true}}.
std::string watchRequestBody(std::string_view key, std::int64_t startRevision);

struct RangeAnswer {
  std::int64_t revision = 0;         // header.revision: the store's revision at the read
  std::optional<std::string> value;  // the key's value; empty when the key does not exist
};
// {"header":{...,"revision":"7"},"kvs":[{"key":..,"value":..}],"count":"1"}; without "kvs" when
// the key is absent. Empty optional with *error on anything else (including {"error":...}).
std::optional<RangeAnswer> parseRangeAnswer(std::string_view body, std::string* error);

struct WatchEvent {
  bool deleted = false;  // "type":"DELETE"; a PUT has no "type" (the zero value is left out)
  std::string key;
  std::string value;     // PUT: the new value
  std::string previous;  // with prev_kv: the value before this event
  std::int64_t modRevision = 0;
  bool operator==(const WatchEvent&) const = default;
};

struct WatchMessage {
  bool created = false;              // the first message of a watch
  bool canceled = false;             // the server ended the watch (see compactRevision)
  std::int64_t revision = 0;         // header.revision
  std::int64_t compactRevision = 0;  // > 0: start_revision was compacted; re-read and re-watch
  std::vector<WatchEvent> events;
  std::string error;  // a gateway error message ({"error":...}); empty if none
};
// One line of the watch stream: {"result":{...}} or {"error":...}. Empty optional with *error on
// bad JSON or base64.
std::optional<WatchMessage> parseWatchMessage(std::string_view line, std::string* error);

// Splits the chunked watch body into lines; a chunk boundary is not a message boundary.
class LineSplitter {
 public:
  // Appends `data` and returns the complete lines it finished (without the '\n').
  std::vector<std::string> feed(std::string_view data);
  std::size_t pending() const { return buffer_.size(); }

 private:
  std::string buffer_;
};

}  // namespace pgkeel::discovery::patroni
