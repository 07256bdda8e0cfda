// Parsers for configuration values (durations, booleans, integers, ADDR:PORT, lists) and helpers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/options.h"

namespace pgkeel::config {

// Every parser returns the problem as text, or "" when the value is good; the caller prefixes the
// problem with where the value came from (file and line, flag, environment variable).

// "500ms", "2s", "1m", "1.5s", "1h", "1m30s". A bare number "needs a unit, e.g. 2s". Units below a
// millisecond (us, ns) and values that are not a whole number of milliseconds are rejected.
std::string parseDuration(std::string_view text, Millis& out);

// true/false, on/off, yes/no, 1/0, in any letter case.
std::string parseBool(std::string_view text, bool& out);

// A decimal integer in [min, max].
std::string parseInt(std::string_view text, int min, int max, int& out);

// "host:port", "10.0.0.5:5432" or "[::1]:5432", with a port in 1..65535.
std::string checkHostPort(std::string_view text);

// Splits "a, b,c" on commas, trims blanks and drops empty items.
std::vector<std::string> splitList(std::string_view text);

// The shortest exact form: 1h, 2m, 3s or 1500ms.
std::string formatDuration(Millis value);

// The choice nearest to word (a typo at most a few edits away), or "" when none is close.
std::string closestMatch(std::string_view word, const std::vector<std::string>& choices);

std::string_view trim(std::string_view text);
std::string toLower(std::string_view text);
std::string inQuotes(std::string_view text);  // 'text', for messages

}  // namespace pgkeel::config
