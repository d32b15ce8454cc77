// The ledger's own formats (budget/spool.h, budget/counters.h) on arbitrary bytes: a spool
// line, the deltas of a pending batch, a hold id. Whatever is read writes back to text
// that reads the same; and a row made of arbitrary fields reads back as written (NUL,
// which Postgres text cannot hold, dropped).
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>

#include "budget/counters.h"
#include "budget/ledger.h"
#include "budget/pg_pool.h"
#include "budget/spool.h"
#include "tests/fuzz/fuzz_support.h"

namespace tollgate {
namespace {

std::string NoNul(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '\0'), s.end());
  return s;
}

bool SameRow(const UsageRecord& a, const UsageRecord& b) {
  const Usage &u = a.usage, &v = b.usage;
  return NoNul(a.request_id) == NoNul(b.request_id) && a.user_id == b.user_id &&
         a.key_id == b.key_id && NoNul(a.provider) == NoNul(b.provider) &&
         NoNul(a.model) == NoNul(b.model) && NoNul(a.price_id) == NoNul(b.price_id) &&
         a.started_at == b.started_at && u.input_tokens == v.input_tokens &&
         u.output_tokens == v.output_tokens && u.cache_read_tokens == v.cache_read_tokens &&
         u.cache_write_5m_tokens == v.cache_write_5m_tokens &&
         u.cache_write_1h_tokens == v.cache_write_1h_tokens &&
         u.reasoning_tokens == v.reasoning_tokens && a.cost == b.cost && a.status == b.status &&
         a.streamed == b.streamed && a.estimated == b.estimated && a.latency_ms == b.latency_ms &&
         a.window.has_value() == b.window.has_value() &&
         (!a.window || (a.window->start == b.window->start && a.window->end == b.window->end)) &&
         a.global_window.has_value() == b.global_window.has_value() &&
         (!a.global_window || (a.global_window->start == b.global_window->start &&
                               a.global_window->end == b.global_window->end)) &&
         NoNul(a.hold_id) == NoNul(b.hold_id);
}

void CheckLine(std::string_view line) {
  auto row = ParseSpoolLine(line);
  if (!row) return;
  std::string written;
  AppendSpoolLine(written, *row);
  FUZZ_CHECK(written.find('\n') == std::string::npos, "one line");
  auto again = ParseSpoolLine(written);
  FUZZ_CHECK(again.has_value() && SameRow(*row, *again), "a row read back as written");
  std::string rewritten;
  AppendSpoolLine(rewritten, *again);
  FUZZ_CHECK(rewritten == written, "writing is a fixed point");
}

void CheckMadeRow(FuzzedDataProvider& in) {
  UsageRecord r;
  auto text = [&] { return in.ConsumeRandomLengthString(64); };
  auto window = [&]() -> std::optional<Window> {
    if (!in.ConsumeBool()) return std::nullopt;
    return Window{FromMicros(in.ConsumeIntegral<int64_t>()),
                  FromMicros(in.ConsumeIntegral<int64_t>())};
  };
  r.request_id = text();
  r.user_id = in.ConsumeIntegral<int64_t>();
  r.key_id = in.ConsumeIntegral<int64_t>();
  r.provider = text();
  r.model = text();
  r.price_id = text();
  r.started_at = FromMicros(in.ConsumeIntegral<int64_t>());
  r.usage = {in.ConsumeIntegral<int64_t>(), in.ConsumeIntegral<int64_t>(),
             in.ConsumeIntegral<int64_t>(), in.ConsumeIntegral<int64_t>(),
             in.ConsumeIntegral<int64_t>(), in.ConsumeIntegral<int64_t>()};
  r.cost = Money::FromNanos(in.ConsumeIntegral<int64_t>());
  r.status = in.ConsumeIntegral<int>();
  r.streamed = in.ConsumeBool();
  r.estimated = in.ConsumeBool();
  r.latency_ms = in.ConsumeIntegral<int64_t>();
  r.window = window();
  r.global_window = window();
  r.hold_id = in.ConsumeRemainingBytesAsString();
  std::string line;
  AppendSpoolLine(line, r);
  FUZZ_CHECK(line.find('\n') == std::string::npos, "one line");
  auto back = ParseSpoolLine(line);
  FUZZ_CHECK(back.has_value() && SameRow(r, *back), "a row reads back as it was written");
}

void CheckDeltas(const std::string& text) {
  auto deltas = DeltasFromJson(text);
  if (!deltas) return;
  auto again = DeltasFromJson(DeltasToJson(*deltas));
  FUZZ_CHECK(again.has_value() && again->size() == deltas->size(), "deltas read back");
  for (size_t i = 0; i < deltas->size(); ++i) {
    const CounterDelta &a = (*deltas)[i], &b = (*again)[i];
    FUZZ_CHECK(a.account == b.account && a.window.start == b.window.start &&
                   a.window.end == b.window.end && a.cost == b.cost,
               "a delta reads back as written");
  }
}

void CheckHoldId(const std::string& text) {
  auto hold = ParseHoldId(text);
  if (!hold) return;
  auto again = ParseHoldId(HoldId(*hold));
  FUZZ_CHECK(again && again->user_window == hold->user_window &&
                 again->global_window == hold->global_window && again->amount == hold->amount &&
                 again->global_amount == hold->global_amount && again->id == hold->id,
             "a hold id reads back as written");
}

}  // namespace
}  // namespace tollgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tollgate;
  std::string text(fuzz::Bytes(data, size));
  CheckLine(text);
  CheckDeltas(text);
  CheckHoldId(text);
  FuzzedDataProvider in(data, size);
  CheckMadeRow(in);
  return 0;
}
