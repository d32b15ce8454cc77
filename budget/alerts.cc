#include "budget/alerts.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

namespace tollgate {

const char* AlertLevelName(AlertLevel level) {
  switch (level) {
    case AlertLevel::kGreen:
      return "GREEN";
    case AlertLevel::kYellow:
      return "YELLOW";
    case AlertLevel::kOrange:
      return "ORANGE";
    case AlertLevel::kRed:
      return "RED";
    case AlertLevel::kExceeded:
      return "EXCEEDED";
  }
  return "GREEN";
}

AlertLevel LevelOf(Money spend, Money limit, int yellow, int orange, int red) {
  if (limit <= Money()) return spend > Money() ? AlertLevel::kExceeded : AlertLevel::kGreen;
  // Compare spend x 100 with limit x threshold in 128 bits: no division, no floats.
  __int128 scaled = static_cast<__int128>(spend.nanos()) * 100;
  auto at = [&](int pct) { return scaled >= static_cast<__int128>(limit.nanos()) * pct; };
  if (at(100)) return AlertLevel::kExceeded;
  if (at(red)) return AlertLevel::kRed;
  if (at(orange)) return AlertLevel::kOrange;
  if (at(yellow)) return AlertLevel::kYellow;
  return AlertLevel::kGreen;
}

int64_t SpendBasisPoints(Money spend, Money limit) {
  if (limit <= Money()) return spend > Money() ? 10000 : 0;
  return static_cast<int64_t>(static_cast<__int128>(spend.nanos()) * 10000 / limit.nanos());
}

WebhookPoster HttpWebhookPoster() {
  return [](const std::string& url, const std::string& json) -> std::string {
    auto scheme_end = url.find("://");
    auto path_start = url.find('/', scheme_end + 3);
    httplib::Client client(url.substr(0, path_start));
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(10, 0);
    auto r = client.Post(path_start == std::string::npos ? "/" : url.substr(path_start).c_str(),
                         json, "application/json");
    if (!r) return "webhook unreachable: " + httplib::to_string(r.error());
    if (r->status < 200 || r->status >= 300) return "webhook answered " + std::to_string(r->status);
    return "";
  };
}

PgAlerts::PgAlerts(PgPool& pool, const Clock& clock, Metrics& metrics, AlertOptions options,
                   WebhookPoster poster)
    : pool_(pool),
      clock_(clock),
      metrics_(metrics),
      options_(std::move(options)),
      poster_(std::move(poster)) {}

PgAlerts::~PgAlerts() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (loop_.joinable()) loop_.join();
}

void PgAlerts::Raise(const AlertEvent& event) {
  if (event.level == AlertLevel::kGreen) return;
  {
    std::lock_guard lock(mu_);
    auto key =
        std::make_tuple(event.user_id, Micros(event.window_start), static_cast<int>(event.level));
    if (!raised_.insert(key).second) return;
    if (raised_.size() > 100000) raised_.clear();
    queue_.push_back(event);
  }
  wake_.notify_one();
}

Result<int> PgAlerts::StoreQueued() {
  std::deque<AlertEvent> events;
  {
    std::lock_guard lock(mu_);
    events.swap(queue_);
  }
  if (events.empty()) return 0;
  int stored = 0;
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    for (const AlertEvent& e : events) {
      // Rising into RED passes YELLOW and ORANGE too: each level is an event of its own.
      for (int level = static_cast<int>(AlertLevel::kYellow); level <= static_cast<int>(e.level);
           ++level) {
        stored += static_cast<int>(
            w.exec_params(
                 "INSERT INTO alert_events (user_id, level, window_start, spend_nanos, limit_nanos,"
                 " next_attempt_at) VALUES ($1, $2, " +
                     SqlFromMicros(3) + ", $4, $5, " + SqlFromMicros(6) +
                     ") ON CONFLICT (user_id, window_start, level) DO NOTHING",
                 e.user_id, AlertLevelName(static_cast<AlertLevel>(level)), Micros(e.window_start),
                 e.spend.nanos(), e.limit.nanos(), Micros(clock_.Now()))
                .affected_rows());
      }
    }
    w.commit();
  });
  if (!s.ok()) {
    metrics_.Inc(Counter::kPostgresErrors);
    std::lock_guard lock(mu_);
    for (auto it = events.rbegin(); it != events.rend(); ++it) queue_.push_front(*it);  // keep them
    return s;
  }
  return stored;
}

Result<int> PgAlerts::DeliverDue() {
  if (options_.webhook_url.empty()) return 0;
  int delivered = 0;
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    auto due = w.exec_params("SELECT id, user_id, level, " + SqlTime("window_start") +
                                 ", spend_nanos, limit_nanos, attempts, " + SqlTime("created_at") +
                                 " FROM alert_events WHERE delivered_at IS NULL AND attempts < $1 "
                                 "AND next_attempt_at <= " +
                                 SqlFromMicros(2) + " ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED",
                             options_.max_attempts, Micros(clock_.Now()));
    for (const auto& row : due) {
      Money spend = Money::FromNanos(row[4].as<int64_t>()),
            limit = Money::FromNanos(row[5].as<int64_t>());
      nlohmann::json payload = {{"event", "budget.alert"},
                                {"alert_id", row[0].as<int64_t>()},
                                {"user_id", row[1].as<int64_t>()},
                                {"level", row[2].as<std::string>()},
                                {"window_start", FormatRfc3339(FromMicros(row[3].as<int64_t>()))},
                                {"spend_usd", spend.ToUsdString()},
                                {"spend_nanos", spend.nanos()},
                                {"limit_usd", limit.ToUsdString()},
                                {"limit_nanos", limit.nanos()},
                                {"created_at", FormatRfc3339(FromMicros(row[7].as<int64_t>()))}};
      std::string error = poster_(options_.webhook_url, payload.dump());
      int attempts = row[6].as<int>() + 1;
      if (error.empty()) {
        w.exec_params("UPDATE alert_events SET delivered_at = " + SqlFromMicros(2) +
                          ", attempts = $3, last_error = '' WHERE id = $1",
                      row[0].as<int64_t>(), Micros(clock_.Now()), attempts);
        ++delivered;
      } else {
        int64_t backoff_s = std::min<int64_t>(int64_t{1} << std::min(attempts - 1, 20), 300);
        w.exec_params("UPDATE alert_events SET attempts = $2, last_error = $3, next_attempt_at = " +
                          SqlFromMicros(4) + " WHERE id = $1",
                      row[0].as<int64_t>(), attempts, error,
                      Micros(clock_.Now()) + backoff_s * 1'000'000);
      }
    }
    w.commit();
  });
  if (!s.ok()) return s;
  return delivered;
}

void PgAlerts::Start() {
  loop_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::seconds(1));
      if (stopping_) break;
      lock.unlock();
      StoreQueued();
      DeliverDue();
      lock.lock();
    }
  });
}

}  // namespace tollgate
