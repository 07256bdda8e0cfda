// Informers: a cached, watched Kubernetes collection on its own thread (LIST, then WATCH from the
// list's resourceVersion, re-watch, re-list on 410), and a Source built from several of them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api_client.h"
#include "discovery/kubernetes_source.h"
#include "discovery/source.h"
#include "views.h"
#include "watch_stream.h"

namespace pgkeel::discovery::k8s {

struct ObjectChange {
  enum class Kind { Added, Modified, Deleted };
  Kind kind;
  std::string name;
  bool operator==(const ObjectChange&) const = default;
};

// What turns `before` into `after`, by name in name order (synthetic events after a re-list).
std::vector<ObjectChange> diffObjects(const ObjectMap& before, const ObjectMap& after);

struct BackoffPolicy {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max{30000};
};

// The wait before retry `attempt` (0 = first): d = initial * 2^attempt capped at max, then a point
// in [d/2, d) picked by `unitRandom` in [0, 1) (jitter, so informers do not retry in step).
std::chrono::milliseconds backoffDelay(const BackoffPolicy& policy, int attempt, double unitRandom);

struct InformerOptions {
  std::string name;  // for logs, e.g. "cnpg db/pg-main pods"
  Collection collection;
  Selectors selectors;
  int pageLimit = 500;
  // Each watch asks for timeoutSeconds picked at random in [min, max].
  std::chrono::seconds watchTimeoutMin{300};
  std::chrono::seconds watchTimeoutMax{600};
  // A watch's read timeout is its timeoutSeconds plus this, and at most watchIdleTimeout: a
  // silent, half-dead connection (a NAT or load balancer that dropped it) is noticed within
  // watchIdleTimeout, and re-watching from the last resourceVersion is cheap. API servers send a
  // bookmark about once a minute.
  std::chrono::milliseconds watchReadSlack{30000};
  std::chrono::milliseconds watchIdleTimeout{90000};
  // A watch that ends sooner than this having delivered nothing counts as a failure (backoff).
  std::chrono::milliseconds minQuietWatch{1000};
  BackoffPolicy backoff;
  // Optional collections (the probe's credentials Secret) must not hold the source back: a list
  // refused with 403 (RBAC) or 404 counts as listed with nothing, so the informer is synced; it
  // keeps retrying with backoff, and logs the refusal once until a list succeeds.
  bool optional = false;
};

// One watched collection: a cache by metadata.name kept by a thread of its own.
class Informer {
 public:
  // Called on the informer's thread after the cache changed (never with the cache locked), and
  // once after the first list even when it found nothing.
  using OnChange = std::function<void(const std::vector<ObjectChange>&)>;

  Informer(std::shared_ptr<ApiClient> api, InformerOptions options, OnChange onChange);
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void start();
  // Returns promptly, also while a watch is idle: the request in flight is aborted.
  // Tells the thread to stop and aborts its request; stop() then waits for it.
  void requestStop();
  void stop();

  bool synced() const;
  ObjectMap objects() const;
  SourceStats stats() const;
  std::string resourceVersion() const;
  const InformerOptions& options() const { return options_; }

 private:
  enum class Outcome { Ok, Quiet, Gone, Failed, Stopped };
  struct Attempt {
    Outcome outcome = Outcome::Ok;
    std::optional<std::chrono::seconds> retryAfter;
  };

  void run();
  Attempt list();
  Attempt watch();
  // Applies one watch event; false to end the stream (*result says why).
  bool apply(WatchEvent&& event, Attempt* result);
  void replace(ObjectMap fresh, const std::string& resourceVersion);
  void upsert(nlohmann::json object, bool remove);
  Attempt failed(int status, const std::string& message, const char* verb,
                 std::optional<std::chrono::seconds> retryAfter);
  Attempt refused(const HttpResponse& response);
  void count(const std::string& kind);
  bool sleepFor(std::chrono::milliseconds delay);  // false when stopping
  bool stopping() const { return stopping_.load(); }

  std::shared_ptr<ApiClient> api_;
  InformerOptions options_;
  OnChange onChange_;
  HttpSession session_;
  std::mt19937 random_;

  mutable std::mutex mutex_;  // guards everything below
  ObjectMap cache_;
  std::string resourceVersion_;
  SourceStats stats_;
  bool listed_ =
      false;          // a list has succeeded (stats_.synced is also set by a refused optional list)
  int refusals_ = 0;  // optional informer: refused lists since the last successful one
  std::condition_variable wake_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> exited_{false};
  std::thread thread_;
};

// A Source fed by informers: `view` of their caches, recomputed after every change and at the
// view's recheckAt once every informer has listed (until then the view of empty caches);
// `changed` is called only when the snapshot moves. An optional informer refused by the server
// counts as listed (empty). View::credentials is logged when it changes.
class InformerSource : public Source {
 public:
  using ViewFn = std::function<View(const std::vector<ObjectMap>& caches,
                                    std::chrono::system_clock::time_point now)>;

  InformerSource(std::string name, std::shared_ptr<ApiClient> api,
                 std::vector<InformerOptions> informers, ViewFn view);
  ~InformerSource() override;

  std::string name() const override { return name_; }
  SourceSnapshot snapshot() override;
  void start(std::function<void()> changed) override;
  void stop() override;
  SourceStats stats() const override;

 private:
  void refresh();
  void runTimer();

  std::string name_;
  ViewFn view_;
  std::vector<std::unique_ptr<Informer>> informers_;
  std::function<void()> changed_;

  std::mutex refreshMutex_;   // one refresh at a time, so an older view never replaces a newer one
  mutable std::mutex mutex_;  // guards snapshot_, recheckAt_, stopping_
  SourceSnapshot snapshot_;
  std::string credentials_;  // the last View::credentials logged; guarded by refreshMutex_
  std::optional<std::chrono::system_clock::time_point> recheckAt_;
  bool stopping_ = false;
  std::condition_variable timerWake_;
  std::thread timer_;
};

// The operator-specific sources (cnpg_source.cpp, zalando_source.cpp); `ns` is already resolved.
std::unique_ptr<Source> makeCnpgSource(const KubernetesOptions& options,
                                       std::shared_ptr<ApiClient> api, const std::string& ns);
std::unique_ptr<Source> makeZalandoSource(const KubernetesOptions& options,
                                          std::shared_ptr<ApiClient> api, const std::string& ns);
// Zalando's leader record: whichever of the ConfigMap <c>-leader and the Endpoints <c> carries a
// `leader` annotation (the ConfigMap when both do), else whichever exists (the ConfigMap first).
const nlohmann::json* pickLeaderObject(const nlohmann::json* configMap,
                                       const nlohmann::json* endpoints);
// Informer settings shared by both sources: timeouts and backoff from `options`.
InformerOptions baseInformerOptions(const KubernetesOptions& options, const std::string& name);
// The optional informer on one Secret by name (fieldSelector metadata.name=<secret>, which a
// Role's resourceNames can grant alone); `label` prefixes its log name.
InformerOptions secretInformerOptions(const KubernetesOptions& options, const std::string& label,
                                      const std::string& ns, const std::string& secret);

}  // namespace pgkeel::discovery::k8s
