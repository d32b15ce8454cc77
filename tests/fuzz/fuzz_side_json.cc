// The side port's JSON bodies (admin/api_support.h ReadJsonObject, then
// admin/settings_json.h ApplySettingsChange) and its query parameters on arbitrary bytes.
// A change that is taken leaves settings the gate can use; one that is refused leaves
// them untouched; every error renders as the one JSON error shape.
#include "admin/api_support.h"
#include "admin/settings_json.h"
#include "tests/fuzz/fuzz_support.h"

namespace tollgate {
namespace {

bool Same(const BudgetSettings& a, const BudgetSettings& b) {
  return a.limit == b.limit && a.period == b.period &&
         a.custom_period_days == b.custom_period_days && a.timezone == b.timezone &&
         a.enforcement == b.enforcement && a.yellow == b.yellow && a.orange == b.orange &&
         a.red == b.red && a.budget_visible == b.budget_visible &&
         a.can_modify_limit == b.can_modify_limit && a.max_self_limit == b.max_self_limit &&
         a.can_reset == b.can_reset;
}

void CheckSettings(const BudgetSettings& s, Editor editor, const BudgetSettings& before) {
  FUZZ_CHECK(s.limit >= Money(), "a limit is never negative");
  FUZZ_CHECK(s.custom_period_days >= 1 && s.custom_period_days <= 366, "custom period days");
  FUZZ_CHECK(1 <= s.yellow && s.yellow < s.orange && s.orange < s.red && s.red <= 100,
             "thresholds strictly increasing within 1..100");
  FUZZ_CHECK(IsKnownTimezone(s.timezone), "a known zone");
  if (!s.max_self_limit) return;
  FUZZ_CHECK(*s.max_self_limit >= Money(), "a self limit is never negative");
  if (editor == Editor::kSelf) {
    FUZZ_CHECK(s.period == before.period && s.enforcement == before.enforcement &&
                   s.timezone == before.timezone && s.can_reset == before.can_reset &&
                   s.can_modify_limit == before.can_modify_limit &&
                   s.max_self_limit == before.max_self_limit,
               "a user changes only what they may");
    if (s.limit != before.limit) FUZZ_CHECK(s.limit <= *before.max_self_limit, "up to the cap");
  }
}

void CheckErrorShape(const httplib::Response& res) {
  FUZZ_CHECK(res.status >= 400 && res.status < 600, "an error status");
  auto body = nlohmann::json::parse(res.body, nullptr, false);
  FUZZ_CHECK(body.is_object() && body.contains("error") && body["error"].contains("code") &&
                 body["error"].contains("message"),
             "{\"error\":{\"code\",\"message\"}}");
}

}  // namespace
}  // namespace tollgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tollgate;
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string_view bytes = fuzz::Bytes(data + 1, size - 1);

  // Query parameters, as paging and searching read them.
  {
    httplib::Request req;
    req.params.emplace("limit", std::string(bytes));
    req.params.emplace("from", std::string(bytes));
    req.params.emplace("q", std::string(bytes));
    httplib::Response res;
    if (auto n = IntParam(req, "limit", 50, 1, 500); n.ok()) {
      FUZZ_CHECK(*n >= 1 && *n <= 500, "a parameter within its bounds");
    } else {
      SendStatusError(res, n.status());
      CheckErrorShape(res);
    }
    if (auto t = TimeParam(req, "from"); !t.ok()) SendStatusError(res, t.status());
    if (auto q = TextParam(req, "q"); q.ok()) FUZZ_CHECK(IsCleanText(*q, 200), "clean text");
  }

  httplib::Request req;
  req.body = std::string(bytes);
  httplib::Response res;
  auto change = ReadJsonObject(req, res);
  if (!change) {
    CheckErrorShape(res);
    return 0;
  }
  FUZZ_CHECK(change->is_object(), "an object");
  BudgetSettings before;
  before.limit = Money::FromNanos(30'000'000'000);
  before.can_modify_limit = flags & 1;
  before.can_reset = flags & 2;
  if (flags & 4) before.max_self_limit = Money::FromNanos(50'000'000'000);
  const Editor editor = flags & 8 ? Editor::kSelf : Editor::kAdmin;
  BudgetSettings s = before;
  Status st = ApplySettingsChange(*change, editor, &s);
  if (st.ok()) {
    CheckSettings(s, editor, before);
    FUZZ_CHECK(SettingsToJson(s).is_object(), "settings render");
  } else {
    FUZZ_CHECK(Same(s, before), "a refused change leaves the settings untouched");
    SendStatusError(res, st);
    CheckErrorShape(res);
  }
  return 0;
}
