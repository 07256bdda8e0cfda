// Informer threads (list, watch, re-watch, re-list with a diff, backoff), InformerSource and
// makeKubernetesSource.
#include "k8s/informer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

namespace pgkeel::discovery::k8s {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string metadataString(const nlohmann::json& object, const char* key) {
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto it = meta->find(key);
  return it != meta->end() && it->is_string() ? it->get<std::string>() : "";
}

std::string topString(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// A response body for logs: the Status's message, else the start of the text.
std::string bodyText(const std::string& body) {
  nlohmann::json status = nlohmann::json::parse(body, nullptr, false);
  if (!status.is_discarded() && status.is_object()) return describeStatus(status);
  return body.substr(0, 200);
}

// List items of built-in kinds carry no kind/apiVersion; watch events do. Fill them in from the
// list so that the same object compares equal whichever way it arrived.
void fillKind(nlohmann::json* item, const std::string& listKind, const std::string& apiVersion) {
  const std::string suffix = "List";
  if (!item->contains("kind") && listKind.size() > suffix.size() &&
      listKind.compare(listKind.size() - suffix.size(), suffix.size(), suffix) == 0) {
    (*item)["kind"] = listKind.substr(0, listKind.size() - suffix.size());
  }
  if (!item->contains("apiVersion") && !apiVersion.empty()) (*item)["apiVersion"] = apiVersion;
}

}  // namespace

std::vector<ObjectChange> diffObjects(const ObjectMap& before, const ObjectMap& after) {
  std::vector<ObjectChange> changes;
  auto old = before.begin();
  auto now = after.begin();
  while (old != before.end() || now != after.end()) {
    if (now == after.end() || (old != before.end() && old->first < now->first)) {
      changes.push_back({ObjectChange::Kind::Deleted, old->first});
      ++old;
    } else if (old == before.end() || now->first < old->first) {
      changes.push_back({ObjectChange::Kind::Added, now->first});
      ++now;
    } else {
      if (old->second != now->second) changes.push_back({ObjectChange::Kind::Modified, now->first});
      ++old;
      ++now;
    }
  }
  return changes;
}

milliseconds backoffDelay(const BackoffPolicy& policy, int attempt, double unitRandom) {
  double cap = static_cast<double>(policy.max.count());
  double delay = static_cast<double>(policy.initial.count());
  for (int i = 0; i < attempt && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  unitRandom = std::clamp(unitRandom, 0.0, 1.0);
  return milliseconds(static_cast<milliseconds::rep>(delay / 2 + delay / 2 * unitRandom));
}

Informer::Informer(std::shared_ptr<ApiClient> api, InformerOptions options, OnChange onChange)
    : api_(api),
      options_(std::move(options)),
      onChange_(std::move(onChange)),
      session_(std::move(api)),
      random_(std::random_device{}()) {}

Informer::~Informer() {
  stop();
}

void Informer::start() {
  thread_ = std::thread([this] {
    run();
    exited_ = true;
  });
}

void Informer::requestStop() {
  stopping_ = true;
  { std::lock_guard lock(mutex_); }
  wake_.notify_all();
  session_.abort();
}

void Informer::stop() {
  requestStop();
  if (!thread_.joinable()) return;
  // The thread may be about to send a request: keep aborting until it has left.
  while (!exited_) {
    session_.abort();
    std::this_thread::sleep_for(milliseconds(5));
  }
  thread_.join();
}

bool Informer::synced() const {
  std::lock_guard lock(mutex_);
  return stats_.synced;
}

ObjectMap Informer::objects() const {
  std::lock_guard lock(mutex_);
  return cache_;
}

SourceStats Informer::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::string Informer::resourceVersion() const {
  std::lock_guard lock(mutex_);
  return resourceVersion_;
}

void Informer::run() {
  bool needList = true;
  bool afterWatch = false;  // the next watch resumes one that ended
  int failures = 0;
  int gones = 0;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  while (!stopping()) {
    if (!needList && afterWatch) {
      std::lock_guard lock(mutex_);
      ++stats_.rewatches;
    }
    bool listing = needList;
    Attempt attempt = listing ? list() : watch();
    afterWatch = !listing;
    switch (attempt.outcome) {
      case Outcome::Stopped:
        return;
      case Outcome::Ok:
        failures = 0;
        needList = false;
        if (!listing) gones = 0;
        continue;
      case Outcome::Gone:
        needList = true;
        afterWatch = false;
        if (gones++ == 0) continue;  // re-list at once the first time
        break;
      case Outcome::Quiet:
      case Outcome::Failed:
        break;
    }
    milliseconds delay = backoffDelay(options_.backoff, failures++, unit(random_));
    if (attempt.retryAfter) {
      delay = std::max<milliseconds>(
          delay, std::min<milliseconds>(*attempt.retryAfter, std::chrono::minutes(10)));
    }
    if (!sleepFor(delay)) return;
  }
}

bool Informer::sleepFor(milliseconds delay) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, delay, [this] { return stopping(); });
}

