#include "budget/ledger.h"

#include <array>
#include <cstdio>
#include <charconv>
#include <pqxx/tablewriter>
#include <set>

#include "budget/keys.h"
#include "config/clock.h"

namespace tollgate {

PgLedger::PgLedger(PgPool& pool, Metrics& metrics, CounterStore* counters, LedgerOptions options)
    : pool_(pool), metrics_(metrics), counters_(counters), options_(std::move(options)) {
  if (!options_.spool_dir.empty()) spool_ = std::make_unique<LedgerSpool>(options_.spool_dir);
  writer_ = std::thread([this] { Run(); });
}

PgLedger::~PgLedger() { Stop(std::chrono::seconds(10)); }

void PgLedger::Append(UsageRecord record) {
  record.appended = std::chrono::steady_clock::now();
  uint64_t segment = 0;
  if (spool_) {
    auto written = spool_->Append(record);
    if (written.ok()) segment = *written;  // else it waits in memory only, as without a spool
  }
  bool wake;
  {
    std::lock_guard lock(mu_);
    if (spilling_ && segment != 0) return;  // the writer reads it back from the spool
    wake = queue_.empty();
    queue_.push_back({std::move(record), segment});
    if (spool_ && queue_.size() >= options_.max_queued_rows) {
      // Further rows wait in the spool only: from the segment opened now on.
      spilling_ = true;
      spill_first_ = spool_->Rotate() + 1;
    }
    wake = wake || queue_.size() == kBatchRows;
    metrics_.Set(Gauge::kLedgerQueueDepth, static_cast<int64_t>(queue_.size() + in_flight_));
  }
  // The first row of a batch wakes the writer, and a full batch ends its linger; the
  // rows in between wake nobody.
  if (wake) wake_.notify_one();
}

bool PgLedger::Accepting() {
  std::lock_guard lock(mu_);
  return spool_ != nullptr || queue_.size() < options_.max_queued_rows;
}

void PgLedger::Flush() {
  std::unique_lock lock(mu_);
  ++flushing_;  // no lingering for more rows while someone waits for these
  wake_.notify_all();
  drained_.wait(lock, [&] {
    return stopping_ || (queue_.empty() && in_flight_ == 0 && !spilling_ && spilled_.empty());
  });
  --flushing_;
}

size_t PgLedger::queued() {
  std::lock_guard lock(mu_);
  return queue_.size() + in_flight_;
}

bool PgLedger::Stop(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mu_);
    if (!writer_.joinable()) return stopped_clean_;
    stopping_ = true;
    stop_by_ = std::chrono::steady_clock::now() + grace;
  }
  wake_.notify_all();
  drained_.notify_all();
  writer_.join();
  if (spool_) spool_->Sync();
  return stopped_clean_;
}

