#include "config/pricing.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "config/jsonc.h"

namespace tollgate {
namespace {

using nlohmann::json;

Status ReadRate(const json& j, const std::string& key, const std::string& field,
                std::optional<TokenRate>* out) {
  if (!j.contains(key)) return Status::Ok();
  std::optional<std::string> text;
  if (j[key].is_string())
    text = j[key].get<std::string>();
  else if (j[key].is_number())
    text = DecimalText(j[key].get<double>());
  auto rate = text ? TokenRate::ParseUsdPerMillion(*text) : std::nullopt;
  if (!rate)
    return FieldError(field, "must be a non-negative USD-per-million amount (at most 9 decimals)");
  *out = rate;
  return Status::Ok();
}

Status ReadRates(const json& j, const std::string& where, const Rates* base, Rates* out) {
  std::optional<TokenRate> in, outp, read, w5, w1;
  if (Status s = ReadRate(j, "input", where + ".input", &in); !s.ok()) return s;
  if (Status s = ReadRate(j, "output", where + ".output", &outp); !s.ok()) return s;
  if (Status s = ReadRate(j, "cache_read", where + ".cache_read", &read); !s.ok()) return s;
  if (Status s = ReadRate(j, "cache_write_5m", where + ".cache_write_5m", &w5); !s.ok()) return s;
  if (Status s = ReadRate(j, "cache_write_1h", where + ".cache_write_1h", &w1); !s.ok()) return s;
  if (!base && (!in || !outp)) return FieldError(where, "needs input and output prices");
  out->input = in ? *in : base->input;
  out->output = outp ? *outp : base->output;
  out->cache_read = read ? *read : (base ? base->cache_read : out->input);
  out->cache_write_5m = w5 ? *w5 : (base ? base->cache_write_5m : out->input);
  out->cache_write_1h = w1 ? *w1 : (base ? base->cache_write_1h : out->input);
  return Status::Ok();
}

Status ParseClock(const std::string& text, int* minutes) {
  int h = 0, m = 0;
  if (text.size() != 5 || text[2] != ':' || std::sscanf(text.c_str(), "%2d:%2d", &h, &m) != 2 ||
      h > 24 || m > 59 || (h == 24 && m != 0))
    return Status::Invalid("bad time");
  *minutes = h * 60 + m;
  return Status::Ok();
}

Status ReadWindow(const json& j, const std::string& where, const Rates& base, PriceWindow* w) {
  if (Status s = CheckKeys(j, where,
                           {"name", "weekdays", "utc", "input", "output", "cache_read",
                            "cache_write_5m", "cache_write_1h"});
      !s.ok())
    return s;
  if (!j.contains("name") || !j["name"].is_string())
    return FieldError(where + ".name", "must be a string");
  w->name = j["name"].get<std::string>();
  static const char* kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
  if (!j.contains("weekdays") || !j["weekdays"].is_array()) {
    return FieldError(where + ".weekdays", "must be a list such as [\"mon\",\"tue\"]");
  }
  for (const json& d : j["weekdays"]) {
    auto found = d.is_string() ? std::find(std::begin(kDays), std::end(kDays), d.get<std::string>())
                               : std::end(kDays);
    if (found == std::end(kDays))
      return FieldError(where + ".weekdays", "unknown day (use sun..sat)");
    w->weekday_mask |= 1u << (found - std::begin(kDays));
  }
  if (!j.contains("utc") || !j["utc"].is_array() || j["utc"].empty()) {
    return FieldError(where + ".utc", "must be a list of \"HH:MM-HH:MM\" ranges");
  }
  for (const json& r : j["utc"]) {
    std::string text = r.is_string() ? r.get<std::string>() : "";
    int a = 0, b = 0;
    if (text.size() != 11 || text[5] != '-' || !ParseClock(text.substr(0, 5), &a).ok() ||
        !ParseClock(text.substr(6), &b).ok() || a >= b) {
      return FieldError(where + ".utc",
                        "range \"" + text + "\" must be HH:MM-HH:MM with start < end");
    }
    w->utc.emplace_back(a, b);
  }
  return ReadRates(j, where, &base, &w->rates);
}

Status ReadEntry(const json& j, const std::string& where, PriceEntry* e,
                 std::vector<std::string>* aliases) {
  if (Status s = CheckKeys(j, where,
                           {"provider", "model", "aliases", "effective_from", "input", "output",
                            "cache_read", "cache_write_5m", "cache_write_1h", "windows",
                            "default_max_output", "max_output", "source", "checked", "note"});
      !s.ok())
    return s;
  for (auto [key, target] : {std::pair{"provider", &e->provider},
                             {"model", &e->model},
                             {"effective_from", &e->effective_from_text},
                             {"source", &e->source},
                             {"checked", &e->checked}}) {
    if (!j.contains(key) || !j[key].is_string() || j[key].get<std::string>().empty()) {
      return FieldError(where + "." + key, "is required (a non-empty string)");
    }
    *target = j[key].get<std::string>();
  }
  static const std::set<std::string> kKnown = {"mistral", "anthropic", "deepseek", "ollama"};
  if (!kKnown.count(e->provider)) {
    return FieldError(where + ".provider", "must be mistral, anthropic, deepseek or ollama");
  }
  if (!ParseRfc3339(e->effective_from_text, &e->effective_from)) {
    return FieldError(where + ".effective_from", "must be a date (YYYY-MM-DD) or RFC 3339 time");
  }
  if (Status s = ReadRates(j, where, nullptr, &e->rates); !s.ok()) return s;
  if (j.contains("default_max_output")) {
    if (!j["default_max_output"].is_number_integer() ||
        j["default_max_output"].get<int64_t>() < 1) {
      return FieldError(where + ".default_max_output", "must be a positive integer");
    }
    e->default_max_output = j["default_max_output"].get<int64_t>();
  }
  if (j.contains("max_output")) {
    if (!j["max_output"].is_number_integer() || j["max_output"].get<int64_t>() < 1 ||
        j["max_output"].get<int64_t>() > PriceEntry::kAnyModelMaxOutput) {
      return FieldError(where + ".max_output", "must be an integer from 1 to 1000000");
    }
    e->max_output = j["max_output"].get<int64_t>();
    if (e->default_max_output > e->max_output)
      return FieldError(where + ".default_max_output", "must not be above max_output");
  }
  if (j.contains("windows")) {
    if (!j["windows"].is_array()) return FieldError(where + ".windows", "must be a list");
    for (size_t i = 0; i < j["windows"].size(); ++i) {
      PriceWindow w;
      if (Status s = ReadWindow(j["windows"][i], where + ".windows[" + std::to_string(i) + "]",
                                e->rates, &w);
          !s.ok())
        return s;
      e->windows.push_back(std::move(w));
    }
  }
  if (j.contains("aliases")) {
    if (!j["aliases"].is_array())
      return FieldError(where + ".aliases", "must be a list of strings");
    for (const json& a : j["aliases"]) {
      if (!a.is_string()) return FieldError(where + ".aliases", "must be a list of strings");
      aliases->push_back(a.get<std::string>());
    }
  }
  return Status::Ok();
}

bool InWindow(const PriceWindow& w, Timestamp at) {
  using namespace std::chrono;
  auto day = floor<days>(at);
  unsigned day_of_week = std::chrono::weekday(day).c_encoding();
  if (!(w.weekday_mask & (1u << day_of_week))) return false;
  int minute = static_cast<int>(duration_cast<minutes>(at - day).count());
  for (auto [a, b] : w.utc) {
    if (minute >= a && minute < b) return true;
  }
  return false;
}

}  // namespace

Result<PricingTable> PricingTable::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path + ": cannot open pricing file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return Parse(buffer.str(), path);
}

