// StaticSource: a fixed candidate list, replaceable on reload.
#include "discovery/source.h"

namespace pgkeel::discovery {

StaticSource::StaticSource(std::vector<Endpoint> endpoints) : endpoints_(std::move(endpoints)) {}

SourceSnapshot StaticSource::snapshot() {
  std::lock_guard lock(mutex_);
  SourceSnapshot result;
  result.candidates.reserve(endpoints_.size());
  for (const Endpoint& endpoint : endpoints_) result.candidates.push_back(Candidate{endpoint});
  return result;
}

void StaticSource::setEndpoints(std::vector<Endpoint> endpoints) {
  std::lock_guard lock(mutex_);
  endpoints_ = std::move(endpoints);
}

}  // namespace pgkeel::discovery
