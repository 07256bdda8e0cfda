// PatroniSource: a poll thread reading GET /cluster, and an optional etcd leader-key watch thread.
#include "discovery/patroni_source.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "patroni/cluster_view.h"
#include "patroni/etcd_watch.h"

namespace pgkeel::discovery {
namespace {

using namespace std::chrono_literals;
using patroni::ClusterAnswer;
using patroni::ClusterTracker;
using patroni::LeaderKey;

// A quiet watch is re-opened after this long: it bounds how stale the key can be if the
// connection dies without a reset (etcd sends nothing while the key does not change).
constexpr auto kWatchIdle = 30s;
constexpr auto kWatchRetryMin = 100ms;
constexpr auto kWatchRetryMax = 5s;
constexpr std::size_t kMaxWatchLine = 1 << 20;

struct BaseUrl {
  std::string scheme;
  Endpoint endpoint;
  std::string str() const { return scheme + "://" + endpoint.str(); }
};

// "http://host:port" or "https://host:port" (an optional trailing '/'; no path, query or user).
std::optional<BaseUrl> parseBaseUrl(std::string_view url) {
  std::string scheme;
  if (url.starts_with("http://")) {
    scheme = "http";
  } else if (url.starts_with("https://")) {
    scheme = "https";
  } else {
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme.size() + 3);
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string_view::npos) return std::nullopt;
  bool hasPort = rest.front() == '[' ? rest.find("]:") != std::string_view::npos
                                     : rest.find(':') != std::string_view::npos;
  std::optional<Endpoint> endpoint = parseEndpoint(rest);
  if (!endpoint) return std::nullopt;
  if (!hasPort) endpoint->port = scheme == "https" ? 443 : 80;
  return BaseUrl{scheme, *endpoint};
}

// Built from host and port (not from a URL string, whose parser takes no hex IPv6 addresses).
std::unique_ptr<httplib::ClientImpl> makeClient(const BaseUrl& url,
                                                std::chrono::milliseconds connect,
                                                std::chrono::milliseconds read) {
  const Endpoint& at = url.endpoint;
  std::unique_ptr<httplib::ClientImpl> client;
  if (url.scheme == "https") {
    client = std::make_unique<httplib::SSLClient>(at.host, at.port);  // system CA store
  } else {
    client = std::make_unique<httplib::ClientImpl>(at.host, at.port);
  }
  client->set_connection_timeout(connect);
  client->set_read_timeout(read);
  client->set_write_timeout(connect);
  return client;
}

std::string httpErrorKind(int status) {
  if (status == 401 || status == 403 || status == 410 || status == 429) {
    return std::to_string(status);
  }
  return status >= 500 ? "5xx" : "other_http";
}

// Validated options, or std::invalid_argument naming the problem.
void validate(const PatroniOptions& options, std::vector<BaseUrl>* rest,
              std::optional<BaseUrl>* etcd) {
  if (options.restUrls.empty()) throw std::invalid_argument("patroni: no REST API URL");
  for (const std::string& text : options.restUrls) {
    std::optional<BaseUrl> url = parseBaseUrl(text);
    if (!url) throw std::invalid_argument("patroni: bad REST API URL \"" + text + "\"");
    rest->push_back(*url);
  }
  if (options.pollInterval <= 0ms || options.requestTimeout <= 0ms) {
    throw std::invalid_argument("patroni: poll interval and request timeout must be positive");
  }
  if (options.etcdUrl.empty()) return;
  *etcd = parseBaseUrl(options.etcdUrl);
  if (!*etcd) throw std::invalid_argument("patroni: bad etcd URL \"" + options.etcdUrl + "\"");
  if (options.etcdLeaderKey.empty())
    throw std::invalid_argument("patroni: etcd URL without a leader key");
}

class PatroniSource final : public Source {
 public:
  explicit PatroniSource(const PatroniOptions& options);
  ~PatroniSource() override { stop(); }

  std::string name() const override { return "patroni"; }
  SourceSnapshot snapshot() override;
  void start(std::function<void()> changed) override;
  void stop() override;
  SourceStats stats() const override;