Result<PricingTable> PricingTable::Parse(const std::string& text, const std::string& where) {
  auto parsed = ParseJsonc(text, where);
  if (!parsed.ok()) return parsed.status();
  json& root = *parsed;
  if (Status s = CheckKeys(root, "", {"models", "note"}); !s.ok())
    return Status::Invalid(where + ": " + s.message());
  if (!root.contains("models") || !root["models"].is_array()) {
    return Status::Invalid(where + ": models: must be a list");
  }
  PricingTable table;
  for (size_t i = 0; i < root["models"].size(); ++i) {
    PriceEntry e;
    std::vector<std::string> aliases;
    std::string field = "models[" + std::to_string(i) + "]";
    if (Status s = ReadEntry(root["models"][i], field, &e, &aliases); !s.ok()) {
      return Status::Invalid(where + ": " + s.message());
    }
    for (const std::string& a : aliases) {
      auto [it, inserted] = table.aliases_.emplace(e.provider + "/" + a, e.model);
      if (!inserted && it->second != e.model) {
        return Status::Invalid(where + ": " + field + ".aliases: \"" + a + "\" already names " +
                               it->second);
      }
    }
    for (const PriceEntry& other : table.entries_) {
      if (other.provider == e.provider && other.model == e.model &&
          other.effective_from == e.effective_from) {
        return Status::Invalid(where + ": " + field + ": duplicate entry for " + e.provider + "/" +
                               e.model + " at " + e.effective_from_text);
      }
    }
    table.entries_.push_back(std::move(e));
  }
  std::sort(table.entries_.begin(), table.entries_.end(),
            [](const PriceEntry& a, const PriceEntry& b) {
              return std::tie(a.provider, a.model, a.effective_from) <
                     std::tie(b.provider, b.model, b.effective_from);
            });
  return table;
}