void PgLedger::Run() {
  using std::chrono::steady_clock;
  auto backoff = std::chrono::milliseconds(50);
  auto next_chores = steady_clock::now();  // spool sync, orphans, retries
  auto next_orphan_batches = steady_clock::now() + std::chrono::seconds(2);
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait_for(lock, std::chrono::milliseconds(200),
                   [&] { return stopping_ || !queue_.empty(); });
    auto now = steady_clock::now();
    bool out_of_time = stopping_ && now >= stop_by_;
    if (now >= next_chores && !out_of_time) {
      lock.unlock();
      if (spool_) {
        spool_->Sync();
        ReplayOrphanFiles();
      }
      RetryUnapplied();
      if (now >= next_orphan_batches) {
        ApplyOrphanBatches();
        next_orphan_batches = now + std::chrono::seconds(5);
      }
      metrics_.Set(Gauge::kLedgerUnapplied, static_cast<int64_t>(unapplied_.size()));
      next_chores = now + std::chrono::seconds(1);
      lock.lock();
    }
    if (queue_.empty() && (spilling_ || !spilled_.empty()) && !out_of_time) {
      if (spilling_) {
        // Memory has room again: the spill segments are closed and read back.
        spilling_ = false;
        uint64_t last = spool_->Rotate();
        if (spill_first_ == 0) spill_first_ = last;
        for (uint64_t n = spill_first_; n <= last; ++n) spilled_.push_back(n);
        spill_first_ = 0;
      }
      lock.unlock();
      ReplaySpilled();
      lock.lock();
      if (queue_.empty() && in_flight_ == 0 && spilled_.empty()) drained_.notify_all();
      continue;
    }
    if (queue_.empty()) {
      if (stopping_) {
        stopped_clean_ = spilled_.empty() && !spilling_;
        if (stopped_clean_ && spool_) spool_->ReleaseAll();
        return;
      }
      continue;
    }
    if (out_of_time) {
      stopped_clean_ = false;  // what is queued stays in the spool
      return;
    }
    wake_.wait_for(lock, options_.linger,
                   [&] { return stopping_ || flushing_ > 0 || queue_.size() >= kBatchRows; });
    std::vector<UsageRecord> batch;
    uint64_t first_segment = queue_.front().segment;
    while (!queue_.empty() && batch.size() < kBatchRows) {
      batch.push_back(std::move(queue_.front().row));
      queue_.pop_front();
    }
    in_flight_ = batch.size();
    lock.unlock();
    std::vector<UsageRecord> kept = batch;  // to put back if Postgres is away
    Status s = WriteAndApply(std::move(batch), false);
    if (!s.ok() && s.code() != Status::Code::kUnavailable) s = WriteEachAlone(kept, false);
    bool written = s.ok();
    lock.lock();
    in_flight_ = 0;
    metrics_.Set(Gauge::kLedgerQueueDepth, static_cast<int64_t>(queue_.size()));
    if (written) {
      backoff = std::chrono::milliseconds(50);
      if (spool_) {
        uint64_t needed = queue_.empty() ? UINT64_MAX : queue_.front().segment;
        if (spill_first_ != 0) needed = std::min(needed, spill_first_);
        for (uint64_t n : spilled_) needed = std::min(needed, n);
        spool_->Release(needed);
      }
      if (queue_.empty() && !spilling_ && spilled_.empty()) drained_.notify_all();
      continue;
    }
    // Keep the rows, in order, and try again later (they are in the spool meanwhile).
    for (auto it = kept.rbegin(); it != kept.rend(); ++it)
      queue_.push_front({std::move(*it), first_segment});
    wake_.wait_until(lock, std::min(steady_clock::now() + backoff,
                                    stopping_ ? stop_by_ : steady_clock::time_point::max()));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

Status PgLedger::WriteAndApply(std::vector<UsageRecord> rows, bool replayed) {
  std::string token = RandomHex(12);
  auto committed = Commit(token, std::move(rows), replayed);
  if (!committed.ok()) {
    metrics_.Inc(Counter::kPostgresErrors);
    return committed.status();
  }
  metrics_.Inc(Counter::kLedgerRowsWritten, committed->size());
  metrics_.Inc(Counter::kLedgerBatchesWritten);
  auto now = std::chrono::steady_clock::now();
  for (const UsageRecord& r : *committed) {
    if (r.appended == std::chrono::steady_clock::time_point()) continue;  // replayed
    metrics_.Observe(
        Histogram::kSettleLag,
        std::chrono::duration_cast<std::chrono::milliseconds>(now - r.appended).count());
  }
  if (!counters_) return Status::Ok();
  Unapplied b{token, CounterDeltas(*committed), std::move(*committed)};
  if (!ApplyCommitted(b)) unapplied_.push_back(std::move(b));
  return Status::Ok();
}

// Postgres refused the batch for something in it (not for being away): each row is
// written alone, and one refused alone is set aside (logged, counted, kept in the
// spool directory) rather than holding back every row after it.
Status PgLedger::WriteEachAlone(std::vector<UsageRecord> rows, bool replayed) {
  for (UsageRecord& r : rows) {
    Status s = WriteAndApply({r}, replayed);
    if (s.code() == Status::Code::kUnavailable) return s;
    if (s.ok()) continue;
    metrics_.Inc(Counter::kLedgerRowsRejected);
    std::fprintf(stderr, "tollgate: ledger: row %s refused by Postgres: %s\n",
                 r.request_id.c_str(), s.message().c_str());
    if (spool_) spool_->Reject(r);
  }
  return Status::Ok();
}

bool PgLedger::ApplyCommitted(const Unapplied& b) {
  auto epoch = counters_->Apply(b.token, b.deltas, b.rows.empty() ? nullptr : &b.rows);
  if (!epoch.ok()) return false;
  metrics_.Inc(Counter::kLedgerBatchesApplied);
  if (b.deltas.empty()) return true;  // no pending row was written
  // The pending row goes only if the dataset it was applied in still is Redis's: were
  // it lost meanwhile, the batch stays pending and is applied again to the new one, by
  // this writer's next retry (and, should this process end first, the orphan pass).
  bool same_dataset = false;
  Status deleted = pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    w.exec_params("DELETE FROM ledger_pending WHERE token = $1", b.token);
    auto now = counters_->Epoch();
    same_dataset = now.ok() && *now == *epoch;
    if (same_dataset) w.commit();
  });
  return !deleted.ok() || same_dataset;  // Postgres away: the orphan pass deletes it later
}