Informer::Attempt Informer::list() {
  ObjectMap fresh;
  std::string continueToken;
  std::string resourceVersion;
  int restarts = 0;
  const std::string path = options_.collection.path();
  while (true) {
    HttpResponse response =
        session_.get(path + listQuery(options_.selectors, options_.pageLimit, continueToken));
    if (stopping()) return {Outcome::Stopped};
    if (response.status == 410 && !continueToken.empty() && restarts < 3) {
      count("410");
      spdlog::info("kubernetes: {}: the list's continue token expired; listing from the start",
                   options_.name);
      fresh.clear();
      continueToken.clear();
      ++restarts;
      continue;
    }
    if (response.status != 200 || !response.error.empty()) {
      bool noAnswer = !response.error.empty();
      if (!noAnswer && options_.optional && (response.status == 403 || response.status == 404)) {
        return refused(response);
      }
      return failed(noAnswer ? 0 : response.status,
                    noAnswer ? response.error : bodyText(response.body), "list",
                    response.retryAfter);
    }
    nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
    auto items = body.is_object() ? body.find("items") : body.end();
    if (body.is_discarded() || !body.is_object() || items == body.end() ||
        !(items->is_array() || items->is_null())) {
      count("parse");
      spdlog::warn("kubernetes: {}: the list answer is not a list: {}", options_.name,
                   response.body.substr(0, 200));
      return {Outcome::Failed};
    }
    std::string kind = topString(body, "kind");
    std::string apiVersion = topString(body, "apiVersion");
    for (nlohmann::json& item : items->is_array() ? *items : nlohmann::json::array()) {
      std::string name = metadataString(item, "name");
      if (name.empty()) continue;
      fillKind(&item, kind, apiVersion);
      fresh[name] = std::move(item);
    }
    resourceVersion = metadataString(body, "resourceVersion");
    continueToken = metadataString(body, "continue");
    if (continueToken.empty()) break;
  }
  replace(std::move(fresh), resourceVersion);
  return {Outcome::Ok};
}

void Informer::replace(ObjectMap fresh, const std::string& resourceVersion) {
  std::vector<ObjectChange> changes;
  bool first = false;
  std::size_t size = fresh.size();
  {
    std::lock_guard lock(mutex_);
    changes = diffObjects(cache_, fresh);
    cache_ = std::move(fresh);
    resourceVersion_ = resourceVersion;
    first = !listed_;
    if (!first) ++stats_.relists;
    listed_ = true;
    stats_.synced = true;
    refusals_ = 0;
  }
  if (first) {
    spdlog::info("kubernetes: {}: listed {} object(s) at resourceVersion {}", options_.name, size,
                 resourceVersion);
  } else {
    spdlog::info("kubernetes: {}: re-listed at resourceVersion {}: {} change(s) since the cache",
                 options_.name, resourceVersion, changes.size());
  }
  if (first || !changes.empty()) onChange_(changes);
}