 private:
  // Applies `change` to the tracker and publishes the new snapshot; `changed_` only on a change.
  void update(const std::function<void(ClusterTracker&)>& change, bool counted, bool answered);
  void countError(const std::string& kind);
  bool stopping() const;
  void requestPoll();
  void interruptClients();

  void pollLoop();
  void pollOnce();
  std::optional<ClusterAnswer> fetchCluster(std::size_t index);
  void noteMember(std::size_t index, const std::string& problem);

  void watchLoop();
  bool watchOnce();
  bool readLeaderKey(std::int64_t* revision);
  bool onWatchLine(const std::string& line, bool* ended);
  void onKeyEvent(const patroni::WatchEvent& event);
  void watchFailed(const std::string& kind, const std::string& problem);

  const PatroniOptions options_;
  std::vector<BaseUrl> restUrls_;
  std::vector<std::unique_ptr<httplib::ClientImpl>> rest_;
  std::optional<BaseUrl> etcdUrl_;
  std::unique_ptr<httplib::ClientImpl> etcdRange_;
  std::unique_ptr<httplib::ClientImpl> etcdWatch_;
  std::vector<std::string> memberProblems_;  // poll thread only: the last logged problem
  std::string watchProblem_;                 // watch thread only: the last logged problem

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool pollNow_ = false;
  ClusterTracker tracker_;
  SourceSnapshot current_;
  SourceStats stats_;
  std::function<void()> changed_;

  std::thread poller_;
  std::thread watcher_;
  std::atomic<int> running_{0};
};

PatroniSource::PatroniSource(const PatroniOptions& options) : options_(options) {
  validate(options_, &restUrls_, &etcdUrl_);
  for (const BaseUrl& url : restUrls_) {
    rest_.push_back(makeClient(url, options_.requestTimeout, options_.requestTimeout));
  }
  memberProblems_.resize(rest_.size());
  if (etcdUrl_) {
    etcdRange_ = makeClient(*etcdUrl_, options_.requestTimeout, options_.requestTimeout);
    etcdWatch_ = makeClient(*etcdUrl_, options_.requestTimeout, kWatchIdle);
  }
  current_ = tracker_.snapshot();
}

SourceSnapshot PatroniSource::snapshot() {
  std::lock_guard lock(mutex_);
  return current_;
}

SourceStats PatroniSource::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void PatroniSource::start(std::function<void()> changed) {
  if (poller_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    changed_ = std::move(changed);
    stopping_ = false;
  }
  running_ = etcdUrl_ ? 2 : 1;
  poller_ = std::thread([this] {
    pollLoop();
    --running_;
  });
  if (etcdUrl_) {
    watcher_ = std::thread([this] {
      watchLoop();
      --running_;
    });
  }
}

// httplib is interrupted only by shutting its socket down, and a request that is still connecting
// has no socket yet: keep shutting sockets until both threads have left (at most about one
// connect timeout).
void PatroniSource::stop() {
  if (!poller_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  while (running_ > 0) {
    interruptClients();
    std::this_thread::sleep_for(5ms);
  }
  poller_.join();
  if (watcher_.joinable()) watcher_.join();
}

void PatroniSource::interruptClients() {
  for (auto& client : rest_) client->stop();
  if (etcdRange_) etcdRange_->stop();
  if (etcdWatch_) etcdWatch_->stop();
}

bool PatroniSource::stopping() const {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void PatroniSource::requestPoll() {
  {
    std::lock_guard lock(mutex_);
    pollNow_ = true;
  }
  cv_.notify_all();
}

void PatroniSource::update(const std::function<void(ClusterTracker&)>& change, bool counted,
                           bool answered) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    change(tracker_);
    stats_.events += counted ? 1 : 0;
    stats_.synced = stats_.synced || answered;
    SourceSnapshot next = tracker_.snapshot();
    if (next == current_) return;
    if (next.detail != current_.detail) spdlog::debug("{}", next.detail);
    current_ = std::move(next);
    notify = changed_;
  }
  if (notify) notify();
}

void PatroniSource::countError(const std::string& kind) {
  std::lock_guard lock(mutex_);
  ++stats_.errors[kind];
}

// ---- polling /cluster ----

void PatroniSource::pollLoop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    pollNow_ = false;
    lock.unlock();
    pollOnce();
    lock.lock();
    cv_.wait_for(lock, options_.pollInterval, [this] { return stopping_ || pollNow_; });
  }
}

