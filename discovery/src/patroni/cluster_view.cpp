// Patroni /cluster parsing and the ClusterTracker's decisions (see cluster_view.h).
#include "patroni/cluster_view.h"

#include <limits>

#include <nlohmann/json.hpp>

namespace pgkeel::discovery::patroni {
namespace {

using nlohmann::json;

std::string text(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

template <typename T>
std::optional<T> unsignedField(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_unsigned()) return std::nullopt;
  auto value = it->get<std::uint64_t>();
  if (value > std::numeric_limits<T>::max()) return std::nullopt;
  return static_cast<T>(value);
}

Member parseMember(const json& item) {
  Member member;
  member.name = text(item, "name");
  member.role = text(item, "role");
  member.state = text(item, "state");
  member.host = text(item, "host");
  member.port = unsignedField<std::uint16_t>(item, "port").value_or(0);
  if (member.port == 0) member.host.clear();
  member.timeline = unsignedField<std::uint32_t>(item, "timeline");
  member.lag = unsignedField<std::uint64_t>(item, "lag");  // "unknown" reads as empty
  return member;
}

bool replicating(const std::string& state) {
  return state == "running" || state == "streaming" || state == "in archive recovery";
}

RoleHint hintFor(const Member& member) {
  if (member.role == "leader")
    return member.state == "running" ? RoleHint::Primary : RoleHint::None;
  if (member.role == "standby_leader" || member.role == "sync_standby" ||
      member.role == "quorum_standby" || member.role == "replica") {
    return replicating(member.state) ? RoleHint::Replica : RoleHint::None;
  }
  return RoleHint::None;
}

const Member* findRole(const ClusterAnswer& answer, const char* role) {
  for (const Member& member : answer.members) {
    if (member.role == role) return &member;
  }
  return nullptr;
}

void setNobody(SourceSnapshot& snapshot, bool moving, std::string detail) {
  snapshot.opinion = LeaderOpinion::Nobody;
  snapshot.leader = Endpoint{};
  snapshot.leaderName.clear();
  snapshot.moving = moving;
  snapshot.detail = std::move(detail);
}

}  // namespace

std::optional<ClusterAnswer> parseCluster(std::string_view body, std::string* error) {
  json document = json::parse(body, nullptr, false);
  if (document.is_discarded() || !document.is_object()) {
    *error = "/cluster: not a JSON object";
    return std::nullopt;
  }
  auto members = document.find("members");
  if (members == document.end() || !members->is_array()) {
    *error = "/cluster: no members array";
    return std::nullopt;
  }
  ClusterAnswer answer;
  for (const json& item : *members) {
    if (!item.is_object()) continue;
    Member member = parseMember(item);
    if (!member.name.empty()) answer.members.push_back(std::move(member));
  }
  auto pause = document.find("pause");
  answer.paused = pause != document.end() && pause->is_boolean() && pause->get<bool>();
  return answer;
}

void ClusterTracker::onAnswer(ClusterAnswer answer) {
  if (answer.members.empty()) {
    onNoAnswer(NoAnswer::EmptyMembers);
    return;
  }
  last_ = std::move(answer);
  missing_.reset();
}

void ClusterTracker::onNoAnswer(NoAnswer why) {
  if (!missing_) missingSince_ = std::chrono::steady_clock::now();
  missing_ = why;
}

void ClusterTracker::onLeaderKey(LeaderKey key) {
  key_ = std::move(key);
}

SourceSnapshot ClusterTracker::snapshot() const {
  if (!last_) {
    SourceSnapshot snapshot;
    snapshot.detail = "patroni: no /cluster answer yet";
    return snapshot;
  }
  if (missing_) return withoutAnswer();
  SourceSnapshot snapshot = fromAnswer(*last_);
  applyLeaderKey(snapshot);
  return snapshot;
}

SourceSnapshot ClusterTracker::withoutAnswer() const {
  const SourceSnapshot answered = fromAnswer(*last_);
  SourceSnapshot snapshot;
  snapshot.candidates = answered.candidates;
  const std::string why = *missing_ == NoAnswer::EmptyMembers
                              ? "DCS unreachable (no members), last known members"
                              : "no REST API answered, last known members";
  if (key_.state == LeaderKey::State::Absent) {
    setNobody(snapshot, true, "patroni: " + why + "; the leader key is deleted");
    return snapshot;
  }
  if (key_.state == LeaderKey::State::Held) {
    for (const Member& member : last_->members) {
      if (member.name != key_.holder || member.host.empty()) continue;
      snapshot.opinion = LeaderOpinion::Named;
      snapshot.leader = Endpoint{member.host, member.port};
      snapshot.leaderName = member.name;
      snapshot.detail = "patroni: " + why + "; the leader key names " + member.name;
      return snapshot;
    }
    setNobody(snapshot, true, "patroni: " + why + "; the leader key names unknown " + key_.holder);
    return snapshot;
  }
  if (answered.opinion == LeaderOpinion::Nobody &&
      std::chrono::steady_clock::now() - missingSince_ < kNoLeaderHold) {
    setNobody(snapshot, answered.moving, "patroni: " + why + "; no leader at the last answer");
    return snapshot;
  }
  snapshot.detail = "patroni: " + why + ", election by probe";
  return snapshot;
}

SourceSnapshot ClusterTracker::fromAnswer(const ClusterAnswer& answer) const {
  SourceSnapshot snapshot;
  for (const Member& member : answer.members) {
    if (member.host.empty()) continue;
    snapshot.candidates.push_back(
        Candidate{Endpoint{member.host, member.port}, hintFor(member), member.name});
  }
  std::string paused = answer.paused ? " (paused)" : "";
  const Member* leader = findRole(answer, "leader");
  const Member* standby = findRole(answer, "standby_leader");
  if (leader == nullptr && standby != nullptr) {
    setNobody(snapshot, false,
              "patroni: standby cluster, standby leader " + standby->name + ", no writes" + paused);
  } else if (leader == nullptr) {
    setNobody(snapshot, true, "patroni: no leader (failover under way)" + paused);
  } else if (leader->host.empty()) {
    setNobody(snapshot, true, "patroni: leader " + leader->name + " has no address" + paused);
  } else {
    snapshot.opinion = LeaderOpinion::Named;
    snapshot.leader = Endpoint{leader->host, leader->port};
    snapshot.leaderName = leader->name;
    snapshot.moving = leader->state != "running";
    snapshot.detail = "patroni: leader " + leader->name + " (" + snapshot.leader.str() + ")" +
                      (snapshot.moving ? " state " + leader->state : std::string()) + paused;
  }
  return snapshot;
}

void ClusterTracker::applyLeaderKey(SourceSnapshot& snapshot) const {
  if (snapshot.opinion != LeaderOpinion::Named) return;
  const std::string& named = snapshot.leaderName;
  if (key_.state == LeaderKey::State::Absent && (key_.deleted.empty() || key_.deleted == named)) {
    setNobody(snapshot, true, "patroni: leader key deleted, /cluster still names " + named);
  } else if (key_.state == LeaderKey::State::Held && key_.holder != named) {
    setNobody(snapshot, true,
              "patroni: /cluster names " + named + " but the leader key holds " + key_.holder);
  }
}

}  // namespace pgkeel::discovery::patroni
