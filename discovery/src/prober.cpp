// Prober: concurrent libpq probes (connect, one query) driven by poll(2) under one round deadline.
#include "prober.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <spdlog/spdlog.h>

#include "discovery/discovery_service.h"

namespace pgkeel::discovery {
namespace {

using SteadyClock = std::chrono::steady_clock;

// One statement, one round trip. pg_is_in_recovery() is read once (MATERIALIZED) so the other
// columns agree with it even while a promotion is under way.
std::string buildQuery(const std::string& timeline) {
  return std::string(
             "WITH s AS MATERIALIZED (SELECT pg_is_in_recovery() AS r) SELECT s.r, "
             "(CASE WHEN s.r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() "
             "END)::text, ") +
         timeline +
         ", CASE WHEN s.r THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END "
         "FROM s";
}

// A primary's insert timeline is in its current WAL file name and moves at promotion; a replica
// reports the timeline it streams (needs pg_read_all_stats), else its last restartpoint's.
constexpr const char* kPrimaryTimeline =
    "('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::bigint";
constexpr const char* kReplicaTimeline =
    "COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), "
    "(SELECT timeline_id FROM pg_control_checkpoint()), 0)";
constexpr const char* kReplicaStreamTimeline =
    "COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), 0)";

std::string timelineColumn(const char* replica, const char* primary) {
  return std::string("CASE WHEN s.r THEN ") + replica + " ELSE " + primary + " END";
}

constexpr const char* kInsufficientPrivilege = "42501";

// libpq messages end in a newline and may span lines; make them one line.
std::string oneLine(const char* message) {
  std::string text = message ? message : "";
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\t', ' ');
  std::string squeezed;
  for (char c : text) {
    if (c != ' ' || (!squeezed.empty() && squeezed.back() != ' ')) squeezed += c;
  }
  while (!squeezed.empty() && squeezed.back() == ' ') squeezed.pop_back();
  return squeezed.empty() ? "unknown error" : squeezed;
}

std::string connError(PGconn* conn) {
  return oneLine(PQerrorMessage(conn));
}

void ignoreNotice(void*, const char*) {}

bool overriddenKeyword(std::string_view keyword) {
  return keyword == "host" || keyword == "hostaddr" || keyword == "port" ||
         keyword == "target_session_attrs";
}

bool isNumericAddress(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

template <typename T>
bool parseNumber(const char* text, T& value) {
  const char* end = text + std::strlen(text);
  auto [ptr, ec] = std::from_chars(text, end, value);
  return ec == std::errc() && ptr == end && ptr != text;
}

// Fills `result` from the probe's one row; returns a problem description instead on odd answers.
std::string readRow(const PGresult* res, ProbeResult& result) {
  if (PQntuples(res) != 1 || PQnfields(res) != 4) return "unexpected answer shape to the probe";
  result.inRecovery = std::strcmp(PQgetvalue(res, 0, 0), "t") == 0;
  if (!PQgetisnull(res, 0, 1)) {
    std::optional<std::uint64_t> lsn = parseLsn(PQgetvalue(res, 0, 1));
    if (!lsn) return std::string("unexpected WAL position: ") + PQgetvalue(res, 0, 1);
    result.lsn = *lsn;
  }
  if (!PQgetisnull(res, 0, 2) && !parseNumber(PQgetvalue(res, 0, 2), result.timeline)) {
    return std::string("unexpected timeline: ") + PQgetvalue(res, 0, 2);
  }
  double delay = 0;
  if (!PQgetisnull(res, 0, 3) && parseNumber(PQgetvalue(res, 0, 3), delay)) {
    result.replayDelaySeconds = delay;
  }
  return {};
}

}  // namespace

const std::string& probeQuery(ProbeQueryLevel level) {
  static const std::string full = buildQuery(timelineColumn(kReplicaTimeline, kPrimaryTimeline));
  static const std::string no_checkpoint =
      buildQuery(timelineColumn(kReplicaStreamTimeline, kPrimaryTimeline));
  static const std::string no_timeline = buildQuery("0");
  switch (level) {
    case ProbeQueryLevel::Full:
      return full;
    case ProbeQueryLevel::NoCheckpoint:
      return no_checkpoint;
    case ProbeQueryLevel::NoTimeline:
      break;
  }
  return no_timeline;
}

std::string checkProbeDsn(const std::string& dsn) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  std::string problem;
  if (options == nullptr) problem = error ? oneLine(error) : "out of memory";
  PQconninfoFree(options);
  PQfreemem(error);
  return problem;
}

std::string quoteConninfoValue(std::string_view value) {
  std::string quoted = "'";
  for (char c : value) {
    if (c == '\\' || c == '\'') quoted += '\\';
    quoted += c;
  }
  return quoted + "'";
}

std::string probeDsnWithCredentials(const std::string& dsn, const std::string& user,
                                    const std::string& password) {
  if (user.empty()) return dsn;
  std::string credentials = "user=" + quoteConninfoValue(user);
  if (!password.empty()) credentials += " password=" + quoteConninfoValue(password);
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), nullptr);
  if (options == nullptr) return dsn + " " + credentials;
  std::string rebuilt;
  for (PQconninfoOption* option = options; option->keyword; ++option) {
    std::string_view keyword = option->keyword;
    if (option->val == nullptr || keyword == "user" || keyword == "password") continue;
    rebuilt += std::string(keyword) + "=" + quoteConninfoValue(option->val) + " ";
  }
  PQconninfoFree(options);
  return rebuilt + credentials;
}

