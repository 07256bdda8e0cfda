// Parsers for configuration values: durations, booleans, integers, ADDR:PORT and lists.
#include "config/values.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <utility>

namespace pgkeel::config {
namespace {

constexpr double kMaxDurationMillis = 1e12;  // far beyond any sane setting; keeps the cast exact

// Length of a leading decimal number such as "12", "1.5" or ".5"; 0 if there is none.
size_t numberLength(std::string_view text) {
  size_t n = 0, digits = 0;
  bool dot = false;
  for (; n < text.size(); ++n) {
    if (std::isdigit(static_cast<unsigned char>(text[n]))) {
      ++digits;
    } else if (text[n] == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  return digits == 0 ? 0 : n;
}

size_t unitLength(std::string_view text) {
  size_t n = 0;
  while (n < text.size() && !std::isdigit(static_cast<unsigned char>(text[n])) && text[n] != '.') {
    ++n;
  }
  return n;
}

// Milliseconds per unit, 0 for an unknown unit.
double unitMillis(std::string_view unit) {
  static constexpr std::array<std::pair<std::string_view, double>, 4> kUnits{
      {{"ms", 1.0}, {"s", 1000.0}, {"m", 60000.0}, {"h", 3600000.0}}};
  for (const auto& [name, millis] : kUnits) {
    if (unit == name) return millis;
  }
  return 0.0;
}

std::string unitProblem(std::string_view unit) {
  if (unit == "us" || unit == "µs" || unit == "ns") {
    return "units below a millisecond are not supported; use ms, s, m or h";
  }
  return "unknown unit " + inQuotes(unit) + "; use ms, s, m or h";
}

// Adds one "<number><unit>" term from the front of rest to total.
std::string addTerm(std::string_view text, std::string_view& rest, double& total) {
  const std::string notDuration = inQuotes(text) + " is not a duration, e.g. 500ms, 2s, 1m";
  size_t n = numberLength(rest);
  if (n == 0) return notDuration;
  double number = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + n, number);
  if (ec != std::errc() || end != rest.data() + n) return notDuration;
  rest.remove_prefix(n);
  size_t u = unitLength(rest);
  if (u == 0) return "needs a unit, e.g. 2s";
  double millis = unitMillis(rest.substr(0, u));
  if (millis == 0.0) return unitProblem(rest.substr(0, u));
  rest.remove_prefix(u);
  total += number * millis;
  return "";
}

bool isHostChar(char c, bool bracketed) {
  if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') return true;
  return bracketed && (c == ':' || c == '%');
}

bool isHostName(std::string_view host, bool bracketed) {
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [&](char c) { return isHostChar(c, bracketed); });
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

std::string toLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string inQuotes(std::string_view text) {
  return "'" + std::string(text) + "'";
}

std::string parseDuration(std::string_view text, Millis& out) {
  std::string_view rest = trim(text);
  if (rest.empty()) return "needs a value, e.g. 2s";
  if (rest.front() == '-') return inQuotes(text) + " is negative";
  double total = 0;
  while (!rest.empty()) {
    std::string problem = addTerm(text, rest, total);
    if (!problem.empty()) return problem;
  }
  if (total > kMaxDurationMillis) return inQuotes(text) + " is too long";
  double whole = std::round(total);
  if (std::abs(total - whole) > 1e-6)
    return inQuotes(text) + " is not a whole number of milliseconds";
  out = Millis(static_cast<Millis::rep>(whole));
  return "";
}

std::string parseBool(std::string_view text, bool& out) {
  std::string word = toLower(trim(text));
  if (word == "true" || word == "on" || word == "yes" || word == "1") {
    out = true;
  } else if (word == "false" || word == "off" || word == "no" || word == "0") {
    out = false;
  } else {
    return inQuotes(text) + " is not a boolean; use true/false, on/off, yes/no or 1/0";
  }
  return "";
}

std::string parseInt(std::string_view text, int min, int max, int& out) {
  std::string_view digits = trim(text);
  int value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec == std::errc::invalid_argument || end != digits.data() + digits.size()) {
    return inQuotes(text) + " is not a whole number";
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    return "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", not " +
           std::string(digits);
  }
  out = value;
  return "";
}

std::string checkHostPort(std::string_view text) {
  const std::string example =
      inQuotes(text) + " is not ADDR:PORT, e.g. 10.0.0.5:5432 or [::1]:5432";
  bool bracketed = !text.empty() && text.front() == '[';
  size_t close = bracketed ? text.find(']') : 0;
  if (bracketed && (close == std::string_view::npos || text.substr(close + 1, 1) != ":")) {
    return example;
  }
  size_t colon = bracketed ? close + 1 : text.rfind(':');
  if (colon == std::string_view::npos) return example;
  std::string_view host = bracketed ? text.substr(1, close - 1) : text.substr(0, colon);
  if (!bracketed && host.find(':') != std::string_view::npos) {
    return inQuotes(text) + ": write an IPv6 address in brackets, e.g. [::1]:5432";
  }
  if (!isHostName(host, bracketed)) return example;
  int port = 0;
  if (!parseInt(text.substr(colon + 1), 1, 65535, port).empty()) {
    return inQuotes(text) + ": the port must be a number from 1 to 65535";
  }
  return "";
}

std::vector<std::string> splitList(std::string_view text) {
  std::vector<std::string> items;
  while (true) {
    size_t comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    if (!item.empty()) items.emplace_back(item);
    if (comma == std::string_view::npos) return items;
    text.remove_prefix(comma + 1);
  }
}

std::string formatDuration(Millis value) {
  auto ms = value.count();
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string closestMatch(std::string_view word, const std::vector<std::string>& choices) {
  std::string best;
  size_t bestDistance = std::max<size_t>(2, word.size() / 4) + 1;
  for (const std::string& choice : choices) {
    size_t distance = editDistance(word, choice);
    if (distance < bestDistance) {
      best = choice;
      bestDistance = distance;
    }
  }
  return best;
}

}  // namespace pgkeel::config
