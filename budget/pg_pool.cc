#include "budget/pg_pool.h"

namespace tollgate {

PgPool::PgPool(std::string url, int max_connections)
    : url_(std::move(url)), max_connections_(max_connections) {}

std::unique_ptr<pqxx::connection> PgPool::Acquire() {
  {
    std::unique_lock lock(mu_);
    available_.wait(lock, [&] { return !idle_.empty() || open_ < max_connections_; });
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    ++open_;
  }
  try {
    return std::make_unique<pqxx::connection>(url_);
  } catch (...) {
    Release(nullptr);
    throw;
  }
}

void PgPool::Release(std::unique_ptr<pqxx::connection> c) {
  {
    std::lock_guard lock(mu_);
    if (c && c->is_open()) {
      idle_.push_back(std::move(c));
    } else {
      --open_;
    }
  }
  available_.notify_one();
}

Status PgPool::Run(const std::function<void(pqxx::connection&)>& fn) {
  std::unique_ptr<pqxx::connection> c;
  try {
    c = Acquire();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("postgres: ") + e.what());
  }
  Status result;
  try {
    fn(*c);
  } catch (const pqxx::unique_violation& e) {
    result = Status::Conflict(std::string("postgres: ") + e.what());
  } catch (const pqxx::broken_connection& e) {
    c.reset();
    result = Status::Unavailable(std::string("postgres: ") + e.what());
  } catch (const pqxx::in_doubt_error& e) {
    c.reset();
    result = Status::Unavailable(std::string("postgres: ") + e.what());
  } catch (const std::exception& e) {
    result = Status::Internal(std::string("postgres: ") + e.what());
  }
  if (c && !c->is_open()) c.reset();
  Release(std::move(c));
  return result;
}

}  // namespace tollgate
