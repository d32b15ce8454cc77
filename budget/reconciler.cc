#include "budget/reconciler.h"

#include <cstdio>

namespace tollgate {

Reconciler::Reconciler(PgPool& pool, Redis& redis, Directory& directory, const Clock& clock,
                       Metrics& metrics)
    : pool_(pool), redis_(redis), directory_(directory), clock_(clock), metrics_(metrics) {}

Reconciler::~Reconciler() { Stop(); }

Result<Reconciler::Reading> Reconciler::Read(int64_t user, const Window& w) {
  Reading out;
  // Every row, pending batches' included, and whether one of the user's is pending.
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::read_transaction t(c);
    auto row = t.exec_params1(
        "SELECT count(*), coalesce(sum(cost_nanos), 0)::bigint, EXISTS (SELECT 1 FROM"
        " ledger_pending p, jsonb_array_elements(p.deltas) d WHERE (d->>0)::bigint = $1)"
        " FROM usage_ledger WHERE " +
            WindowRowsSql(user),
        user, Micros(w.start), Micros(w.end));
    out.rows = row[0].as<int64_t>();
    out.ledger = Money::FromNanos(row[1].as<int64_t>());
    out.pending = row[2].as<bool>();
  });
  if (!s.ok()) return s;
  auto counter = redis_.Command({"GET", RedisCounters::SpendKey(user, w.start)});
  if (!counter.ok()) return counter.status();
  if (counter->type == RedisReply::Type::kString) {
    try {
      out.counter = Money::FromNanos(std::stoll(counter->str));
    } catch (const std::exception&) {
      return Status::Internal("counter of user " + std::to_string(user) + " is not a number");
    }
  }
  return out;
}

Result<std::vector<CounterAudit>> Reconciler::Audit(const std::vector<int64_t>& users_in,
                                                     bool repair) {
  std::vector<int64_t> users = users_in;
  if (users.empty()) {
    Status s = pool_.Run([&](pqxx::connection& c) {
      pqxx::read_transaction t(c);
      for (const auto& row :
           t.exec("SELECT DISTINCT user_id FROM usage_ledger WHERE started_at >"
                  " now() - interval '15 minutes' ORDER BY 1 LIMIT 100000"))
        users.push_back(row[0].as<int64_t>());
    });
    if (!s.ok()) return s;
  }
  std::vector<CounterAudit> out;
  std::vector<Reading> first;
  for (int64_t user : users) {
    auto settings = directory_.GetSettings(user);
    if (!settings.ok()) return settings.status();
    Window w = CurrentWindow(settings->period, settings->custom_period_days, settings->timezone,
                             settings->period_anchor, clock_.Now());
    auto a = Read(user, w);
    if (!a.ok()) return a.status();
    auto again = Read(user, w);  // rows that arrived while the counter was read show here
    if (!again.ok()) return again.status();
    CounterAudit audit{user, w, a->counter, a->ledger};
    audit.busy = a->pending || again->pending || again->rows != a->rows ||
                 again->counter != a->counter;
    out.push_back(audit);
    first.push_back(*a);
  }
  int64_t worst = 0;
  for (const CounterAudit& a : out) {
    if (!a.busy) worst = std::max(worst, std::abs(a.difference().nanos()));
  }
  metrics_.Set(Gauge::kCounterDriftNanos, worst);
  if (!repair || worst == 0) return out;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (size_t i = 0; i < out.size(); ++i) {
    CounterAudit& a = out[i];
    if (a.busy || !a.counter || a.difference() == Money()) continue;
    auto later = Read(a.user_id, a.window);
    if (!later.ok()) return later.status();
    bool still = !later->pending && later->rows == first[i].rows &&
                 later->ledger == first[i].ledger && later->counter == first[i].counter;
    if (!still) continue;
    auto fixed = redis_.Command({"INCRBY", RedisCounters::SpendKey(a.user_id, a.window.start),
                                 std::to_string(-a.difference().nanos())});
    if (!fixed.ok()) return fixed.status();
    a.repaired = true;
    metrics_.Inc(Counter::kCounterRepairs);
    std::fprintf(stderr,
                 "tollgate: reconciler: user %lld's counter was %lld nanos off the ledger;"
                 " repaired\n",
                 static_cast<long long>(a.user_id), static_cast<long long>(a.difference().nanos()));
  }
  return out;
}

void Reconciler::Start(std::chrono::seconds every) {
  thread_ = std::thread([this, every] { Run(every); });
}

void Reconciler::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reconciler::Run(std::chrono::seconds every) {
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, every, [&] { return stopping_; })) {
    lock.unlock();
    // One instance at a time: the lock ends with the transaction.
    pool_.Run([&](pqxx::connection& c) {
      pqxx::work t(c);
      if (!t.exec1("SELECT pg_try_advisory_xact_lock(7710011)")[0].as<bool>()) return;
      auto audited = Audit({}, true);
      if (!audited.ok())
        std::fprintf(stderr, "tollgate: reconciler: %s\n", audited.status().message().c_str());
      t.commit();
    });
    lock.lock();
  }
}

}  // namespace tollgate
