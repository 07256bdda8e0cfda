// Logging setup: spdlog's default logger on stderr, as text or one JSON object per line.
#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

namespace pgkeel::common {
namespace {

// Writes {"time":..,"level":..,"thread":..,"msg":..}: the message is escaped by nlohmann/json.
class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::json line;
    const auto seconds = std::chrono::time_point_cast<std::chrono::milliseconds>(msg.time);
    line["ts"] = static_cast<double>(seconds.time_since_epoch().count()) / 1000.0;
    line["level"] = std::string(spdlog::level::to_string_view(msg.level).data(),
                                spdlog::level::to_string_view(msg.level).size());
    line["thread"] = msg.thread_id;
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    const std::string text =
        line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

void setLogLevel(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
}

void setupLogging(const std::string& level, LogStyle style) {
  static const auto logger = [] {
    auto l = std::make_shared<spdlog::logger>("pgkeel",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    spdlog::set_default_logger(l);
    return l;
  }();
  if (style == LogStyle::Json)
    logger->set_formatter(std::make_unique<JsonFormatter>());
  else
    logger->set_formatter(
        std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%t] %v"));
  setLogLevel(level);
  logger->flush_on(spdlog::level::trace);
}

}  // namespace pgkeel::common
