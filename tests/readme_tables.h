// README.md's marked regions and markdown tables, for the doc tests of every module.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace pgkeel::docs {

// The text between <!-- NAME:begin --> and <!-- NAME:end --> in README.md.
inline std::string readmeRegion(const std::string& name) {
  std::ifstream file(std::string(PGKEEL_SOURCE_DIR) + "/README.md");
  std::stringstream text;
  text << file.rdbuf();
  std::string readme = text.str();
  std::string begin = "<!-- " + name + ":begin -->", end = "<!-- " + name + ":end -->";
  size_t from = readme.find(begin), to = readme.find(end);
  EXPECT_NE(from, std::string::npos) << begin;
  EXPECT_NE(to, std::string::npos) << end;
  if (from == std::string::npos || to == std::string::npos || to < from) return "";
  return readme.substr(from + begin.size(), to - from - begin.size());
}

inline std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::stringstream stream(row.substr(1));
  std::string cell;
  while (std::getline(stream, cell, '|')) {
    size_t first = cell.find_first_not_of(' '), last = cell.find_last_not_of(' ');
    out.push_back(first == std::string::npos ? "" : cell.substr(first, last - first + 1));
  }
  return out;
}

// Body rows of the markdown table whose header starts with "| header |"; cells trimmed.
inline std::vector<std::vector<std::string>> tableRows(const std::string& region,
                                                       const std::string& header) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream lines(region);
  std::string line;
  bool inTable = false;
  while (std::getline(lines, line)) {
    if (line.rfind("| " + header + " |", 0) == 0) inTable = true;
    if (!inTable || line.rfind("|", 0) != 0) continue;
    if (line.rfind("|---", 0) != 0 && line.rfind("| " + header + " |", 0) != 0) {
      rows.push_back(cells(line));
    }
  }
  return rows;
}

inline std::string unquote(const std::string& cell) {
  if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`') {
    return cell.substr(1, cell.size() - 2);
  }
  return cell;
}

}  // namespace pgkeel::docs