// One node's probe within a round: connect (or reuse), send, read, decide.
class Prober::Attempt {
 public:
  Attempt(const Prober& prober, Link& link, NodeId id, std::chrono::system_clock::time_point at,
          SteadyClock::time_point deadline)
      : prober_(prober), link_(link), deadline_(deadline) {
    result_.id = id;
    result_.endpoint = link.endpoint;
    result_.at = at;
  }

  void begin();
  void advance(short revents);
  void timeOut(std::chrono::milliseconds timeout);
  void abandon();  // interrupted round: no result
  void fail(std::string error);
  bool done() const { return phase_ == Phase::Done; }
  int socket() const { return link_.conn ? PQsocket(link_.conn.get()) : -1; }
  short events() const;
  ProbeResult take() { return std::move(result_); }

 private:
  enum class Phase { Connecting, Sending, Waiting, Done };
  struct ResultClearer {
    void operator()(PGresult* res) const { PQclear(res); }
  };

  void connect();
  void advanceConnect();
  void sendQuery();
  void flush();
  void readAnswer();
  void collectAnswer();
  void finishAnswer();
  bool stepDownQuery();
  void finish(bool ok, std::string error);

  const Prober& prober_;
  Link& link_;
  SteadyClock::time_point deadline_;
  SteadyClock::time_point started_ = SteadyClock::now();
  Phase phase_ = Phase::Connecting;
  PostgresPollingStatusType polling_ = PGRES_POLLING_WRITING;
  bool reused_ = false;
  bool retried_ = false;
  std::unique_ptr<PGresult, ResultClearer> answer_;
  ProbeResult result_;
};

void Prober::Attempt::begin() {
  if (link_.conn && PQstatus(link_.conn.get()) == CONNECTION_OK) {
    reused_ = true;
    sendQuery();
  } else {
    connect();
  }
}

void Prober::Attempt::connect() {
  reused_ = false;
  if (!prober_.dsnError_.empty()) return finish(false, "invalid probe DSN: " + prober_.dsnError_);
  link_.conn = prober_.startConnection(link_.endpoint);
  if (!link_.conn) return finish(false, "out of memory starting a connection");
  PQsetNoticeProcessor(link_.conn.get(), ignoreNotice, nullptr);
  if (PQstatus(link_.conn.get()) == CONNECTION_BAD) {
    return fail("connection failed: " + connError(link_.conn.get()));
  }
  phase_ = Phase::Connecting;
  polling_ = PGRES_POLLING_WRITING;  // as libpq documents for a fresh PQconnectStart
}

short Prober::Attempt::events() const {
  switch (phase_) {
    case Phase::Connecting:
      return polling_ == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    case Phase::Sending:
      return POLLIN | POLLOUT;
    case Phase::Waiting:
    case Phase::Done:
      break;
  }
  return POLLIN;
}

void Prober::Attempt::advance(short revents) {
  switch (phase_) {
    case Phase::Connecting:
      return advanceConnect();
    case Phase::Sending:
      if ((revents & POLLIN) && !PQconsumeInput(link_.conn.get())) {
        return fail("probe query failed: " + connError(link_.conn.get()));
      }
      return flush();
    case Phase::Waiting:
      return readAnswer();
    case Phase::Done:
      return;
  }
}

void Prober::Attempt::advanceConnect() {
  PGconn* conn = link_.conn.get();
  polling_ = PQconnectPoll(conn);
  if (polling_ == PGRES_POLLING_FAILED) return fail("connection failed: " + connError(conn));
  if (polling_ != PGRES_POLLING_OK) return;
  if (PQsetnonblocking(conn, 1) != 0) return fail("cannot make connection non-blocking");
  sendQuery();
}

void Prober::Attempt::sendQuery() {
  PGconn* conn = link_.conn.get();
  if (!PQsendQuery(conn, probeQuery(link_.queryLevel).c_str())) {
    return fail("could not send the probe query: " + connError(conn));
  }
  phase_ = Phase::Sending;
  flush();
}

