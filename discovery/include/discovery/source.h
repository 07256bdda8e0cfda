// The Source interface: where the list of candidate nodes comes from; and the static source.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "discovery/endpoint.h"

namespace pgkeel::discovery {

// A control plane's opinion of a node. Hints make discovery fast; the probe decides.
enum class RoleHint { None, Primary, Replica };

struct Candidate {
  Endpoint endpoint;
  RoleHint hint = RoleHint::None;
  bool operator==(const Candidate&) const = default;
};

class Source {
 public:
  virtual ~Source() = default;
  virtual std::string name() const = 0;
  // The nodes to probe now. Called from the discovery thread once per round.
  virtual std::vector<Candidate> candidates() = 0;
  // Event-driven sources call `changed` when the candidate set or a hint moves; static ones never.
  virtual void start(std::function<void()> changed) {}
  virtual void stop() {}
};

// A fixed list (from --candidates, CANDIDATES or the config file); replaceable on reload.
class StaticSource : public Source {
 public:
  explicit StaticSource(std::vector<Endpoint> endpoints);
  std::string name() const override { return "static"; }
  std::vector<Candidate> candidates() override;
  void setEndpoints(std::vector<Endpoint> endpoints);

 private:
  std::mutex mutex_;
  std::vector<Endpoint> endpoints_;
};

}  // namespace pgkeel::discovery