void PgLedger::RetryUnapplied() {
  while (!unapplied_.empty() && ApplyCommitted(unapplied_.front())) unapplied_.pop_front();
  // Bounded memory while Redis is away: old batches keep their deltas, not their rows
  // (whose holds then lapse rather than being released).
  for (size_t i = 0; i + 1000 < unapplied_.size(); ++i) unapplied_[i].rows.clear();
}

// Batches committed by an instance that did not apply them (stopped, crashed, or cut
// from Redis): any instance applies them, once, from the deltas their pending row holds.
void PgLedger::ApplyOrphanBatches() {
  if (!counters_) return;
  pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    auto rows = w.exec_params(
        "SELECT token, deltas::text FROM ledger_pending WHERE created_at < now() - $1::bigint *"
        " interval '1 millisecond' ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED",
        static_cast<int64_t>(options_.orphan_batch_after.count()));
    for (const auto& row : rows) {
      std::string token = row[0].as<std::string>();
      auto deltas = DeltasFromJson(row[1].as<std::string>());
      if (!deltas) continue;
      auto epoch = counters_->Apply(token, *deltas, nullptr);
      if (!epoch.ok()) break;  // Redis away: later
      auto now = counters_->Epoch();
      if (now.ok() && *now == *epoch)
        w.exec_params("DELETE FROM ledger_pending WHERE token = $1", token);
      metrics_.Inc(Counter::kLedgerBatchesApplied);
    }
    w.commit();
  });
}

bool PgLedger::WriteOrSetAside(std::vector<UsageRecord> rows) {
  std::vector<UsageRecord> kept = rows;
  Status s = WriteAndApply(std::move(rows), true);
  if (!s.ok() && s.code() != Status::Code::kUnavailable) s = WriteEachAlone(std::move(kept), true);
  return s.ok();
}

// Spool files of processes that have gone: their rows are written (skipping those that
// did reach Postgres) and applied.
void PgLedger::ReplayOrphanFiles() {
  while (auto orphan = spool_->ClaimOrphan()) {
    bool all = true;
    for (size_t i = 0; i < orphan->rows.size() && all; i += kBatchRows) {
      auto from = orphan->rows.begin() + static_cast<long>(i);
      auto to = orphan->rows.begin() + static_cast<long>(std::min(orphan->rows.size(), i + kBatchRows));
      all = WriteOrSetAside(std::vector<UsageRecord>(from, to));
    }
    if (!all) {
      spool_->Unclaim(*orphan);  // Postgres away: later
      return;
    }
    spool_->Finish(*orphan);
  }
}

void PgLedger::ReplaySpilled() {
  std::vector<uint64_t> segments;
  {
    std::lock_guard lock(mu_);
    segments = spilled_;
  }
  for (uint64_t n : segments) {
    std::vector<UsageRecord> rows = spool_->Read(n);
    for (size_t i = 0; i < rows.size(); i += kBatchRows) {
      auto from = rows.begin() + static_cast<long>(i);
      auto to = rows.begin() + static_cast<long>(std::min(rows.size(), i + kBatchRows));
      if (!WriteOrSetAside(std::vector<UsageRecord>(from, to))) return;  // later
    }
    spool_->Drop(n);
    std::lock_guard lock(mu_);
    spilled_.erase(std::find(spilled_.begin(), spilled_.end(), n));
  }
}

