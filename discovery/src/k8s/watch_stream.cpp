// Watch stream splitting and Status interpretation for the Kubernetes informers.
#include "k8s/watch_stream.h"

#include <algorithm>

namespace pgkeel::discovery::k8s {
namespace {

std::optional<EventType> eventType(const std::string& name) {
  if (name == "ADDED") return EventType::Added;
  if (name == "MODIFIED") return EventType::Modified;
  if (name == "DELETED") return EventType::Deleted;
  if (name == "BOOKMARK") return EventType::Bookmark;
  if (name == "ERROR") return EventType::Error;
  return std::nullopt;
}

std::string stringField(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

bool blank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

std::optional<WatchEvent> parseWatchEvent(std::string_view line, std::string* error) {
  nlohmann::json event = nlohmann::json::parse(line, nullptr, false);
  if (event.is_discarded() || !event.is_object()) {
    *error = "a watch event is not a JSON object";
    return std::nullopt;
  }
  auto type = eventType(stringField(event, "type"));
  if (!type) {
    *error = "unknown watch event type \"" + stringField(event, "type") + "\"";
    return std::nullopt;
  }
  auto object = event.find("object");
  if (object == event.end() || !object->is_object()) {
    *error = "a watch event has no object";
    return std::nullopt;
  }
  return WatchEvent{*type, std::move(*object)};
}

bool WatchStreamParser::feed(std::string_view data, const Handler& handler) {
  if (!error_.empty()) return false;
  buffer_.append(data);
  if (!drain(handler)) return false;
  if (buffer_.size() > kMaxEventBytes) {
    error_ = "a watch event is larger than " + std::to_string(kMaxEventBytes) + " bytes";
    return false;
  }
  return true;
}

bool WatchStreamParser::finish(const Handler& handler) {
  if (!error_.empty()) return false;
  if (!drain(handler)) return false;
  std::string rest = std::move(buffer_);
  buffer_.clear();
  scanned_ = 0;
  return blank(rest) || handleLine(rest, handler);
}

bool WatchStreamParser::drain(const Handler& handler) {
  std::size_t start = 0;
  bool keepGoing = true;
  while (keepGoing) {
    std::size_t newline = buffer_.find('\n', std::max(start, scanned_));
    if (newline == std::string::npos) break;
    std::string_view line(buffer_.data() + start, newline - start);
    start = newline + 1;
    if (!blank(line)) keepGoing = handleLine(line, handler);
  }
  buffer_.erase(0, start);
  scanned_ = keepGoing ? buffer_.size() : 0;
  return keepGoing;
}

bool WatchStreamParser::handleLine(std::string_view line, const Handler& handler) {
  std::optional<WatchEvent> event = parseWatchEvent(line, &error_);
  if (!event) return false;
  return handler(std::move(*event));
}

int statusCode(const nlohmann::json& status) {
  auto it = status.is_object() ? status.find("code") : status.end();
  return it != status.end() && it->is_number_integer() ? it->get<int>() : 0;
}

bool isGone(const nlohmann::json& status) {
  if (!status.is_object()) return false;
  std::string reason = stringField(status, "reason");
  return statusCode(status) == 410 || reason == "Expired" || reason == "Gone";
}

bool isTooLargeResourceVersion(const nlohmann::json& status) {
  if (!status.is_object()) return false;
  if (stringField(status, "message").find("Too large resource version") != std::string::npos) {
    return true;
  }
  auto details = status.find("details");
  if (details == status.end() || !details->is_object()) return false;
  auto causes = details->find("causes");
  if (causes == details->end() || !causes->is_array()) return false;
  for (const nlohmann::json& cause : *causes) {
    if (cause.is_object() && stringField(cause, "reason") == "ResourceVersionTooLarge") return true;
  }
  return false;
}

std::string describeStatus(const nlohmann::json& status) {
  if (!status.is_object()) return status.dump();
  std::string text = stringField(status, "message");
  std::string reason = stringField(status, "reason");
  int code = statusCode(status);
  if (text.empty()) text = "(no message)";
  if (!reason.empty() || code != 0) {
    text += " (" + reason + (reason.empty() || code == 0 ? "" : ", ");
    if (code != 0) text += "code " + std::to_string(code);
    text += ")";
  }
  return text;
}

}  // namespace pgkeel::discovery::k8s
