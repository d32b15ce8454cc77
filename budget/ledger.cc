#include "budget/ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pqxx/tablewriter>

#include "budget/keys.h"
#include "config/clock.h"

namespace tollgate {

PgLedger::PgLedger(PgPool& pool, Metrics& metrics, std::string spool_dir,
                   std::chrono::milliseconds linger)
    : pool_(pool), metrics_(metrics), linger_(linger), spool_dir_(std::move(spool_dir)) {
  if (!spool_dir_.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(spool_dir_, ec);
    spool_file_ =
        spool_dir_ + "/ledger-" + std::to_string(getpid()) + "-" + RandomHex(4) + ".jsonl";
  }
  writer_ = std::thread([this] { Run(); });
}

PgLedger::~PgLedger() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

void PgLedger::Append(UsageRecord record) {
  record.appended = std::chrono::steady_clock::now();
  bool was_empty, full;
  {
    std::lock_guard lock(mu_);
    was_empty = queue_.empty();
    queue_.push_back(std::move(record));
    full = queue_.size() == kBatchRows;
    metrics_.Set(Gauge::kLedgerQueueDepth, static_cast<int64_t>(queue_.size() + in_flight_));
  }
  // The first row of a batch wakes the writer, and a full batch ends its linger; the
  // rows in between wake nobody.
  if (was_empty || full) wake_.notify_one();
}

void PgLedger::Flush() {
  std::unique_lock lock(mu_);
  ++flushing_;  // no lingering for more rows while someone waits for these
  wake_.notify_all();
  drained_.wait(lock, [&] { return queue_.empty() && in_flight_ == 0; });
  --flushing_;
}

size_t PgLedger::queued() {
  std::lock_guard lock(mu_);
  return queue_.size() + in_flight_;
}

void PgLedger::Run() {
  auto backoff = std::chrono::milliseconds(50);
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty() && stopping_) return;
    if (spooled_ && !spool_dir_.empty()) {
      lock.unlock();
      bool replayed = ReplaySpool();
      lock.lock();
      spooled_ = !replayed;
    }
    if (queue_.empty()) continue;
    wake_.wait_for(lock, linger_,
                   [&] { return stopping_ || flushing_ > 0 || queue_.size() >= kBatchRows; });
    std::vector<UsageRecord> batch;
    while (!queue_.empty() && batch.size() < kBatchRows) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    in_flight_ = batch.size();
    lock.unlock();
    Status s = WriteBatch(batch);
    lock.lock();
    in_flight_ = 0;
    metrics_.Set(Gauge::kLedgerQueueDepth, static_cast<int64_t>(queue_.size()));
    if (s.ok()) {
      metrics_.Inc(Counter::kLedgerRowsWritten, batch.size());
      metrics_.Inc(Counter::kLedgerBatchesWritten);
      auto now = std::chrono::steady_clock::now();
      for (const UsageRecord& r : batch) {
        metrics_.Observe(
            Histogram::kSettleLag,
            std::chrono::duration_cast<std::chrono::milliseconds>(now - r.appended).count());
      }
      backoff = std::chrono::milliseconds(50);
      if (queue_.empty()) drained_.notify_all();
      continue;
    }
    metrics_.Inc(Counter::kPostgresErrors);
    if (!spool_dir_.empty() && Spool(batch)) {
      spooled_ = true;  // durable on disk: replayed when Postgres answers
      if (queue_.empty()) drained_.notify_all();
    } else {
      // Keep the rows, in order, and try again later; stopping still waits for them.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
    }
    wake_.wait_for(lock, backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

std::string PgLedger::ToSpoolLine(const UsageRecord& r) {
  const Usage& u = r.usage;
  return nlohmann::json{{"request_id", r.request_id},
                        {"user_id", r.user_id},
                        {"key_id", r.key_id},
                        {"provider", r.provider},
                        {"model", r.model},
                        {"price_id", r.price_id},
                        {"started_at_us", Micros(r.started_at)},
                        {"input", u.input_tokens},
                        {"output", u.output_tokens},
                        {"cache_read", u.cache_read_tokens},
                        {"cache_write_5m", u.cache_write_5m_tokens},
                        {"cache_write_1h", u.cache_write_1h_tokens},
                        {"reasoning", u.reasoning_tokens},
                        {"cost_nanos", r.cost.nanos()},
                        {"status", r.status},
                        {"streamed", r.streamed},
                        {"estimated", r.estimated},
                        {"latency_ms", r.latency_ms}}
      .dump();
}

std::optional<UsageRecord> PgLedger::FromSpoolLine(const std::string& line) {
  try {
    auto j = nlohmann::json::parse(line);
    UsageRecord r;
    r.request_id = j.at("request_id");
    r.user_id = j.at("user_id");
    r.key_id = j.at("key_id");
    r.provider = j.at("provider");
    r.model = j.at("model");
    r.price_id = j.at("price_id");
    r.started_at = FromMicros(j.at("started_at_us"));
    r.usage.input_tokens = j.at("input");
    r.usage.output_tokens = j.at("output");
    r.usage.cache_read_tokens = j.at("cache_read");
    r.usage.cache_write_5m_tokens = j.at("cache_write_5m");
    r.usage.cache_write_1h_tokens = j.at("cache_write_1h");
    r.usage.reasoning_tokens = j.at("reasoning");
    r.cost = Money::FromNanos(j.at("cost_nanos"));
    r.status = j.at("status");
    r.streamed = j.at("streamed");
    r.estimated = j.at("estimated");
    r.latency_ms = j.at("latency_ms");
    return r;
  } catch (const std::exception&) {
    return std::nullopt;  // a torn last line of a crashed writer
  }
}

bool PgLedger::Spool(const std::vector<UsageRecord>& batch) {
  std::string text;
  for (const UsageRecord& r : batch) text += ToSpoolLine(r) + "\n";
  int fd = ::open(spool_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool PgLedger::ReplaySpool() {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(spool_dir_, ec)) {
    std::string path = entry.path().string();
    if (path.size() > 6 && path.substr(path.size() - 6) == ".jsonl") files.push_back(path);
  }
  for (const std::string& file : files) {
    // Claim it: another writer (or our own appends) must not touch it while it replays.
    std::string claimed = file + ".replaying-" + std::to_string(getpid()) + "-" + RandomHex(3);
    if (std::rename(file.c_str(), claimed.c_str()) != 0) continue;
    std::ifstream in(claimed);
    std::vector<UsageRecord> rows;
    for (std::string line; std::getline(in, line);) {
      if (auto r = FromSpoolLine(line)) rows.push_back(std::move(*r));
    }
    for (size_t i = 0; i < rows.size(); i += 500) {
      std::vector<UsageRecord> batch(
          rows.begin() + static_cast<long>(i),
          rows.begin() + static_cast<long>(std::min(rows.size(), i + 500)));
      if (!WriteBatch(batch).ok()) {
        std::rename(claimed.c_str(), file.c_str());  // give it back; written rows are idempotent
        return false;
      }
      metrics_.Inc(Counter::kLedgerRowsWritten, batch.size());
      metrics_.Inc(Counter::kLedgerBatchesWritten);
    }
    std::filesystem::remove(claimed, ec);
  }
  return true;
}

Result<Money> PgLedger::SpendSince(int64_t user_id, Timestamp from) {
  return pool_.Get<Money>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    return Money::FromNanos(
        w.exec_params1("SELECT coalesce(sum(cost_nanos), 0)::bigint FROM usage_ledger"
                       " WHERE ($1::bigint = 0 OR user_id = $1::bigint) AND started_at >= " +
                           SqlFromMicros(2),
                       user_id, Micros(from))[0]
            .as<int64_t>());
  });
}

namespace {

// The ledger's columns, in the order both ways of writing a row give them.
// clang-format off
const std::vector<std::string> kLedgerColumns = {
    "request_id", "user_id", "key_id", "provider", "model", "price_id", "started_at",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "reasoning_tokens", "cost_nanos", "status", "streamed",
    "estimated", "latency_ms"};
// clang-format on

// Text for COPY's text format: backslash, tab, newline and carriage return escaped, NUL
// (which Postgres text cannot hold) dropped. The runs between them go in whole.
void AppendCopyText(std::string& out, std::string_view v) {
  size_t run = 0;  // the start of the plain characters not yet appended
  for (size_t i = 0; i < v.size(); ++i) {
    const char* escaped;
    switch (v[i]) {
      case '\0':
        escaped = "";
        break;
      case '\\':
        escaped = "\\\\";
        break;
      case '\t':
        escaped = "\\t";
        break;
      case '\n':
        escaped = "\\n";
        break;
      case '\r':
        escaped = "\\r";
        break;
      default:
        continue;
    }
    out.append(v.substr(run, i - run));
    out += escaped;
    run = i + 1;
  }
  out.append(v.substr(run));
}

void AppendCopyNumber(std::string& out, int64_t v) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
  out.append(digits, end);
}

// One ledger row as a line of COPY's text format, its fields in kLedgerColumns' order.
void AppendCopyLine(std::string& out, const UsageRecord& r) {
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
}

}  // namespace