Informer::Attempt Informer::watch() {
  long low = options_.watchTimeoutMin.count();
  long high = std::max(low, static_cast<long>(options_.watchTimeoutMax.count()));
  long timeoutSeconds = std::uniform_int_distribution<long>(low, high)(random_);
  std::string from = resourceVersion();
  WatchStreamParser parser;
  Attempt result;
  bool progress = false;
  Clock::time_point start = Clock::now();
  Clock::time_point lastProgress = start;
  auto handler = [&](WatchEvent&& event) {
    progress = true;
    lastProgress = Clock::now();
    return apply(std::move(event), &result);
  };
  auto readTimeout = std::min<std::chrono::milliseconds>(
      seconds(timeoutSeconds) + options_.watchReadSlack, options_.watchIdleTimeout);
  HttpResponse response = session_.stream(
      options_.collection.path() +
          watchQuery(options_.selectors, from, static_cast<int>(timeoutSeconds)),
      readTimeout,
      [&](std::string_view data) { return !stopping() && parser.feed(data, handler); });
  if (stopping()) return {Outcome::Stopped};
  if (response.status != 200) {
    if (response.status == 410) {
      count("410");
      spdlog::info("kubernetes: {}: watch from resourceVersion {} is gone (410): {}; re-listing",
                   options_.name, from, bodyText(response.body));
      return {Outcome::Gone};
    }
    bool noAnswer = !response.error.empty() || response.status == 0;
    nlohmann::json status = nlohmann::json::parse(response.body, nullptr, false);
    if (!noAnswer && isTooLargeResourceVersion(status)) {
      count(errorKind(response.status));
      spdlog::warn("kubernetes: {}: {}; re-listing", options_.name, describeStatus(status));
      return {Outcome::Gone};
    }
    return failed(noAnswer ? 0 : response.status,
                  noAnswer ? response.error : bodyText(response.body), "watch",
                  response.retryAfter);
  }
  bool ended = result.outcome != Outcome::Ok || !parser.error().empty();
  if (!ended && response.error.empty()) parser.finish(handler);
  if (result.outcome != Outcome::Ok) return result;
  if (!parser.error().empty()) {
    count("parse");
    spdlog::warn("kubernetes: {}: bad watch stream ({}); re-listing", options_.name,
                 parser.error());
    return {Outcome::Gone};
  }
  if (!response.error.empty()) {
    if (Clock::now() - lastProgress >= readTimeout - std::chrono::seconds(1)) {
      spdlog::debug("kubernetes: {}: watch quiet for {} s; resuming from resourceVersion {}",
                    options_.name, std::chrono::duration_cast<seconds>(readTimeout).count(),
                    resourceVersion());
      return {Outcome::Ok};
    }
    count("network");
    spdlog::info("kubernetes: {}: watch dropped ({}); resuming from resourceVersion {}",
                 options_.name, response.error, resourceVersion());
  }
  if (!progress && Clock::now() - start < options_.minQuietWatch) return {Outcome::Quiet};
  return {Outcome::Ok};
}

bool Informer::apply(WatchEvent&& event, Attempt* result) {
  if (event.type == EventType::Bookmark) {
    std::string version = metadataString(event.object, "resourceVersion");
    std::lock_guard lock(mutex_);
    if (!version.empty()) resourceVersion_ = version;
    return true;
  }
  if (event.type == EventType::Error) {
    const nlohmann::json& status = event.object;
    if (isGone(status)) {
      count("410");
      spdlog::info("kubernetes: {}: watch expired: {}; re-listing", options_.name,
                   describeStatus(status));
      *result = {Outcome::Gone};
    } else if (isTooLargeResourceVersion(status)) {
      count(errorKind(statusCode(status) == 0 ? 504 : statusCode(status)));
      spdlog::warn("kubernetes: {}: {}; re-listing", options_.name, describeStatus(status));
      *result = {Outcome::Gone};
    } else {
      int code = statusCode(status) == 0 ? 500 : statusCode(status);
      *result = failed(code, describeStatus(status), "watch", std::nullopt);
    }
    return false;
  }
  if (metadataString(event.object, "name").empty()) {
    count("parse");
    spdlog::warn("kubernetes: {}: a watch event's object has no metadata.name; re-listing",
                 options_.name);
    *result = {Outcome::Gone};
    return false;
  }
  upsert(std::move(event.object), event.type == EventType::Deleted);
  return true;
}