// Members in the configured order; the first answer with members wins. Empty answers ({"members":
// []}, the DCS is unreachable for that member) and failures fall through to the next member.
void PatroniSource::pollOnce() {
  bool emptyAnswer = false;
  for (std::size_t i = 0; i < rest_.size(); ++i) {
    if (stopping()) return;
    std::optional<ClusterAnswer> answer = fetchCluster(i);
    if (!answer) continue;
    if (answer->members.empty()) {
      emptyAnswer = true;
      continue;
    }
    update([&](ClusterTracker& tracker) { tracker.onAnswer(std::move(*answer)); }, true, true);
    return;
  }
  if (stopping()) return;
  auto why = emptyAnswer ? patroni::NoAnswer::EmptyMembers : patroni::NoAnswer::Unreachable;
  update([why](ClusterTracker& tracker) { tracker.onNoAnswer(why); }, false, false);
}

std::optional<ClusterAnswer> PatroniSource::fetchCluster(std::size_t index) {
  httplib::Result result = rest_[index]->Get("/cluster");
  if (!result) {
    if (stopping()) return std::nullopt;
    countError("network");
    noteMember(index, "network: " + httplib::to_string(result.error()));
    return std::nullopt;
  }
  if (result->status != 200) {
    countError(httpErrorKind(result->status));
    noteMember(index, "HTTP " + std::to_string(result->status));
    return std::nullopt;
  }
  std::string error;
  std::optional<ClusterAnswer> answer = patroni::parseCluster(result->body, &error);
  if (!answer) {
    countError("parse");
    noteMember(index, error);
    return std::nullopt;
  }
  noteMember(index, answer->members.empty() ? "no members (its DCS is unreachable)" : "");
  return answer;
}

// Logs a member's REST problem when it starts or changes, and its recovery, not every poll.
void PatroniSource::noteMember(std::size_t index, const std::string& problem) {
  std::string& last = memberProblems_[index];
  if (problem == last) return;
  std::string url = restUrls_[index].str() + "/cluster";
  if (problem.empty()) {
    spdlog::info("patroni: GET {} answers again", url);
  } else {
    spdlog::warn("patroni: GET {}: {}", url, problem);
  }
  last = problem;
}

// ---- the etcd leader-key watch ----

void PatroniSource::watchLoop() {
  auto retry = kWatchRetryMin;
  bool first = true;
  while (!stopping()) {
    if (!first) {
      std::lock_guard lock(mutex_);
      ++stats_.rewatches;
    }
    first = false;
    bool clean = watchOnce();
    if (stopping()) return;
    if (clean) {
      retry = kWatchRetryMin;
    } else {
      // What the key says is unknown now: /cluster alone decides until the watch is back.
      update([](ClusterTracker& tracker) { tracker.onLeaderKey(LeaderKey{}); }, false, false);
      retry = std::min<std::chrono::milliseconds>(retry * 2, kWatchRetryMax);
    }
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, retry, [this] { return stopping_; });
  }
}

// Reads the key, then watches it from the next revision. True when the stream ended by itself
// (idle timeout, server close, compaction): re-read at once. False on an error.
bool PatroniSource::watchOnce() {
  std::int64_t revision = 0;
  if (!readLeaderKey(&revision)) return false;
  httplib::Request request;
  request.method = "POST";
  request.path = "/v3/watch";
  request.body = patroni::watchRequestBody(options_.etcdLeaderKey, revision + 1);
  request.set_header("Content-Type", "application/json");
  int status = 0;
  bool ended = false, failed = false;
  std::string errorBody;
  patroni::LineSplitter splitter;
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, std::size_t size, std::uint64_t, std::uint64_t) {
    if (stopping()) return false;
    if (status != 200) {
      errorBody.append(data, std::min<std::size_t>(size, 512));
      return errorBody.size() < 4096;
    }
    for (const std::string& line : splitter.feed(std::string_view(data, size))) {
      if (!onWatchLine(line, &ended)) failed = !ended;
      if (ended || failed) return false;
    }
    if (splitter.pending() > kMaxWatchLine) {
      watchFailed("parse", "watch: a message over 1 MiB");
      failed = true;
    }
    return !failed;
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  etcdWatch_->send(request, response, error);
  if (stopping() || ended) return true;
  if (failed) return false;
  if (status != 200 && status != 0) {
    watchFailed(httpErrorKind(status), "watch: HTTP " + std::to_string(status) + " " + errorBody);
    return false;
  }
  if (status == 0) {  // never connected
    watchFailed("network", "watch: " + httplib::to_string(error));
    return false;
  }
  return true;  // read timeout on a quiet watch, or the server closed the stream
}

