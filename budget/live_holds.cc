#include "budget/live_holds.h"

namespace tollgate {

std::string LiveHolds::Key(int64_t account, const std::string& id) {
  return std::to_string(account) + "/" + id;
}

void LiveHolds::Add(int64_t account, const std::string& id, Money amount, int64_t expires_ms) {
  if (amount <= Money()) return;
  std::lock_guard lock(mu_);
  holds_.try_emplace(Key(account, id), Hold{account, id, amount, expires_ms});
}

void LiveHolds::Release(int64_t account, const std::string& id, Money amount) {
  std::lock_guard lock(mu_);
  auto it = holds_.find(Key(account, id));
  if (it == holds_.end()) return;
  if (it->second.amount <= amount) {
    holds_.erase(it);
  } else {
    it->second.amount -= amount;
  }
}

std::vector<LiveHolds::Hold> LiveHolds::Live(int64_t now_ms) {
  std::lock_guard lock(mu_);
  std::vector<Hold> out;
  out.reserve(holds_.size());
  for (auto it = holds_.begin(); it != holds_.end();) {
    if (it->second.expires_ms <= now_ms) {
      it = holds_.erase(it);
    } else {
      out.push_back(it->second);
      ++it;
    }
  }
  return out;
}

void LiveHolds::Prune(int64_t now_ms) {
  std::lock_guard lock(mu_);
  std::erase_if(holds_, [&](const auto& entry) { return entry.second.expires_ms <= now_ms; });
}

size_t LiveHolds::size() const {
  std::lock_guard lock(mu_);
  return holds_.size();
}

}  // namespace tollgate
