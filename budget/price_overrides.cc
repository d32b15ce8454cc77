#include "budget/price_overrides.h"

namespace tollgate {

PriceOverrides::~PriceOverrides() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

Status PriceOverrides::Add(const PriceOverride& o) {
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    w.exec_params(
        "INSERT INTO pricing_overrides (provider, model, effective_from, input_nanos_per_m,"
        " output_nanos_per_m, cache_read_nanos_per_m, cache_write_5m_nanos_per_m,"
        " cache_write_1h_nanos_per_m, created_by) VALUES ($1, $2, " +
            SqlFromMicros(3) +
            ", $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (provider, model, effective_from) DO UPDATE SET"
            " input_nanos_per_m = excluded.input_nanos_per_m,"
            " output_nanos_per_m = excluded.output_nanos_per_m,"
            " cache_read_nanos_per_m = excluded.cache_read_nanos_per_m,"
            " cache_write_5m_nanos_per_m = excluded.cache_write_5m_nanos_per_m,"
            " cache_write_1h_nanos_per_m = excluded.cache_write_1h_nanos_per_m,"
            " created_by = excluded.created_by, created_at = clock_timestamp()",
        o.provider, table_.Canonical(o.provider, o.model), Micros(o.effective_from),
        o.rates.input.nanos_per_million(), o.rates.output.nanos_per_million(),
        o.rates.cache_read.nanos_per_million(), o.rates.cache_write_5m.nanos_per_million(),
        o.rates.cache_write_1h.nanos_per_million(), o.created_by);
    w.commit();
  });
  if (!s.ok()) return s;
  return Refresh();
}

Status PriceOverrides::Refresh() {
  std::lock_guard lock(mu_);
  return pool_.Run([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    auto rows = w.exec(
        "SELECT id, " + SqlTime("created_at") + ", provider, model, " + SqlTime("effective_from") +
        ", input_nanos_per_m, output_nanos_per_m, coalesce(cache_read_nanos_per_m, "
        "input_nanos_per_m), coalesce(cache_write_5m_nanos_per_m, input_nanos_per_m),"
        " coalesce(cache_write_1h_nanos_per_m, input_nanos_per_m), created_by"
        " FROM pricing_overrides ORDER BY created_at, id");
    for (const auto& r : rows) {
      auto version = std::pair{r[0].as<int64_t>(), r[1].as<int64_t>()};
      if (!applied_.insert(version).second) continue;
      PriceEntry e;
      e.provider = r[2].as<std::string>();
      e.model = r[3].as<std::string>();
      e.effective_from = FromMicros(r[4].as<int64_t>());
      e.effective_from_text = FormatRfc3339(e.effective_from);
      e.rates.input = TokenRate::FromNanosPerMillion(r[5].as<int64_t>());
      e.rates.output = TokenRate::FromNanosPerMillion(r[6].as<int64_t>());
      e.rates.cache_read = TokenRate::FromNanosPerMillion(r[7].as<int64_t>());
      e.rates.cache_write_5m = TokenRate::FromNanosPerMillion(r[8].as<int64_t>());
      e.rates.cache_write_1h = TokenRate::FromNanosPerMillion(r[9].as<int64_t>());
      e.source = "override by " + r[10].as<std::string>();
      table_.AddOverride(std::move(e));
    }
  });
}

void PriceOverrides::Start(std::chrono::milliseconds every) {
  refresher_ = std::thread([this, every] {
    std::unique_lock lock(mu_);
    while (!wake_.wait_for(lock, every, [this] { return stopping_; })) {
      lock.unlock();
      Refresh();  // a failure is retried on the next turn
      lock.lock();
    }
  });
}

}  // namespace tollgate
