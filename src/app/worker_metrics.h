// The data-plane metrics: each worker's own counters, summed at scrape time, and the source's.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "discovery/routing_table.h"
#include "discovery/source.h"
#include "metrics/scrape.h"
#include "router/routing_policy.h"
#include "session/session_manager.h"

namespace pgkeel::app {

using Managers = std::vector<std::unique_ptr<session::SessionManager>>;

// Client connections open now through one listener, summed over workers (never below zero).
std::uint64_t activeOn(const Managers& managers, router::ListenerRole role);

// Server connections opened and failed per node of `table`.
void addServerCounters(metrics::Scrape& scrape, const Managers& managers,
                       const discovery::RoutingTable& table);
// pgkeel_server_connect_duration_seconds from the workers' buckets.
void addConnectHistogram(metrics::Scrape& scrape, const Managers& managers);
void addSourceStats(metrics::Scrape& scrape, const discovery::Source& source);
// Bytes forwarded and client connections accepted, active, waited and closed, per listener.
void addSessionCounters(metrics::Scrape& scrape, const Managers& managers);

}  // namespace pgkeel::app
