// Loading a YAML configuration file into Options, collecting every problem with its line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/options.h"

namespace pgkeel::config {

struct LoadResult {
  Options options;                  // base with every good value applied; use only when ok()
  std::vector<std::string> errors;  // "FILE:LINE: key 'probe_interval': needs a unit, e.g. 2s"

  bool ok() const { return errors.empty(); }
};

// Reads path and applies its keys on top of base. An empty file leaves base as it is. Problems
// spanning several keys (checkCombination) are not checked here; the caller does after merging.
LoadResult loadFile(const std::string& path, const Options& base = {});

// The same for YAML text already in memory; name stands for the file in messages.
LoadResult loadYaml(std::string_view text, const std::string& name, const Options& base = {});

}  // namespace pgkeel::config
