#include "admin/settings_json.h"

#include <set>

#include "admin/api_support.h"

namespace tollgate {
namespace {

using nlohmann::json;

// A budget in USD: a decimal string ("25.50") or a whole JSON number, at least 0,
// with at most 6 decimals, below a billion dollars. Never a float.
Result<Money> ReadUsd(const json& v, const std::string& field) {
  const std::string rule = field +
                           ": must be a decimal string such as \"25.50\", at least 0, "
                           "with at most 6 decimals";
  std::string text;
  if (v.is_string()) {
    text = v.get<std::string>();
  } else if (v.is_number_integer() || v.is_number_unsigned()) {
    text = v.dump();
  } else {
    return Status::Invalid(rule);
  }
  auto dot = text.find('.');
  if (dot != std::string::npos && text.size() - dot - 1 > 6) return Status::Invalid(rule);
  auto m = Money::ParseUsd(text);
  if (!m || *m < Money()) return Status::Invalid(rule);
  if (*m > Money::FromNanos(1'000'000'000LL * 1'000'000'000LL))
    return Status::Invalid(field + ": must be below 1000000000 USD");
  return *m;
}

Status ReadBool(const json& v, const std::string& field, bool* out) {
  if (!v.is_boolean()) return Status::Invalid(field + ": must be true or false");
  *out = v.get<bool>();
  return Status::Ok();
}

Status ReadInt(const json& v, const std::string& field, int min, int max, int* out) {
  if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > max) {
    return Status::Invalid(field + ": must be a whole number from " + std::to_string(min) + " to " +
                           std::to_string(max));
  }
  *out = v.get<int>();
  return Status::Ok();
}

const std::set<std::string> kFields = {
    "limit_usd",  "period",         "custom_period_days", "timezone",  "enforcement",
    "thresholds", "budget_visible", "can_modify_limit",   "can_reset", "max_self_limit_usd"};

Status CheckSelf(const std::string& field, const BudgetSettings& s) {
  if (field == "thresholds") return Status::Ok();
  if (field == "limit_usd") {
    if (s.can_modify_limit) return Status::Ok();
    return Status::Forbidden(
        "limit_usd: your administrator has not allowed you to change "
        "your limit");
  }
  return Status::Forbidden(field + ": only an administrator can change this");
}

}  // namespace

json SettingsToJson(const BudgetSettings& s) {
  json j;
  j["user_id"] = s.user_id;
  PutMoney(j, "limit", s.limit);
  j["period"] = PeriodName(s.period);
  j["custom_period_days"] = s.custom_period_days;
  j["timezone"] = s.timezone;
  j["enforcement"] = EnforcementName(s.enforcement);
  j["thresholds"] = {{"yellow", s.yellow}, {"orange", s.orange}, {"red", s.red}};
  j["budget_visible"] = s.budget_visible;
  j["can_modify_limit"] = s.can_modify_limit;
  j["can_reset"] = s.can_reset;
  if (s.max_self_limit) {
    PutMoney(j, "max_self_limit", *s.max_self_limit);
  } else {
    j["max_self_limit_usd"] = nullptr;
    j["max_self_limit_nanos"] = nullptr;
  }
  j["last_reset"] = FormatRfc3339(s.period_anchor);
  j["version"] = s.version;
  return j;
}

json SelfEditable(const BudgetSettings& s) {
  json locked = json::object();
  if (!s.can_modify_limit)
    locked["limit_usd"] = "your administrator has not allowed you to change your limit";
  for (const char* f : {"period", "custom_period_days", "timezone", "enforcement"})
    locked[f] = "only an administrator can change this";
  if (!s.can_reset) locked["reset"] = "your administrator has not allowed you to reset your budget";
  json editable = json::array({"thresholds"});
  if (s.can_modify_limit) editable.push_back("limit_usd");
  return {{"editable", editable}, {"locked", locked}};
}

Status ApplySettingsChange(const json& change, Editor editor, BudgetSettings* out) {
  if (!change.is_object()) return Status::Invalid("settings: must be a JSON object");
  BudgetSettings s = *out;
  for (const auto& [field, v] : change.items()) {
    if (!kFields.count(field)) {
      return Status::Invalid(field +
                             ": unknown setting (known: limit_usd, period, "
                             "custom_period_days, timezone, enforcement, thresholds, "
                             "budget_visible, can_modify_limit, can_reset, "
                             "max_self_limit_usd)");
    }
    if (editor == Editor::kSelf) {
      if (Status st = CheckSelf(field, *out); !st.ok()) return st;
    }
    Status st;
    if (field == "limit_usd") {
      auto m = ReadUsd(v, field);
      if (!m.ok()) return m.status();
      s.limit = *m;
    } else if (field == "period") {
      auto p = v.is_string() ? ParsePeriod(v.get<std::string>()) : std::nullopt;
      if (!p) return Status::Invalid("period: must be daily, weekly, monthly or custom");
      s.period = *p;
    } else if (field == "custom_period_days") {
      st = ReadInt(v, field, 1, 366, &s.custom_period_days);
    } else if (field == "timezone") {
      if (!v.is_string() || !IsKnownTimezone(v.get<std::string>()))
        return Status::Invalid("timezone: must be an IANA time zone such as Europe/Paris");
      s.timezone = v.get<std::string>();
    } else if (field == "enforcement") {
      auto e = v.is_string() ? ParseEnforcement(v.get<std::string>()) : std::nullopt;
      if (!e) return Status::Invalid("enforcement: must be hard, soft or off");
      s.enforcement = *e;
    } else if (field == "thresholds") {
      if (!v.is_object())
        return Status::Invalid("thresholds: must be {\"yellow\",\"orange\",\"red\"}");
      for (const auto& [name, pct] : v.items()) {
        int* target = name == "yellow"   ? &s.yellow
                      : name == "orange" ? &s.orange
                      : name == "red"    ? &s.red
                                         : nullptr;
        if (!target) return Status::Invalid("thresholds." + name + ": unknown threshold");
        if (Status t = ReadInt(pct, "thresholds." + name, 1, 100, target); !t.ok()) return t;
      }
      if (!(s.yellow < s.orange && s.orange < s.red))
        return Status::Invalid("thresholds: must be strictly increasing: yellow < orange < red");
    } else if (field == "budget_visible") {
      st = ReadBool(v, field, &s.budget_visible);
    } else if (field == "can_modify_limit") {
      st = ReadBool(v, field, &s.can_modify_limit);
    } else if (field == "can_reset") {
      st = ReadBool(v, field, &s.can_reset);
    } else if (field == "max_self_limit_usd") {
      if (v.is_null()) {
        s.max_self_limit.reset();
      } else {
        auto m = ReadUsd(v, field);
        if (!m.ok()) return m.status();
        s.max_self_limit = *m;
      }
    }
    if (!st.ok()) return st;
  }
  if (editor == Editor::kSelf && change.contains("limit_usd") && out->max_self_limit &&
      s.limit > *out->max_self_limit) {
    return Status::Forbidden("limit_usd: above the most you may set yourself, $" +
                             out->max_self_limit->ToUsdString());
  }
  *out = s;
  return Status::Ok();
}

}  // namespace tollgate
