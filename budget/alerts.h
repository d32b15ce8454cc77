// Alert levels and alert events. A level is stored once per user per window
// (alert_events is unique on user, window, level) and delivered to the configured
// webhook at least once, retried with back-off, never on the request path.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "budget/pg_pool.h"
#include "config/money.h"
#include "net/metrics.h"

namespace tollgate {

enum class AlertLevel { kGreen = 0, kYellow, kOrange, kRed, kExceeded };

const char* AlertLevelName(AlertLevel level);
// spend / limit against the thresholds (percent); EXCEEDED at 100 % or more. A limit
// of 0 is EXCEEDED as soon as anything is spent.
AlertLevel LevelOf(Money spend, Money limit, int yellow, int orange, int red);
// spend / limit in hundredths of a percent, rounded down (10000 = 100 %); a limit of 0
// is 100 % as soon as anything is spent.
int64_t SpendBasisPoints(Money spend, Money limit);

struct AlertEvent {
  int64_t user_id = 0;
  AlertLevel level = AlertLevel::kGreen;
  Timestamp window_start;
  Money spend;
  Money limit;
};

class AlertSink {
 public:
  virtual ~AlertSink() = default;
  // Never blocks: the event is stored and delivered later.
  virtual void Raise(const AlertEvent& event) = 0;
};

// Sends one webhook POST; returns an error text, empty on success.
using WebhookPoster = std::function<std::string(const std::string& url, const std::string& json)>;
WebhookPoster HttpWebhookPoster();

struct AlertOptions {
  std::string webhook_url;  // empty: store events only
  int max_attempts = 12;    // then give up (last_error says why)
};

class PgAlerts final : public AlertSink {
 public:
  PgAlerts(PgPool& pool, const Clock& clock, Metrics& metrics, AlertOptions options,
           WebhookPoster poster);
  ~PgAlerts() override;

  void Raise(const AlertEvent& event) override;
  // Stores queued events (one per level passed, once per window). Returns how many
  // rows were new. The background loop calls it; tests call it directly.
  Result<int> StoreQueued();
  // Delivers events that are due; reschedules failures with exponential back-off
  // (1 s, 2 s, 4 s ... 5 min). Safe across instances (FOR UPDATE SKIP LOCKED).
  Result<int> DeliverDue();
  // Starts the background loop (every 250 ms while there is work, else 1 s).
  void Start();

 private:
  PgPool& pool_;
  const Clock& clock_;
  Metrics& metrics_;
  const AlertOptions options_;
  const WebhookPoster poster_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<AlertEvent> queue_;
  std::set<std::tuple<int64_t, int64_t, int>> raised_;  // seen here already: no DB write
  bool stopping_ = false;
  std::thread loop_;
};

}  // namespace tollgate