// Once the query is sent, input consumed meanwhile may already hold the answer.
void Prober::Attempt::flush() {
  int rc = PQflush(link_.conn.get());
  if (rc < 0) return fail("could not send the probe query: " + connError(link_.conn.get()));
  if (rc > 0) return;
  phase_ = Phase::Waiting;
  collectAnswer();
}

void Prober::Attempt::readAnswer() {
  PGconn* conn = link_.conn.get();
  if (!PQconsumeInput(conn)) return fail("probe query failed: " + connError(conn));
  collectAnswer();
}

// Takes results until libpq reports the query complete (so the connection is idle for reuse).
void Prober::Attempt::collectAnswer() {
  PGconn* conn = link_.conn.get();
  while (!PQisBusy(conn)) {
    PGresult* res = PQgetResult(conn);
    if (res == nullptr) return finishAnswer();
    if (answer_) {
      PQclear(res);
    } else {
      answer_.reset(res);
    }
  }
}

void Prober::Attempt::finishAnswer() {
  auto answer = std::move(answer_);
  if (!answer) return fail("the probe query returned no result");
  if (PQresultStatus(answer.get()) != PGRES_TUPLES_OK) {
    const char* state = PQresultErrorField(answer.get(), PG_DIAG_SQLSTATE);
    std::string message = oneLine(PQresultErrorMessage(answer.get()));
    if (state && std::strcmp(state, kInsufficientPrivilege) == 0 && stepDownQuery()) {
      spdlog::warn("discovery: probe of {} lacks a privilege ({}); asking for less",
                   link_.endpoint.str(), message);
      return sendQuery();
    }
    return fail("probe query failed: " + message);
  }
  std::string problem = readRow(answer.get(), result_);
  if (!problem.empty()) return fail(problem);
  finish(true, {});
}

// Moves this node's probe to the next smaller query; false when it already asks for the least.
bool Prober::Attempt::stepDownQuery() {
  switch (link_.queryLevel) {
    case ProbeQueryLevel::Full:
      link_.queryLevel = ProbeQueryLevel::NoCheckpoint;
      return true;
    case ProbeQueryLevel::NoCheckpoint:
      link_.queryLevel = ProbeQueryLevel::NoTimeline;
      return true;
    case ProbeQueryLevel::NoTimeline:
      break;
  }
  return false;
}

// Discards the connection; a kept connection that failed gets one fresh try within the deadline
// (the server may have closed it since the last round).
void Prober::Attempt::fail(std::string error) {
  link_.conn.reset();
  answer_.reset();
  if (reused_ && !retried_ && SteadyClock::now() < deadline_) {
    retried_ = true;
    return connect();
  }
  finish(false, std::move(error));
}

void Prober::Attempt::abandon() {
  link_.conn.reset();  // a query may be in flight on it
  answer_.reset();
  phase_ = Phase::Done;
}

void Prober::Attempt::timeOut(std::chrono::milliseconds timeout) {
  const char* stage = phase_ == Phase::Connecting ? "connecting" : "waiting for the probe answer";
  link_.conn.reset();
  answer_.reset();
  finish(false,
         "timeout: no answer within " + std::to_string(timeout.count()) + " ms (" + stage + ")");
}

void Prober::Attempt::finish(bool ok, std::string error) {
  result_.ok = ok;
  if (ok && link_.conn) {  // libpq tries every address of a name: keep the one it reached
    const char* reached = PQhostaddr(link_.conn.get());
    result_.address = reached && *reached ? reached : link_.endpoint.host;
  }
  result_.error = std::move(error);
  result_.latency =
      std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - started_);
  phase_ = Phase::Done;
}

void Prober::ConnCloser::operator()(PGconn* conn) const {
  PQfinish(conn);
}

Prober::Prober(std::string dsn, std::chrono::milliseconds timeout)
    : dsn_(std::move(dsn)), timeout_(timeout), wakeFd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  parseDsn();
}

Prober::~Prober() {
  if (wakeFd_ >= 0) ::close(wakeFd_);
}

void Prober::clearInterrupt() {
  std::uint64_t count = 0;
  if (wakeFd_ >= 0) [[maybe_unused]]
    ssize_t got = ::read(wakeFd_, &count, sizeof count);
}

void Prober::interrupt() {
  if (wakeFd_ < 0) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(wakeFd_, &one, sizeof one);
}

void Prober::setOptions(std::string dsn, std::chrono::milliseconds timeout) {
  timeout_ = timeout;
  if (dsn == dsn_) return;
  dsn_ = std::move(dsn);
  parseDsn();
  links_.clear();
}

std::size_t Prober::openConnections() const {
  return std::count_if(links_.begin(), links_.end(),
                       [](const auto& entry) { return entry.second.conn != nullptr; });
}