bool PatroniSource::readLeaderKey(std::int64_t* revision) {
  httplib::Result result = etcdRange_->Post(
      "/v3/kv/range", patroni::rangeRequestBody(options_.etcdLeaderKey), "application/json");
  if (!result) {
    if (!stopping()) watchFailed("network", "range: " + httplib::to_string(result.error()));
    return false;
  }
  std::string error;
  std::optional<patroni::RangeAnswer> range;
  if (result->status == 200) range = patroni::parseRangeAnswer(result->body, &error);
  if (!range) {
    watchFailed(result->status == 200 ? "parse" : httpErrorKind(result->status),
                "range: HTTP " + std::to_string(result->status) + " " + error);
    return false;
  }
  if (!watchProblem_.empty()) {
    spdlog::info("patroni: etcd {} answers again", etcdUrl_->str());
    watchProblem_.clear();
  }
  *revision = range->revision;
  LeaderKey key;
  key.state = range->value ? LeaderKey::State::Held : LeaderKey::State::Absent;
  key.holder = range->value.value_or("");
  bool moved = false;
  update(
      [&](ClusterTracker& tracker) {
        moved = !(tracker.leaderKey() == key);
        tracker.onLeaderKey(key);
      },
      false, false);
  if (moved) requestPoll();
  return true;
}

// One stream line. False (with *ended) when the server canceled the watch; false alone on errors.
bool PatroniSource::onWatchLine(const std::string& line, bool* ended) {
  std::string error;
  std::optional<patroni::WatchMessage> message = patroni::parseWatchMessage(line, &error);
  if (!message) {
    watchFailed("parse", error);
    return false;
  }
  if (!message->error.empty()) {
    watchFailed("other_http", "watch: " + message->error);
    return false;
  }
  if (message->canceled) {  // compacted start revision, or the server dropped the watch
    std::lock_guard lock(mutex_);
    stats_.relists += message->compactRevision > 0 ? 1 : 0;
    *ended = true;
    return false;
  }
  for (const patroni::WatchEvent& event : message->events) {
    if (event.key == options_.etcdLeaderKey) onKeyEvent(event);
  }
  return true;
}

// A PUT names the holder; a DELETE (release or lease expiry) means nobody until a new leader.
// Either way /cluster is read at once.
void PatroniSource::onKeyEvent(const patroni::WatchEvent& event) {
  update(
      [&](ClusterTracker& tracker) {
        LeaderKey key;
        if (event.deleted) {
          key.state = LeaderKey::State::Absent;
          const LeaderKey& before = tracker.leaderKey();
          key.deleted = !event.previous.empty()                  ? event.previous
                        : before.state == LeaderKey::State::Held ? before.holder
                                                                 : std::string();
        } else {
          key.state = LeaderKey::State::Held;
          key.holder = event.value;
        }
        tracker.onLeaderKey(key);
      },
      true, false);
  requestPoll();
}

// Counts a watch failure; logs it only when the problem changes (retries come every few seconds).
void PatroniSource::watchFailed(const std::string& kind, const std::string& problem) {
  countError(kind);
  if (problem == watchProblem_) return;
  spdlog::warn("patroni: etcd {}: {}", etcdUrl_->str(), problem);
  watchProblem_ = problem;
}

}  // namespace

std::unique_ptr<Source> makePatroniSource(const PatroniOptions& options) {
  return std::make_unique<PatroniSource>(options);
}

}  // namespace pgkeel::discovery
