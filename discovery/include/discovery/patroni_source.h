// The Patroni source: polls the members' REST GET /cluster, optionally woken by an etcd v3 watch
// on the leader key.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "discovery/source.h"

namespace pgkeel::discovery {

struct PatroniOptions {
  std::vector<std::string> restUrls;  // each member's REST API, e.g. http://10.0.0.1:8008
  std::chrono::milliseconds pollInterval{500};
  std::chrono::milliseconds requestTimeout{1000};
  std::string etcdUrl;        // optional: http://host:2379, the etcd (>= 3.4) v3 JSON gateway
  std::string etcdLeaderKey;  // e.g. /service/<scope>/leader; required with etcdUrl
};

// /cluster is read from the members in the order given and the first answer with members wins
// (Patroni serves it from the DCS, so members agree; a member whose REST API is down is skipped).
// Throws std::invalid_argument on an empty or bad URL list, a bad etcd URL, an etcd URL without
// a leader key, or non-positive intervals.
std::unique_ptr<Source> makePatroniSource(const PatroniOptions& options);

}  // namespace pgkeel::discovery