void Prober::parseDsn() {
  params_.clear();
  dsnError_ = checkProbeDsn(dsn_);
  if (!dsnError_.empty()) return;
  PQconninfoOption* options = PQconninfoParse(dsn_.c_str(), nullptr);
  for (PQconninfoOption* option = options; option && option->keyword; ++option) {
    if (option->val == nullptr || option->val[0] == '\0') continue;
    if (overriddenKeyword(option->keyword)) continue;
    params_.emplace_back(option->keyword, option->val);
  }
  PQconninfoFree(options);
}

// Later keywords win (expand_dbname = 0), so the DSN may override application_name but never
// the endpoint. A numeric host also goes in hostaddr so that PGHOSTADDR cannot redirect it.
Prober::ConnPtr Prober::startConnection(const Endpoint& endpoint) const {
  std::vector<const char*> keywords{"application_name"};
  std::vector<const char*> values{"pgkeel-probe"};
  for (const auto& [keyword, value] : params_) {
    keywords.push_back(keyword.c_str());
    values.push_back(value.c_str());
  }
  std::string port = std::to_string(endpoint.port);
  keywords.insert(keywords.end(), {"host", "port", "target_session_attrs"});
  values.insert(values.end(), {endpoint.host.c_str(), port.c_str(), "any"});
  if (isNumericAddress(endpoint.host)) {
    keywords.push_back("hostaddr");
    values.push_back(endpoint.host.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  return ConnPtr(PQconnectStartParams(keywords.data(), values.data(), 0));
}

Prober::Link& Prober::linkFor(NodeId id, const Endpoint& endpoint) {
  Link& link = links_[id];
  if (link.endpoint != endpoint) {
    link.conn.reset();
    link.endpoint = endpoint;
    link.queryLevel = ProbeQueryLevel::Full;
  }
  return link;
}

void Prober::dropLinksNotIn(const std::vector<std::pair<NodeId, Endpoint>>& nodes) {
  std::erase_if(links_, [&](const auto& entry) {
    return std::none_of(nodes.begin(), nodes.end(),
                        [&](const auto& node) { return node.first == entry.first; });
  });
}

std::vector<ProbeResult> Prober::probeAll(const std::vector<std::pair<NodeId, Endpoint>>& nodes) {
  dropLinksNotIn(nodes);
  return probeSome(nodes);
}

std::vector<ProbeResult> Prober::probeSome(const std::vector<std::pair<NodeId, Endpoint>>& nodes) {
  const auto deadline = SteadyClock::now() + timeout_;
  const auto at = std::chrono::system_clock::now();
  std::vector<Attempt> attempts;
  attempts.reserve(nodes.size());
  for (const auto& [id, endpoint] : nodes) {
    assert(std::count_if(nodes.begin(), nodes.end(),
                         [id = id](const auto& node) { return node.first == id; }) == 1);
    attempts.emplace_back(*this, linkFor(id, endpoint), id, at, deadline);
    attempts.back().begin();
  }
  interrupted_ = false;
  while (waitOnce(attempts, deadline)) {
  }
  std::vector<ProbeResult> results;
  results.reserve(attempts.size());
  for (Attempt& attempt : attempts) {
    if (!attempt.done() && interrupted_) {
      attempt.abandon();
      continue;
    }
    if (!attempt.done()) attempt.timeOut(timeout_);
    results.push_back(attempt.take());
  }
  return results;
}

// One poll(2) over every unfinished attempt; false when none is left or the deadline passed.
bool Prober::waitOnce(std::vector<Attempt>& attempts, SteadyClock::time_point deadline) {
  std::vector<pollfd> fds;
  std::vector<Attempt*> owners;
  for (Attempt& attempt : attempts) {
    if (attempt.done()) continue;
    if (attempt.socket() < 0) {
      attempt.fail("connection has no socket");
      continue;
    }
    fds.push_back(pollfd{attempt.socket(), attempt.events(), 0});
    owners.push_back(&attempt);
  }
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now());
  if (fds.empty() || left.count() <= 0) return false;
  if (wakeFd_ >= 0) fds.push_back(pollfd{wakeFd_, POLLIN, 0});
  int ready = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
  if (wakeFd_ >= 0) {
    const bool woken = ready > 0 && fds.back().revents != 0;
    fds.pop_back();
    if (woken) {
      std::uint64_t count = 0;
      [[maybe_unused]] ssize_t got = ::read(wakeFd_, &count, sizeof count);
      interrupted_ = true;
      return false;
    }
  }
  if (ready < 0 && errno != EINTR) {
    std::string error = std::string("poll failed: ") + std::strerror(errno);
    for (Attempt* owner : owners) owner->fail(error);
    return false;
  }
  for (std::size_t i = 0; i < fds.size() && ready > 0; ++i) {
    if (fds[i].revents != 0) owners[i]->advance(fds[i].revents);
  }
  return true;
}

}  // namespace pgkeel::discovery