// One transaction per batch, one short statement per kStatementRows of it, so that the
// Postgres backend, which shares the machine's cores with the proxy, gives the CPU back
// between them (one statement for a whole batch ran for milliseconds and held back the
// hot path). The rows go in by COPY: no statement to parse and plan per chunk, and
// Postgres inserts them in bulk. COPY cannot skip a request id already stored, which
// happens only when a spooled batch whose first write did commit is replayed; that
// batch is written again by InsertBatch, which skips them.
Status PgLedger::WriteBatch(const std::vector<UsageRecord>& batch) {
  Status copied = CopyBatch(batch);
  if (copied.code() != Status::Code::kConflict) return copied;
  return InsertBatch(batch);
}

Status PgLedger::CopyBatch(const std::vector<UsageRecord>& batch) {
  return pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    std::string lines;
    for (size_t from = 0; from < batch.size(); from += kStatementRows) {
      lines.clear();
      for (size_t i = from; i < std::min(batch.size(), from + kStatementRows); ++i) {
        if (i > from) lines += '\n';
        AppendCopyLine(lines, batch[i]);
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
    w.commit();
  });
}

// The same rows by INSERT: each column travels as one Postgres array literal and
// unnest() turns them back into rows; a request id already stored is skipped.
Status PgLedger::InsertBatch(const std::vector<UsageRecord>& batch) {
  constexpr int kColumns = 18;
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
      const UsageRecord& r = batch[i];
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
    }
    for (std::string& a : arrays) a += "}";
    return arrays;
  };
  return pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    for (size_t from = 0; from < batch.size(); from += kStatementRows) {
      auto arrays = columns(from, std::min(batch.size(), from + kStatementRows));
      w.exec_params(
          "INSERT INTO usage_ledger (" + pqxx::separated_list(", ", kLedgerColumns) +
              ") SELECT request_id, user_id, nullif(key_id, 0), provider, model, price_id,"
              " timestamptz 'epoch' + started * interval '1 microsecond', input_tokens,"
              " output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,"
              " reasoning_tokens, cost_nanos, status, streamed, estimated, latency_ms"
              " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],"
              " $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],"
              " $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::int[],"
              " $16::boolean[], $17::boolean[], $18::int[])"
              " AS t(request_id, user_id, key_id, provider, model, price_id, started,"
              " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
              " cache_write_1h_tokens, reasoning_tokens, cost_nanos, status, streamed,"
              " estimated, latency_ms)"
              " ON CONFLICT (request_id) DO NOTHING",
          pqxx::prepare::make_dynamic_params(arrays));
    }
    w.commit();
  });
}

}  // namespace tollgate