namespace {

// The ledger's columns, in the order both ways of writing a row give them.
// clang-format off
const std::vector<std::string> kLedgerColumns = {
    "request_id", "user_id", "key_id", "provider", "model", "price_id", "started_at",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "reasoning_tokens", "cost_nanos", "status", "streamed",
    "estimated", "latency_ms", "window_start", "global_window_start", "batch"};
// clang-format on

void AppendCopyNumber(std::string& out, int64_t v) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
  out.append(digits, end);
}

// One ledger row as a line of COPY's text format, its fields in kLedgerColumns' order.
void AppendCopyLine(std::string& out, const UsageRecord& r, const std::string& batch) {
  AppendCopyText(out, r.request_id);
  out += '\t';
  AppendCopyNumber(out, r.user_id);
  out += '\t';
  if (r.key_id != 0) {
    AppendCopyNumber(out, r.key_id);
  } else {
    out += "\\N";
  }
  for (const std::string* text : {&r.provider, &r.model, &r.price_id}) {
    out += '\t';
    AppendCopyText(out, *text);
  }
  out += '\t';
  out += FormatRfc3339(r.started_at);
  for (int64_t n : {r.usage.input_tokens, r.usage.output_tokens, r.usage.cache_read_tokens,
                    r.usage.cache_write_5m_tokens, r.usage.cache_write_1h_tokens,
                    r.usage.reasoning_tokens, r.cost.nanos(), int64_t{r.status}}) {
    out += '\t';
    AppendCopyNumber(out, n);
  }
  out += r.streamed ? "\tt" : "\tf";
  out += r.estimated ? "\tt\t" : "\tf\t";
  AppendCopyNumber(out, r.latency_ms);
  for (const std::optional<Window>* w : {&r.window, &r.global_window}) {
    out += '\t';
    out += *w ? FormatRfc3339((*w)->start) : "\\N";
  }
  out += '\t';
  out += batch;
}

// The micros of a window's start, 0 for none (the INSERT turns it back into NULL).
int64_t StartMicros(const std::optional<Window>& w) { return w ? Micros(w->start) : 0; }

}  // namespace

