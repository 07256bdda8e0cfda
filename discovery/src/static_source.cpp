// StaticSource: a fixed candidate list, replaceable on reload.
#include "discovery/source.h"

namespace pgkeel::discovery {

StaticSource::StaticSource(std::vector<Endpoint> endpoints) : endpoints_(std::move(endpoints)) {}

std::vector<Candidate> StaticSource::candidates() {
  std::lock_guard lock(mutex_);
  std::vector<Candidate> result;
  result.reserve(endpoints_.size());
  for (const Endpoint& endpoint : endpoints_) result.push_back(Candidate{endpoint, RoleHint::None});
  return result;
}

void StaticSource::setEndpoints(std::vector<Endpoint> endpoints) {
  std::lock_guard lock(mutex_);
  endpoints_ = std::move(endpoints);
}

}  // namespace pgkeel::discovery
