// Pure Patroni decisions: GET /cluster bodies and etcd leader-key news to a SourceSnapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "discovery/source.h"

namespace pgkeel::discovery::patroni {

// One entry of /cluster's members[] (Patroni 3.x and 4.x; patroni/utils.py cluster_as_json).
struct Member {
  std::string name;
  std::string role;   // leader | standby_leader | sync_standby | quorum_standby | replica
  std::string state;  // running, streaming, "in archive recovery", stopped, starting, ...
  std::string host;   // empty when the member has no connect_address
  std::uint16_t port = 0;
  std::optional<std::uint32_t> timeline;
  std::optional<std::uint64_t> lag;  // bytes behind the DCS optime; absent or "unknown": empty
  bool operator==(const Member&) const = default;
};

struct ClusterAnswer {
  std::vector<Member> members;  // empty: the answer Patroni gives while its DCS is unreachable
  bool paused = false;          // maintenance mode
};

// Parses a /cluster body. Empty optional, with *error set, on bad JSON or a bad shape; members
// without a name are skipped, and a bad host/port only leaves that member without an address.
std::optional<ClusterAnswer> parseCluster(std::string_view body, std::string* error);

// What the etcd leader key says, when it is watched.
struct LeaderKey {
  enum class State { Unknown, Held, Absent };
  State state = State::Unknown;  // Unknown: not watched, or the watch is down
  std::string holder;            // Held: the member name stored in the key
  std::string deleted;           // Absent: whose key was deleted, "" when not known
  bool operator==(const LeaderKey&) const = default;
};

// Why no /cluster answer with members is at hand.
enum class NoAnswer {
  Unreachable,   // no REST API answered (down, timeout, 5xx, bad body)
  EmptyMembers,  // {"members": []}: Patroni cannot read its DCS
};

// Keeps the last answer with members and the leader-key news; not thread-safe.
//
// - A leader member names the primary (moving while its state is not "running"); no leader is
//   Nobody, moving. A standby cluster's standby_leader is in recovery: Nobody, not moving.
// - No usable answer: the last known members stay candidates. A watched leader key still decides
//   (held by a known member: Named; deleted: Nobody). Without one, a "no leader" answer stays
//   Nobody for kNoLeaderHold (a failover under way must not fall back to a probe-only election
//   that would pick the orphaned old primary); otherwise the opinion is NoOpinion, so the probe
//   elects with the timeline and stale-primary guards. During a DCS outage Patroni demotes its
//   primary by itself (or, with failsafe_mode, keeps it); either way only the probe knows.
// - The etcd key refines an answer: deleted means Nobody until /cluster names a leader other than
//   the deleted one (or the key is written again); held by H while /cluster names another leader
//   means /cluster is stale: Nobody, moving.
inline constexpr std::chrono::seconds kNoLeaderHold{30};

class ClusterTracker {
 public:
  void onAnswer(ClusterAnswer answer);
  void onNoAnswer(NoAnswer why);
  void onLeaderKey(LeaderKey key);
  const LeaderKey& leaderKey() const { return key_; }
  bool answered() const { return last_.has_value(); }
  SourceSnapshot snapshot() const;

 private:
  SourceSnapshot fromAnswer(const ClusterAnswer& answer) const;
  SourceSnapshot withoutAnswer() const;
  void applyLeaderKey(SourceSnapshot& snapshot) const;

  std::optional<ClusterAnswer> last_;  // the last answer with members
  std::optional<NoAnswer> missing_;    // set while the latest poll gave no usable answer
  std::chrono::steady_clock::time_point missingSince_{};
  LeaderKey key_;
};

}  // namespace pgkeel::discovery::patroni
