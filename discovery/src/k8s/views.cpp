// CloudNativePG and Zalando views: cached Kubernetes objects to a SourceSnapshot, without I/O.
#include "k8s/views.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <string_view>

#include "k8s/kube_config.h"

namespace pgkeel::discovery::k8s {
namespace {

using nlohmann::json;
using std::chrono::system_clock;

constexpr std::string_view kPendingFailover = "pending";  // CNPG apiv1.PendingFailoverMarker

const json* field(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// A string member, or "" when absent or not a string.
std::string text(const json& object, const char* key) {
  const json* value = field(object, key);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

// An integer member; absent (CNPG omitempty) or not a number reads as 0.
std::int64_t integer(const json& object, const char* key) {
  const json* value = field(object, key);
  return value != nullptr && value->is_number_integer() ? value->get<std::int64_t>() : 0;
}

bool flag(const json& object, const char* key) {
  const json* value = field(object, key);
  return value != nullptr && value->is_boolean() && value->get<bool>();
}

const json& emptyObject() {
  static const json kEmpty = json::object();
  return kEmpty;
}

const json& child(const json& object, const char* key) {
  const json* value = field(object, key);
  return value != nullptr && value->is_object() ? *value : emptyObject();
}

std::string label(const json& object, const char* key) {
  return text(child(child(object, "metadata"), "labels"), key);
}

std::string annotation(const json& object, const char* key) {
  return text(child(child(object, "metadata"), "annotations"), key);
}

std::string podIp(const json& pod) {
  return text(child(pod, "status"), "podIP");
}

// A pod with metadata.deletionTimestamp is shutting down: still probed, never named.
bool terminating(const json& pod) {
  const json* stamp = field(child(pod, "metadata"), "deletionTimestamp");
  return stamp != nullptr && !stamp->is_null();
}

std::string namespacedName(const json& object, const std::string& name) {
  std::string ns = text(child(object, "metadata"), "namespace");
  return ns.empty() ? name : ns + "/" + name;
}

// The candidate for `name` when it is present, or nullptr.
const Candidate* findCandidate(const std::vector<Candidate>& candidates, const std::string& name) {
  for (const Candidate& candidate : candidates) {
    if (candidate.name == name) return &candidate;
  }
  return nullptr;
}

// Names `name` as the primary when it is a candidate and not terminating; otherwise Nobody and
// `why` says which of the two failed.
void nameOrNobody(SourceSnapshot& snapshot, const ObjectMap& pods, const std::string& name,
                  std::string* why) {
  const Candidate* candidate = findCandidate(snapshot.candidates, name);
  auto pod = pods.find(name);
  if (candidate == nullptr) {
    snapshot.opinion = LeaderOpinion::Nobody;
    *why = pod == pods.end() ? " (pod not found)" : " (pod has no IP)";
    return;
  }
  if (pod != pods.end() && terminating(pod->second)) {
    snapshot.opinion = LeaderOpinion::Nobody;
    *why = " (pod terminating)";
    return;
  }
  snapshot.opinion = LeaderOpinion::Named;
  snapshot.leader = candidate->endpoint;
  snapshot.leaderName = name;
}

// ---- CloudNativePG ----

RoleHint cnpgHint(const json& pod) {
  std::string role = label(pod, "cnpg.io/instanceRole");
  if (role.empty()) role = label(pod, "role");  // CNPG <= 1.20 has only `role`
  if (role == "primary") return RoleHint::Primary;
  if (role == "replica") return RoleHint::Replica;
  return RoleHint::None;  // "unhealthy" (>= 1.30, old primary during a failover) or no label
}

std::vector<Candidate> cnpgCandidates(const ObjectMap& pods, const std::string& cluster,
                                      std::uint16_t port) {
  std::vector<Candidate> candidates;
  for (const auto& [name, pod] : pods) {
    if (label(pod, "cnpg.io/podRole") != "instance") continue;  // poolers and job pods
    std::string owner = label(pod, "cnpg.io/cluster");
    if (!cluster.empty() && !owner.empty() && owner != cluster) continue;
    std::string ip = podIp(pod);
    if (ip.empty()) continue;
    RoleHint hint = terminating(pod) ? RoleHint::None : cnpgHint(pod);
    candidates.push_back(Candidate{Endpoint{ip, port}, hint, name});
  }
  return candidates;
}

std::string cnpgReadiness(const json& status) {
  return " (" + std::to_string(integer(status, "readyInstances")) + "/" +
         std::to_string(integer(status, "instances")) + " ready)";
}

void cnpgDecide(SourceSnapshot& snapshot, const json& cluster, const ObjectMap& pods) {
  const json& status = child(cluster, "status");
  std::string current = text(status, "currentPrimary");
  std::string target = text(status, "targetPrimary");
  std::string prefix = "cnpg " + namespacedName(cluster, text(child(cluster, "metadata"), "name"));
  std::string readiness = cnpgReadiness(status);
  std::string why;
  if (flag(child(child(cluster, "spec"), "replica"), "enabled")) {
    snapshot.opinion = LeaderOpinion::Nobody;
    snapshot.detail = prefix + ": replica cluster, designated primary " +
                      (current.empty() ? std::string("none") : current) + ", no writes" + readiness;
  } else if (current.empty() && target.empty()) {
    snapshot.opinion = LeaderOpinion::Nobody;
    snapshot.detail = prefix + ": no primary yet" + readiness;
  } else if (current == target) {
    nameOrNobody(snapshot, pods, current, &why);
    snapshot.detail = prefix + ": primary " + current + why + readiness;
  } else {
    snapshot.moving = true;
    std::string kind = text(status, "phase");
    if (target == kPendingFailover) {
      snapshot.opinion = LeaderOpinion::Nobody;
    } else {
      nameOrNobody(snapshot, pods, target, &why);
    }
    snapshot.detail = prefix + ": " + (kind.empty() ? std::string("transition") : kind) + " " +
                      (current.empty() ? std::string("none") : current) + " -> " + target + why +
                      readiness;
  }
}

// ---- Zalando / Patroni on Kubernetes ----

std::optional<int> digits(std::string_view text, std::size_t at, std::size_t count) {
  if (at + count > text.size()) return std::nullopt;
  int value = 0;
  const char* begin = text.data() + at;
  auto [ptr, ec] = std::from_chars(begin, begin + count, value);
  if (ec != std::errc() || ptr != begin + count) return std::nullopt;
  return value;
}

// Python's datetime.isoformat(): "2025-06-11T08:20:32.004417+00:00" (fraction and offset
// optional; "Z" accepted). Empty on anything else.
std::optional<system_clock::time_point> parseIsoTime(std::string_view text) {
  auto year = digits(text, 0, 4), month = digits(text, 5, 2), day = digits(text, 8, 2);
  auto hour = digits(text, 11, 2), minute = digits(text, 14, 2), second = digits(text, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != ' ') || text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  std::chrono::year_month_day date{std::chrono::year{*year}, std::chrono::month(*month),
                                   std::chrono::day(*day)};
  if (!date.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
  std::chrono::microseconds fraction{0};
  std::size_t at = 19;
  if (at < text.size() && text[at] == '.') {
    std::size_t end = at + 1;
    while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
    std::size_t count = end - at - 1;
    if (count == 0 || count > 9) return std::nullopt;
    auto value = digits(text, at + 1, std::min<std::size_t>(count, 6));
    if (!value) return std::nullopt;
    std::int64_t micros = *value;
    for (std::size_t i = count; i < 6; ++i) micros *= 10;
    fraction = std::chrono::microseconds(micros);
    at = end;
  }
  std::chrono::minutes offset{0};
  std::string_view zone = text.substr(at);
  if (zone == "Z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    auto hours = digits(zone, 1, 2), minutes = digits(zone, 4, 2);
    if (!hours || !minutes) return std::nullopt;
    offset = std::chrono::minutes(*hours * 60 + *minutes) * (zone[0] == '-' ? -1 : 1);
  } else if (!zone.empty()) {
    return std::nullopt;
  }
  auto local = std::chrono::sys_days(date) + std::chrono::hours(*hour) +
               std::chrono::minutes(*minute) + std::chrono::seconds(*second) + fraction;
  return std::chrono::time_point_cast<system_clock::duration>(local - offset);
}

}  // namespace

std::string formatIsoTime(system_clock::time_point at) {
  auto micros = std::chrono::floor<std::chrono::microseconds>(at);
  auto seconds = std::chrono::floor<std::chrono::seconds>(micros);
  auto days = std::chrono::floor<std::chrono::days>(seconds);
  std::chrono::hh_mm_ss clock{seconds - days};
  std::chrono::year_month_day date{days};
  char buffer[96];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02u-%02uT%02ld:%02ld:%02lld.%06lld+00:00",
                static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                static_cast<unsigned>(date.day()), static_cast<long>(clock.hours().count()),
                static_cast<long>(clock.minutes().count()),
                static_cast<long long>(clock.seconds().count()),
                static_cast<long long>((micros - seconds).count()));
  return buffer;
}

namespace {

// The ttl annotation: seconds as a decimal string ("30"); empty on anything else.
std::optional<std::chrono::microseconds> parseTtl(const std::string& text) {
  double seconds = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || !(seconds > 0)) {
    return std::nullopt;
  }
  return std::chrono::microseconds(static_cast<std::int64_t>(seconds * 1e6));
}

RoleHint roleHint(const std::string& role) {
  if (role == "master" || role == "primary") return RoleHint::Primary;
  if (role == "replica") return RoleHint::Replica;
  return RoleHint::None;
}

// The pod's `status` annotation (Patroni's member JSON): a hint only while state is running.
RoleHint statusHint(const json& pod) {
  json status = json::parse(annotation(pod, "status"), nullptr, false);
  if (status.is_discarded() || text(status, "state") != "running") return RoleHint::None;
  return roleHint(text(status, "role"));
}

// spilo-role is patched by Patroni itself and goes stale on a partitioned node; when it and the
// member JSON disagree, there is no hint.
RoleHint zalandoHint(const json& pod) {
  if (terminating(pod)) return RoleHint::None;
  RoleHint fromLabel = roleHint(label(pod, "spilo-role"));
  RoleHint fromStatus = statusHint(pod);
  if (fromStatus == RoleHint::None || fromLabel == fromStatus) return fromLabel;
  return fromLabel == RoleHint::None ? fromStatus : RoleHint::None;
}

std::vector<Candidate> zalandoCandidates(const ObjectMap& pods, std::uint16_t port) {
  std::vector<Candidate> candidates;
  for (const auto& [name, pod] : pods) {
    if (label(pod, "application") != "spilo") continue;  // connection pooler pods
    std::string ip = podIp(pod);
    if (ip.empty()) continue;
    candidates.push_back(Candidate{Endpoint{ip, port}, zalandoHint(pod), name});
  }
  return candidates;
}

std::string zalandoPrefix(const ObjectMap& pods, const json* leader) {
  const json* sample = leader;
  if (sample == nullptr && !pods.empty()) sample = &pods.begin()->second;
  if (sample == nullptr) return "zalando";
  std::string cluster = label(*sample, "cluster-name");
  if (cluster.empty()) cluster = text(child(*sample, "metadata"), "name");
  return "zalando " + namespacedName(*sample, cluster);
}

std::string isoText(system_clock::time_point at) {
  auto seconds = std::chrono::floor<std::chrono::seconds>(at);
  std::chrono::hh_mm_ss clock{seconds - std::chrono::floor<std::chrono::days>(seconds)};
  std::chrono::year_month_day date{std::chrono::floor<std::chrono::days>(seconds)};
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02u-%02uT%02ld:%02ld:%02lldZ",
                static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                static_cast<unsigned>(date.day()), static_cast<long>(clock.hours().count()),
                static_cast<long>(clock.minutes().count()),
                static_cast<long long>(clock.seconds().count()));
  return buffer;
}

void zalandoDecide(View& view, const ObjectMap& pods, const json& leader,
                   system_clock::time_point now, const std::string& prefix) {
  SourceSnapshot& snapshot = view.snapshot;
  std::string holder = annotation(leader, "leader");
  auto renewed = parseIsoTime(annotation(leader, "renewTime"));
  auto ttl = parseTtl(annotation(leader, "ttl"));
  snapshot.opinion = LeaderOpinion::Nobody;
  snapshot.moving = true;
  if (holder.empty()) {
    snapshot.detail = prefix + ": no leader (leader lock released or not taken)";
    return;
  }
  if (!renewed || !ttl) {
    snapshot.detail = prefix + ": leader " + holder + " with unreadable renewTime/ttl";
    return;
  }
  auto expiry = std::chrono::time_point_cast<system_clock::duration>(*renewed + *ttl);
  if (expiry <= now) {
    snapshot.detail = prefix + ": leader " + holder + " lock expired at " + isoText(expiry);
    return;
  }
  view.recheckAt = expiry;
  std::string why;
  nameOrNobody(snapshot, pods, holder, &why);
  snapshot.moving = snapshot.opinion != LeaderOpinion::Named;
  snapshot.detail = prefix + ": leader " + holder + why;
}

// ---- Secrets ----

// The decoded data[key]; "" and `problem` set when it is absent, not base64 or empty.
std::string secretValue(const json& data, const char* key, std::string* problem) {
  const json* value = field(data, key);
  std::string decoded;
  if (value == nullptr || !value->is_string()) {
    *problem = std::string("has no data.") + key;
  } else if (!decodeBase64(value->get<std::string>(), &decoded)) {
    *problem = std::string("has data.") + key + " that is not base64";
  } else if (decoded.empty()) {
    *problem = std::string("has an empty data.") + key;
  }
  return problem->empty() ? decoded : std::string();
}

}  // namespace

std::string cnpgSecretName(const std::string& cluster) {
  return cluster + "-app";
}

std::string zalandoSecretName(const std::string& user, const std::string& cluster) {
  std::string name = user;
  std::replace(name.begin(), name.end(), '_', '-');
  return name + "." + cluster + ".credentials.postgresql.acid.zalan.do";
}

SecretCredentials secretCredentials(const json* secret) {
  SecretCredentials credentials;
  if (secret == nullptr) {
    credentials.problem = "not found (or not readable)";
    return credentials;
  }
  const json& data = child(*secret, "data");
  // CNPG writes both `username` and `user`; a user-supplied basic-auth Secret may have only one.
  const char* userKey =
      field(data, "username") != nullptr || field(data, "user") == nullptr ? "username" : "user";
  std::string user = secretValue(data, userKey, &credentials.problem);
  if (!credentials.problem.empty()) return credentials;
  std::string password = secretValue(data, "password", &credentials.problem);
  if (!credentials.problem.empty()) return credentials;
  credentials.user = std::move(user);
  credentials.password = std::move(password);
  return credentials;
}

void applySecretCredentials(View& view, const json* secret, const std::string& secretName) {
  SecretCredentials credentials = secretCredentials(secret);
  if (!credentials.problem.empty()) {
    view.credentials = "no probe credentials: Secret " + secretName + " " + credentials.problem +
                       "; probing with the probe DSN's own user and password";
    return;
  }
  std::string version = text(child(*secret, "metadata"), "resourceVersion");
  view.credentials = "probe credentials from Secret " + secretName + " (user " + credentials.user +
                     (version.empty() ? std::string() : ", resourceVersion " + version) + ")";
  view.snapshot.probeUser = std::move(credentials.user);
  view.snapshot.probePassword = std::move(credentials.password);
}

View cnpgView(const json* cluster, const ObjectMap& pods, std::uint16_t port) {
  View view;
  SourceSnapshot& snapshot = view.snapshot;
  std::string name = cluster ? text(child(*cluster, "metadata"), "name") : std::string();
  snapshot.candidates = cnpgCandidates(pods, name, port);
  if (cluster == nullptr) {
    // The Cluster is not listed yet or was deleted: nothing can confirm a primary, so no writes.
    snapshot.opinion = LeaderOpinion::Nobody;
    snapshot.detail = "cnpg: cluster not found";
    return view;
  }
  cnpgDecide(snapshot, *cluster, pods);
  return view;
}

View zalandoView(const ObjectMap& pods, const json* leader, system_clock::time_point now,
                 std::uint16_t port) {
  View view;
  view.snapshot.candidates = zalandoCandidates(pods, port);
  std::string prefix = zalandoPrefix(pods, leader);
  if (leader == nullptr) {
    // No leader object yet (or the wrong mode is watched): election by probe alone, with the
    // table builder's timeline and stale-primary guards. Labels never decide.
    view.snapshot.opinion = LeaderOpinion::NoOpinion;
    view.snapshot.detail = prefix + ": leader object not found, election by probe";
    return view;
  }
  zalandoDecide(view, pods, *leader, now, prefix);
  return view;
}

}  // namespace pgkeel::discovery::k8s