void Informer::upsert(nlohmann::json object, bool remove) {
  std::string name = metadataString(object, "name");
  std::string version = metadataString(object, "resourceVersion");
  std::optional<ObjectChange> change;
  {
    std::lock_guard lock(mutex_);
    ++stats_.events;
    if (!version.empty()) resourceVersion_ = version;
    auto it = cache_.find(name);
    if (remove) {
      if (it != cache_.end()) {
        cache_.erase(it);
        change = ObjectChange{ObjectChange::Kind::Deleted, name};
      }
    } else if (it == cache_.end()) {
      cache_.emplace(name, std::move(object));
      change = ObjectChange{ObjectChange::Kind::Added, name};
    } else if (it->second != object) {
      it->second = std::move(object);
      change = ObjectChange{ObjectChange::Kind::Modified, name};
    }
  }
  if (change) onChange_({*change});
}

Informer::Attempt Informer::failed(int status, const std::string& message, const char* verb,
                                   std::optional<seconds> retryAfter) {
  count(errorKind(status));
  const Collection& c = options_.collection;
  std::string where = c.ns.empty() ? "all namespaces" : "namespace " + c.ns;
  std::string after =
      retryAfter ? " (Retry-After " + std::to_string(retryAfter->count()) + " s)" : "";
  if (status == 0) {
    spdlog::warn("kubernetes: {}: {} failed: {}; retrying", options_.name, verb, message);
  } else if (status == 401) {
    api_->token().invalidate();
    spdlog::warn("kubernetes: {}: {} unauthorized (401): {}; reading the token again",
                 options_.name, verb, message);
  } else if (status == 403) {
    spdlog::error(
        "kubernetes: {}: forbidden (403) to {} {} in {}: RBAC is missing; grant the service "
        "account get, list and watch on {} ({})",
        options_.name, verb, c.resource(), where, c.resource(), message);
  } else if (status == 404) {
    spdlog::error(
        "kubernetes: {}: {} {} in {}: not found (404); is the resource served (its "
        "CustomResourceDefinition installed)? ({})",
        options_.name, verb, c.resource(), where, message);
  } else {
    spdlog::warn("kubernetes: {}: {} {} failed with HTTP {}: {}; backing off{}", options_.name,
                 verb, c.resource(), status, message, after);
  }
  return {Outcome::Failed, retryAfter};
}

// An optional collection the server refuses (403, 404): synced with what the cache holds (nothing
// before a first list) so that the source goes on; retried with backoff, logged once per streak.
Informer::Attempt Informer::refused(const HttpResponse& response) {
  bool first = false;
  bool wasSynced = false;
  {
    std::lock_guard lock(mutex_);
    first = refusals_++ == 0;
    wasSynced = stats_.synced;
    stats_.synced = true;
  }
  if (first) {
    failed(response.status, bodyText(response.body), "list", response.retryAfter);
    spdlog::warn("kubernetes: {}: going on without it; retrying in the background", options_.name);
  } else {
    count(errorKind(response.status));
    spdlog::debug("kubernetes: {}: list still refused with HTTP {}", options_.name,
                  response.status);
  }
  if (!wasSynced) onChange_({});
  return {Outcome::Failed, response.retryAfter};
}

void Informer::count(const std::string& kind) {
  std::lock_guard lock(mutex_);
  ++stats_.errors[kind];
}

InformerSource::InformerSource(std::string name, std::shared_ptr<ApiClient> api,
                               std::vector<InformerOptions> informers, ViewFn view)
    : name_(std::move(name)), view_(std::move(view)) {
  for (InformerOptions& options : informers) {
    informers_.push_back(std::make_unique<Informer>(
        api, std::move(options), [this](const std::vector<ObjectChange>&) { refresh(); }));
  }
  std::vector<ObjectMap> empty(informers_.size());
  snapshot_ = view_(empty, std::chrono::system_clock::now()).snapshot;
}

InformerSource::~InformerSource() {
  stop();
}

SourceSnapshot InformerSource::snapshot() {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

void InformerSource::start(std::function<void()> changed) {
  changed_ = std::move(changed);
  timer_ = std::thread([this] { runTimer(); });
  for (auto& informer : informers_) informer->start();
}

void InformerSource::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  timerWake_.notify_all();
  // All at once: each may be stuck in a connect to an unreachable API server.
  for (auto& informer : informers_) informer->requestStop();
  for (auto& informer : informers_) informer->stop();
  if (timer_.joinable()) timer_.join();
}

