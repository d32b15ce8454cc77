// The pricing table: data keyed by (provider, model, effective_from[, time window]),
// loaded from config/pricing.json into exact integer rates.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "config/clock.h"
#include "config/money.h"
#include "config/status.h"

namespace tollgate {

struct Rates {
  TokenRate input;           // uncached input / cache miss
  TokenRate output;          // output, reasoning included
  TokenRate cache_read;      // cache hit / cache read (default: input)
  TokenRate cache_write_5m;  // Anthropic 5-minute cache write (default: input)
  TokenRate cache_write_1h;  // Anthropic 1-hour cache write (default: input)
};

// A time-of-day window in UTC on some weekdays, during which other rates apply
// (DeepSeek's peak hours).
struct PriceWindow {
  std::string name;                      // e.g. "peak"
  unsigned weekday_mask = 0;             // bit 0 = Sunday ... bit 6 = Saturday
  std::vector<std::pair<int, int>> utc;  // [start, end) in minutes after midnight UTC
  Rates rates;
};

struct PriceEntry {
  std::string provider;
  std::string model;  // "*" = the provider's price for any model
  Timestamp effective_from;
  std::string effective_from_text;
  Rates rates;  // outside every window
  std::vector<PriceWindow> windows;
  int64_t default_max_output = 4096;  // output cap reserved when a request names none
  // The model's largest output: a request asking for more is refused (400). 0: not
  // known, kAnyModelMaxOutput applies.
  int64_t max_output = 0;
  static constexpr int64_t kAnyModelMaxOutput = 1'000'000;
  int64_t MaxOutput() const { return max_output > 0 ? max_output : kAnyModelMaxOutput; }
  std::string source;
  std::string checked;    // date the price was read from the source
  bool override = false;  // set by an admin at run time, not shipped in pricing.json
};

// What a lookup returns: the rates in force and which entry and window gave them.
struct PriceQuote {
  const PriceEntry* entry = nullptr;
  Rates rates;
  std::string id;  // "provider/model@effective_from[#window]", recorded in the ledger
};

class PricingTable {
 public:
  static Result<PricingTable> Load(const std::string& path);
  static Result<PricingTable> Parse(const std::string& text, const std::string& where);

  // The price in force at `at` for `model` (aliases resolved), or NotFound.
  Result<PriceQuote> Lookup(const std::string& provider, const std::string& model,
                            Timestamp at) const;
  // The model name an alias stands for (the name itself when it is no alias).
  std::string Canonical(const std::string& provider, const std::string& model) const;

  // Adds an admin's price for (provider, model) from its effective_from on; it wins
  // over a shipped entry with the same or an earlier date, and replaces an earlier
  // override with the same date. Safe while other threads look prices up.
  void AddOverride(PriceEntry e) const;
  std::vector<PriceEntry> Overrides() const;

  const std::vector<PriceEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& aliases() const { return aliases_; }

 private:
  // Overrides live as long as the table and are never removed, so a PriceQuote's
  // entry pointer stays valid.
  struct OverrideList {
    mutable std::shared_mutex mu;
    std::deque<PriceEntry> entries;  // in the order added; later ones win ties
    std::atomic<size_t> count{0};    // lets lookups skip the lock while there are none
  };

  const PriceEntry* BestOverride(const std::string& provider, const std::string& model,
                                 Timestamp at) const;

  std::vector<PriceEntry> entries_;             // sorted by provider, model, effective_from
  std::map<std::string, std::string> aliases_;  // "provider/alias" -> model
  std::shared_ptr<OverrideList> overrides_ = std::make_shared<OverrideList>();
};

}  // namespace tollgate