// One transaction per batch, one short statement per kStatementRows of it, so that the
// Postgres backend, which shares the machine's cores with the proxy, gives the CPU back
// between them (one statement for a whole batch ran for milliseconds and held back the
// hot path). The rows go in by COPY: no statement to parse and plan per chunk, and
// Postgres inserts them in bulk. COPY cannot skip a request id already stored, which
// happens only when rows are replayed from the spool (their first write may have
// committed): those go in by INSERT … ON CONFLICT DO NOTHING, and only the rows it did
// insert are returned (and applied to the counters). The batch's pending row commits
// with its rows.
Result<std::vector<UsageRecord>> PgLedger::Commit(const std::string& token,
                                                  std::vector<UsageRecord> rows, bool replayed) {
  if (!replayed) {
    Status copied = pool_.Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      std::string lines;
      for (size_t from = 0; from < rows.size(); from += kStatementRows) {
        lines.clear();
        for (size_t i = from; i < std::min(rows.size(), from + kStatementRows); ++i) {
          if (i > from) lines += '\n';
          AppendCopyLine(lines, rows[i], token);
        }
        // libpqxx 6.4's stream_to escapes each field through a string of its own (most of
        // the writer's time per row); tablewriter takes lines we wrote, but is deprecated.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        pqxx::tablewriter copy(w, "usage_ledger", kLedgerColumns.begin(), kLedgerColumns.end());
#pragma GCC diagnostic pop
        copy.write_raw_line(lines);
        copy.complete();
      }
      auto deltas = CounterDeltas(rows);
      if (counters_ && !deltas.empty())
        w.exec_params("INSERT INTO ledger_pending (token, deltas) VALUES ($1, $2::jsonb)", token,
                      DeltasToJson(deltas));
      w.commit();
    });
    if (copied.ok()) return rows;
    if (copied.code() != Status::Code::kConflict) return copied;
  }
  constexpr int kColumns = 21;
  auto text = [](std::string& out, const std::string& v) {
    out += '"';
    for (char ch : v) {
      if (ch == '\0') continue;  // Postgres text cannot hold NUL; a model name may carry one
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  };
  // The rows of [from, to) as one array literal per column.
  auto columns = [&](size_t from, size_t to) {
    std::array<std::string, kColumns> arrays;
    for (std::string& a : arrays) a = "{";
    for (size_t i = from; i < to; ++i) {
      const UsageRecord& r = rows[i];
      const char* sep = i > from ? "," : "";
      for (std::string& a : arrays) a += sep;
      text(arrays[0], r.request_id);
      arrays[1] += std::to_string(r.user_id);
      arrays[2] += std::to_string(r.key_id);
      text(arrays[3], r.provider);
      text(arrays[4], r.model);
      text(arrays[5], r.price_id);
      int64_t numbers[] = {Micros(r.started_at),
                           r.usage.input_tokens,
                           r.usage.output_tokens,
                           r.usage.cache_read_tokens,
                           r.usage.cache_write_5m_tokens,
                           r.usage.cache_write_1h_tokens,
                           r.usage.reasoning_tokens,
                           r.cost.nanos(),
                           r.status};
      for (int k = 0; k < 9; ++k) arrays[6 + k] += std::to_string(numbers[k]);
      arrays[15] += r.streamed ? "t" : "f";
      arrays[16] += r.estimated ? "t" : "f";
      arrays[17] += std::to_string(r.latency_ms);
      arrays[18] += std::to_string(StartMicros(r.window));
      arrays[19] += std::to_string(StartMicros(r.global_window));
      text(arrays[20], token);
    }
    for (std::string& a : arrays) a += "}";
    return arrays;
  };
  std::vector<UsageRecord> inserted;
  Status st = pool_.Run([&](pqxx::connection& c) {
    inserted.clear();
    pqxx::work w(c);
    std::set<std::string> fresh;
    for (size_t from = 0; from < rows.size(); from += kStatementRows) {
      auto arrays = columns(from, std::min(rows.size(), from + kStatementRows));
      auto micros = [](const char* v) {
        return std::string("CASE WHEN ") + v + " = 0 THEN NULL ELSE timestamptz 'epoch' + " + v +
               " * interval '1 microsecond' END";
      };
      auto got = w.exec_params(
          "INSERT INTO usage_ledger (" + pqxx::separated_list(", ", kLedgerColumns) +
              ") SELECT request_id, user_id, nullif(key_id, 0), provider, model, price_id,"
              " timestamptz 'epoch' + started * interval '1 microsecond', input_tokens,"
              " output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,"
              " reasoning_tokens, cost_nanos, status, streamed, estimated, latency_ms, " +
              micros("ws") + ", " + micros("gws") +
              ", batch"
              " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],"
              " $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],"
              " $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::int[],"
              " $16::boolean[], $17::boolean[], $18::int[], $19::bigint[], $20::bigint[],"
              " $21::text[])"
              " AS t(request_id, user_id, key_id, provider, model, price_id, started,"
              " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
              " cache_write_1h_tokens, reasoning_tokens, cost_nanos, status, streamed,"
              " estimated, latency_ms, ws, gws, batch)"
              " ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
          pqxx::prepare::make_dynamic_params(arrays));
      for (const auto& row : got) fresh.insert(row[0].as<std::string>());
    }
    for (const UsageRecord& r : rows) {
      if (fresh.contains(r.request_id)) inserted.push_back(r);
    }
    auto deltas = CounterDeltas(inserted);
    if (counters_ && !deltas.empty())
      w.exec_params("INSERT INTO ledger_pending (token, deltas) VALUES ($1, $2::jsonb)", token,
                    DeltasToJson(deltas));
    w.commit();
  });
  if (!st.ok()) return st;
  return inserted;
}

}  // namespace tollgate
