#include "budget/ledger.h"

namespace tollgate {

PgLedger::PgLedger(PgPool& pool, Metrics& metrics) : pool_(pool), metrics_(metrics), writer_([this] { Run(); }) {}

PgLedger::~PgLedger() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

void PgLedger::Append(UsageRecord record) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(record));
  }
  wake_.notify_one();
}

void PgLedger::Flush() {
  std::unique_lock lock(mu_);
  drained_.wait(lock, [&] { return queue_.empty() && in_flight_ == 0; });
}

size_t PgLedger::queued() {
  std::lock_guard lock(mu_);
  return queue_.size() + in_flight_;
}

void PgLedger::Run() {
  auto backoff = std::chrono::milliseconds(50);
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty() && stopping_) return;
    std::vector<UsageRecord> batch;
    while (!queue_.empty() && batch.size() < 500) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    in_flight_ = batch.size();
    lock.unlock();
    Status s = WriteBatch(batch);
    lock.lock();
    in_flight_ = 0;
    if (s.ok()) {
      metrics_.Inc(Counter::kLedgerRowsWritten, batch.size());
      backoff = std::chrono::milliseconds(50);
      if (queue_.empty()) drained_.notify_all();
      continue;
    }
    // Keep the rows, in order, and try again later; stopping still waits for them.
    metrics_.Inc(Counter::kPostgresErrors);
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
    wake_.wait_for(lock, backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

Result<Money> PgLedger::SpendSince(int64_t user_id, Timestamp from) {
  return pool_.Get<Money>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    return Money::FromNanos(w.exec_params1("SELECT coalesce(sum(cost_nanos), 0)::bigint FROM usage_ledger"
                                           " WHERE ($1::bigint = 0 OR user_id = $1::bigint) AND started_at >= " + SqlFromMicros(2),
                                           user_id, Micros(from))[0]
                                .as<int64_t>());
  });
}

Status PgLedger::WriteBatch(const std::vector<UsageRecord>& batch) {
  return pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    for (const UsageRecord& r : batch) {
      w.exec_params(
          "INSERT INTO usage_ledger (request_id, user_id, key_id, provider, model, price_id, started_at, input_tokens,"
          " output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, cost_nanos,"
          " status, streamed, estimated, latency_ms) VALUES ($1, $2, nullif($3, 0), $4, $5, $6, " +
              SqlFromMicros(7) +
              ", $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT (request_id) DO NOTHING",
          r.request_id, r.user_id, r.key_id, r.provider, r.model, r.price_id, Micros(r.started_at),
          r.usage.input_tokens, r.usage.output_tokens, r.usage.cache_read_tokens, r.usage.cache_write_5m_tokens,
          r.usage.cache_write_1h_tokens, r.usage.reasoning_tokens, r.cost.nanos(), r.status, r.streamed, r.estimated,
          static_cast<int>(r.latency_ms));
    }
    w.commit();
  });
}

}  // namespace tollgate