SourceStats InformerSource::stats() const {
  SourceStats total;
  total.synced = !informers_.empty();
  for (const auto& informer : informers_) {
    SourceStats one = informer->stats();
    total.synced = total.synced && one.synced;
    total.events += one.events;
    total.relists += one.relists;
    total.rewatches += one.rewatches;
    for (const auto& [kind, n] : one.errors) total.errors[kind] += n;
  }
  return total;
}

void InformerSource::refresh() {
  std::lock_guard serial(refreshMutex_);
  // A view of partial caches could name a leader that a cache not yet listed contradicts: keep
  // the initial (empty) view until every informer has listed once.
  for (const auto& informer : informers_) {
    if (!informer->synced()) return;
  }
  std::vector<ObjectMap> caches;
  caches.reserve(informers_.size());
  for (const auto& informer : informers_) caches.push_back(informer->objects());
  View view = view_(caches, std::chrono::system_clock::now());
  if (view.credentials != credentials_) {
    credentials_ = view.credentials;
    bool none = view.snapshot.probeUser.empty();
    spdlog::log(none ? spdlog::level::warn : spdlog::level::info, "kubernetes: {}: {}", name_,
                credentials_);
  }
  bool moved = false;
  {
    std::lock_guard lock(mutex_);
    moved = !(view.snapshot == snapshot_);
    if (moved) snapshot_ = std::move(view.snapshot);
    recheckAt_ = view.recheckAt;
  }
  timerWake_.notify_all();
  if (moved && changed_) changed_();  // discovery logs the new detail
}

void InformerSource::runTimer() {
  using SystemClock = std::chrono::system_clock;
  std::optional<SystemClock::time_point> fired;  // the recheckAt last acted on
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!recheckAt_ || recheckAt_ == fired) {
      timerWake_.wait(lock, [&] { return stopping_ || (recheckAt_ && recheckAt_ != fired); });
      continue;
    }
    SystemClock::time_point at = *recheckAt_;
    bool woken = timerWake_.wait_until(lock, at + milliseconds(1),
                                       [&] { return stopping_ || recheckAt_ != at; });
    if (woken) continue;
    fired = at;
    lock.unlock();
    refresh();
    lock.lock();
  }
}

InformerOptions baseInformerOptions(const KubernetesOptions& options, const std::string& name) {
  InformerOptions base;
  base.name = name;
  base.watchTimeoutMin = options.watchTimeout;
  base.watchTimeoutMax = options.watchTimeout * 2;
  base.backoff = BackoffPolicy{options.backoffInitial, options.backoffMax};
  return base;
}

InformerOptions secretInformerOptions(const KubernetesOptions& options, const std::string& label,
                                      const std::string& ns, const std::string& secret) {
  InformerOptions secrets = baseInformerOptions(options, label + " secret " + secret);
  secrets.collection = Collection{"", "v1", "secrets", ns};
  secrets.selectors.field = "metadata.name=" + secret;
  secrets.optional = true;
  return secrets;
}

}  // namespace pgkeel::discovery::k8s

namespace pgkeel::discovery {

std::unique_ptr<Source> makeKubernetesSource(const KubernetesOptions& options) {
  if (options.cluster.empty()) {
    throw std::runtime_error("kubernetes source: kubernetes_cluster is empty");
  }
  k8s::KubeConfig config = options.kubeconfig.empty()
                               ? k8s::inClusterConfig(options.serviceAccountDir)
                               : k8s::loadKubeConfig(options.kubeconfig);
  std::string ns = options.ns.empty() ? config.ns : options.ns;
  auto api = std::make_shared<k8s::ApiClient>(config);
  api->makeClient();  // fails now on certificate material that cannot be loaded
  spdlog::info("kubernetes: {} config, API server {}, namespace {}", config.origin,
               config.serverUrl(), ns);
  if (options.op == KubernetesOptions::Operator::Cnpg) {
    return k8s::makeCnpgSource(options, std::move(api), ns);
  }
  return k8s::makeZalandoSource(options, std::move(api), ns);
}

}  // namespace pgkeel::discovery
