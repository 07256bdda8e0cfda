// CancelRegistry: which node issued each cancel key, so a CancelRequest reaches the right server.
#include "session/cancel_registry.h"

namespace pgkeel::session {

std::string CancelRegistry::pack(const protocol::CancelKey& key) {
  std::string packed(reinterpret_cast<const char*>(&key.processId), sizeof key.processId);
  return packed + key.secret;
}

void CancelRegistry::add(const protocol::CancelKey& key, const discovery::Endpoint& node) {
  std::lock_guard lock(mutex_);
  nodes_[pack(key)] = node;
}

void CancelRegistry::remove(const protocol::CancelKey& key) {
  std::lock_guard lock(mutex_);
  nodes_.erase(pack(key));
}

std::optional<discovery::Endpoint> CancelRegistry::find(const protocol::CancelKey& key) const {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(pack(key));
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

std::size_t CancelRegistry::size() const {
  std::lock_guard lock(mutex_);
  return nodes_.size();
}

}  // namespace pgkeel::session
