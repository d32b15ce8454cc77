#include "budget/usage_queries.h"

namespace tollgate {
namespace {

// $1 user (0 = all), $2 from, $3 to (microseconds).
const std::string kWhere =
    " WHERE ($1::bigint = 0 OR user_id = $1::bigint) AND started_at >= " + SqlFromMicros(2) +
    " AND started_at < " + SqlFromMicros(3);

int64_t ToMicros(Timestamp t) {
  // Timestamp::max() stands for "no end"; keep it inside Postgres' range.
  constexpr int64_t kFarFuture = 253402300799000000;  // 9999-12-31T23:59:59Z
  return std::min(Micros(t), kFarFuture);
}

}  // namespace

void UsageTotals::Add(const UsageTotals& o) {
  requests += o.requests;
  input_tokens += o.input_tokens;
  output_tokens += o.output_tokens;
  cache_read_tokens += o.cache_read_tokens;
  cache_write_tokens += o.cache_write_tokens;
  reasoning_tokens += o.reasoning_tokens;
  cost += o.cost;
}

Result<std::vector<UsageGroup>> PgUsageQueries::Breakdown(const LedgerFilter& f) {
  return pool_.Get<std::vector<UsageGroup>>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    pqxx::result r = w.exec_params(
        "SELECT provider, model, count(*), sum(input_tokens), sum(output_tokens),"
        " sum(cache_read_tokens), sum(cache_write_tokens + cache_write_1h_tokens),"
        " sum(reasoning_tokens), sum(cost_nanos) FROM usage_ledger" +
            kWhere + " GROUP BY provider, model ORDER BY sum(cost_nanos) DESC, provider, model",
        f.user_id, Micros(f.from), ToMicros(f.to));
    std::vector<UsageGroup> out;
    for (const auto& row : r) {
      UsageGroup g{row[0].as<std::string>(), row[1].as<std::string>(), {}};
      g.totals.requests = row[2].as<int64_t>();
      g.totals.input_tokens = row[3].as<int64_t>();
      g.totals.output_tokens = row[4].as<int64_t>();
      g.totals.cache_read_tokens = row[5].as<int64_t>();
      g.totals.cache_write_tokens = row[6].as<int64_t>();
      g.totals.reasoning_tokens = row[7].as<int64_t>();
      g.totals.cost = Money::FromNanos(row[8].as<int64_t>());
      out.push_back(std::move(g));
    }
    return out;
  });
}

Result<std::vector<LedgerRow>> PgUsageQueries::Page(const LedgerFilter& f, int64_t cursor,
                                                    int limit, bool newest_first) {
  return pool_.Get<std::vector<LedgerRow>>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    std::string order = newest_first ? " AND ($4::bigint = 0 OR id < $4::bigint) ORDER BY id DESC"
                                     : " AND id > $4::bigint ORDER BY id";
    pqxx::result r = w.exec_params(
        "SELECT id, request_id, user_id, coalesce(key_id, 0), provider, model, price_id, " +
            SqlTime("started_at") +
            ", input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
            " cache_write_1h_tokens, reasoning_tokens, cost_nanos, status, streamed, estimated,"
            " latency_ms FROM usage_ledger" +
            kWhere + order + " LIMIT $5",
        f.user_id, Micros(f.from), ToMicros(f.to), cursor, limit);
    std::vector<LedgerRow> out;
    out.reserve(r.size());
    for (const auto& row : r) {
      LedgerRow l;
      l.id = row[0].as<int64_t>();
      UsageRecord& u = l.record;
      u.request_id = row[1].as<std::string>();
      u.user_id = row[2].as<int64_t>();
      u.key_id = row[3].as<int64_t>();
      u.provider = row[4].as<std::string>();
      u.model = row[5].as<std::string>();
      u.price_id = row[6].as<std::string>();
      u.started_at = FromMicros(row[7].as<int64_t>());
      u.usage.input_tokens = row[8].as<int64_t>();
      u.usage.output_tokens = row[9].as<int64_t>();
      u.usage.cache_read_tokens = row[10].as<int64_t>();
      u.usage.cache_write_5m_tokens = row[11].as<int64_t>();
      u.usage.cache_write_1h_tokens = row[12].as<int64_t>();
      u.usage.reasoning_tokens = row[13].as<int64_t>();
      u.cost = Money::FromNanos(row[14].as<int64_t>());
      u.status = row[15].as<int>();
      u.streamed = row[16].as<bool>();
      u.estimated = row[17].as<bool>();
      u.latency_ms = row[18].as<int64_t>();
      out.push_back(std::move(l));
    }
    return out;
  });
}

}  // namespace tollgate
