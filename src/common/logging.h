// Logging setup: spdlog's default logger on stderr, as text or one JSON object per line.
#pragma once

#include <string>

namespace pgkeel::common {

enum class LogStyle { Text, Json };

// level: trace debug info warn error critical off. Safe to call again (reload).
void setupLogging(const std::string& level, LogStyle style);
void setLogLevel(const std::string& level);

}  // namespace pgkeel::common
