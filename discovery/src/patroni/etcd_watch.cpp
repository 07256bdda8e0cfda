// etcd v3 JSON gateway messages: base64 through OpenSSL, JSON through nlohmann (see etcd_watch.h).
#include "patroni/etcd_watch.h"

#include <openssl/evp.h>

#include <charconv>

#include <nlohmann/json.hpp>

namespace pgkeel::discovery::patroni {
namespace {

using nlohmann::json;

// int64 fields come as decimal strings ("revision":"7"); zero values are left out.
std::int64_t int64Field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return 0;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (!it->is_string()) return 0;
  const auto& text = it->get_ref<const std::string&>();
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

bool boolField(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

std::string stringField(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A base64 field, "" when absent; false when it is not valid base64.
bool bytesField(const json& object, const char* key, std::string* out) {
  out->clear();
  auto it = object.find(key);
  if (it == object.end()) return true;
  if (!it->is_string()) return false;
  auto decoded = base64Decode(it->get_ref<const std::string&>());
  if (!decoded) return false;
  *out = std::move(*decoded);
  return true;
}

const json& objectField(const json& object, const char* key) {
  static const json kEmpty = json::object();
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? *it : kEmpty;
}

// {"error":"text","message":"text","code":2} (unary) or {"error":{"message":..}} (streams).
std::string gatewayError(const json& document) {
  auto it = document.find("error");
  if (it == document.end()) return {};
  if (it->is_object()) {
    std::string message = stringField(*it, "message");
    return message.empty() ? it->dump() : message;
  }
  std::string message = stringField(document, "message");
  if (!message.empty()) return message;
  return it->is_string() ? it->get<std::string>() : it->dump();
}

bool parseEvent(const json& item, WatchEvent* event, std::string* error) {
  event->deleted = stringField(item, "type") == "DELETE";
  const json& kv = objectField(item, "kv");
  event->modRevision = int64Field(kv, "mod_revision");
  if (!bytesField(kv, "key", &event->key) || !bytesField(kv, "value", &event->value) ||
      !bytesField(objectField(item, "prev_kv"), "value", &event->previous)) {
    *error = "etcd watch: bad base64 in an event";
    return false;
  }
  return true;
}

}  // namespace

std::string base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(data.data()),
                               static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(length));
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3 + 1, '\0');
  int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(text.data()),
                               static_cast<int>(text.size()));
  if (length < 0) return std::nullopt;
  std::size_t padding = 0;  // EVP_DecodeBlock keeps the zero bytes that '=' stands for
  for (std::size_t i = text.size(); i > 0 && text[i - 1] == '=' && padding < 2; --i) ++padding;
  out.resize(static_cast<std::size_t>(length) - padding);
  return out;
}

std::string rangeRequestBody(std::string_view key) {
  return json{{"key", base64Encode(key)}}.dump();
}

std::string watchRequestBody(std::string_view key, std::int64_t startRevision) {
  json create = {{"key", base64Encode(key)},
                 {"start_revision", std::to_string(startRevision)},
                 {"prev_kv", true}};
  return json{{"create_request", create}}.dump();
}

std::optional<RangeAnswer> parseRangeAnswer(std::string_view body, std::string* error) {
  json document = json::parse(body, nullptr, false);
  if (document.is_discarded() || !document.is_object()) {
    *error = "etcd range: not a JSON object";
    return std::nullopt;
  }
  if (std::string message = gatewayError(document); !message.empty()) {
    *error = "etcd range: " + message;
    return std::nullopt;
  }
  RangeAnswer answer;
  answer.revision = int64Field(objectField(document, "header"), "revision");
  auto kvs = document.find("kvs");
  if (kvs != document.end() && kvs->is_array() && !kvs->empty()) {
    std::string value;
    if (!(*kvs)[0].is_object() || !bytesField((*kvs)[0], "value", &value)) {
      *error = "etcd range: bad kvs";
      return std::nullopt;
    }
    answer.value = std::move(value);
  }
  if (answer.revision <= 0) {
    *error = "etcd range: no header.revision";
    return std::nullopt;
  }
  return answer;
}

std::optional<WatchMessage> parseWatchMessage(std::string_view line, std::string* error) {
  json document = json::parse(line, nullptr, false);
  if (document.is_discarded() || !document.is_object()) {
    *error = "etcd watch: not a JSON object";
    return std::nullopt;
  }
  WatchMessage message;
  message.error = gatewayError(document);
  if (!message.error.empty()) return message;
  const json& result = objectField(document, "result");
  message.created = boolField(result, "created");
  message.canceled = boolField(result, "canceled");
  message.revision = int64Field(objectField(result, "header"), "revision");
  message.compactRevision = int64Field(result, "compact_revision");
  auto events = result.find("events");
  if (events != result.end() && events->is_array()) {
    for (const json& item : *events) {
      if (!item.is_object()) continue;
      WatchEvent event;
      if (!parseEvent(item, &event, error)) return std::nullopt;
      message.events.push_back(std::move(event));
    }
  }
  return message;
}

std::vector<std::string> LineSplitter::feed(std::string_view data) {
  buffer_.append(data);
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t end; (end = buffer_.find('\n', start)) != std::string::npos; start = end + 1) {
    if (end > start) lines.emplace_back(buffer_, start, end - start);
  }
  buffer_.erase(0, start);
  return lines;
}

}  // namespace pgkeel::discovery::patroni