std::string PricingTable::Canonical(const std::string& provider, const std::string& model) const {
  // Ollama names the same model with and without its default tag.
  constexpr std::string_view kDefaultTag = ":latest";
  if (provider == "ollama" && std::string_view(model).ends_with(kDefaultTag))
    return Canonical(provider, model.substr(0, model.size() - kDefaultTag.size()));
  auto it = aliases_.find(provider + "/" + model);
  return it == aliases_.end() ? model : it->second;
}

Result<PriceQuote> PricingTable::Lookup(const std::string& provider, const std::string& model,
                                        Timestamp at) const {
  std::string name = Canonical(provider, model);
  const PriceEntry* best = nullptr;
  for (const std::string& candidate : {name, std::string("*")}) {
    // entries_ is sorted by (provider, model, effective_from): the last entry not after
    // `at` within the model's run is the one in force.
    auto key = std::tie(provider, candidate);
    auto first = std::lower_bound(
        entries_.begin(), entries_.end(), key,
        [](const PriceEntry& e, const auto& k) { return std::tie(e.provider, e.model) < k; });
    for (auto it = first;
         it != entries_.end() && it->provider == provider && it->model == candidate; ++it) {
      if (it->effective_from <= at) best = &*it;
    }
    const PriceEntry* o = BestOverride(provider, candidate, at);
    if (o && (!best || o->effective_from >= best->effective_from)) best = o;
    if (best) break;
  }
  if (!best) return Status::NotFound("no price for " + provider + " model \"" + model + "\"");
  PriceQuote quote{best, best->rates,
                   best->provider + "/" + best->model + "@" + best->effective_from_text +
                       (best->override ? "#override" : "")};
  for (const PriceWindow& w : best->windows) {
    if (InWindow(w, at)) {
      quote.rates = w.rates;
      quote.id += "#" + w.name;
      break;
    }
  }
  return quote;
}

const PriceEntry* PricingTable::BestOverride(const std::string& provider, const std::string& model,
                                             Timestamp at) const {
  if (overrides_->count.load(std::memory_order_acquire) == 0) return nullptr;
  std::shared_lock lock(overrides_->mu);
  const PriceEntry* best = nullptr;
  for (const PriceEntry& e : overrides_->entries) {
    if (e.provider == provider && e.model == model && e.effective_from <= at &&
        (!best || e.effective_from >= best->effective_from)) {
      best = &e;
    }
  }
  return best;
}

void PricingTable::AddOverride(PriceEntry e) const {
  e.override = true;
  e.model = Canonical(e.provider, e.model);
  // Keep the shipped entry's output caps for the model, if there is one.
  for (const PriceEntry& shipped : entries_) {
    if (shipped.provider != e.provider || shipped.model != e.model) continue;
    if (e.default_max_output == PriceEntry().default_max_output)
      e.default_max_output = shipped.default_max_output;
    if (e.max_output == 0) e.max_output = shipped.max_output;
  }
  std::unique_lock lock(overrides_->mu);
  overrides_->entries.push_back(std::move(e));
  overrides_->count.store(overrides_->entries.size(), std::memory_order_release);
}

std::vector<PriceEntry> PricingTable::Overrides() const {
  std::shared_lock lock(overrides_->mu);
  return {overrides_->entries.begin(), overrides_->entries.end()};
}

}  // namespace tollgate
