#include "admin/api_support.h"

#include <openssl/crypto.h>

#include <charconv>

#include "admin/side_server.h"
#include "providers/json_bounded.h"

namespace tollgate {

using nlohmann::json;

bool SameSecret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<Caller> Authenticate(const BudgetApiDependencies& deps, const httplib::Request& req,
                                   httplib::Response& res) {
  std::string key =
      PresentedKey(req.get_header_value("Authorization"), req.get_header_value("x-api-key"));
  if (key.empty()) {
    SendSideError(res, 401, "unauthenticated",
                  "send your tollgate key as Authorization: Bearer tg-...");
    return std::nullopt;
  }
  if (!deps.config.admin_token.empty() && SameSecret(key, deps.config.admin_token)) {
    return Caller{true, std::nullopt, "admin-token"};
  }
  auto identity = deps.authenticator.Authenticate(key);
  if (!identity.ok()) {
    if (identity.status().code() == Status::Code::kUnavailable) {
      SendSideError(res, 503, "unavailable", "the database is unreachable; try again");
    } else {
      SendSideError(res, 401, "unauthenticated", identity.status().message());
    }
    return std::nullopt;
  }
  bool admin = identity->user.role == Role::kAdmin;
  return Caller{admin, identity->user,
                (admin ? "admin:" : "user:") + std::to_string(identity->user.id)};
}

std::optional<Caller> AuthenticateAdmin(const BudgetApiDependencies& deps,
                                        const httplib::Request& req, httplib::Response& res) {
  auto caller = Authenticate(deps, req, res);
  if (caller && !caller->admin) {
    SendSideError(res, 403, "admin_only",
                  "this endpoint is for administrators; your key belongs to a user");
    return std::nullopt;
  }
  return caller;
}

void SendStatusError(httplib::Response& res, const Status& s) {
  switch (s.code()) {
    case Status::Code::kInvalid:
    case Status::Code::kForbidden: {
      // "field: rule" names the field; the page shows the message beside it.
      bool invalid = s.code() == Status::Code::kInvalid;
      res.status = invalid ? 400 : 403;
      json error = {{"code", invalid ? "invalid_request" : "forbidden"},
                    {"message", ValidUtf8(s.message())}};
      auto colon = s.message().find(": ");
      if (colon != std::string::npos &&
          s.message().find_first_not_of("abcdefghijklmnopqrstuvwxyz_.[]0123456789") == colon) {
        error["field"] = s.message().substr(0, colon);
      }
      res.set_content(DumpJson(json{{"error", error}}), "application/json");
      return;
    }
    case Status::Code::kNotFound:
      return SendSideError(res, 404, "not_found", s.message());
    case Status::Code::kConflict:
      return SendSideError(res, 409, "conflict", s.message());
    case Status::Code::kUnavailable:
      return SendSideError(res, 503, "unavailable", s.message());
    default:
      return SendSideError(res, 500, "internal", "internal error; see the server log");
  }
}

void SendJson(httplib::Response& res, const json& j, int status) {
  res.status = status;
  res.set_content(DumpJson(j), "application/json");
}

std::optional<json> ReadJsonObject(const httplib::Request& req, httplib::Response& res) {
  std::string error;  // bounded: a handler may copy or dump the tree, which recurses
  std::optional<json> j = ParseJsonBounded(req.body, &error);
  if (!j || !j->is_object()) {
    SendSideError(res, 400, "invalid_json", "the request body must be a JSON object");
    return std::nullopt;
  }
  return j;
}

Result<std::string> TextParam(const httplib::Request& req, const std::string& name,
                              size_t max_bytes) {
  std::string v = req.get_param_value(name);
  if (!IsCleanText(v, max_bytes)) {
    return Status::Invalid(name + ": must be UTF-8 text without control characters, at most " +
                           std::to_string(max_bytes) + " bytes");
  }
  return v;
}

Result<int64_t> IntParam(const httplib::Request& req, const std::string& name, int64_t fallback,
                         int64_t min, int64_t max) {
  if (!req.has_param(name)) return fallback;
  std::string v = req.get_param_value(name);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < min || n > max) {
    return Status::Invalid(name + ": must be an integer from " + std::to_string(min) + " to " +
                           std::to_string(max));
  }
  return n;
}

Result<std::optional<Timestamp>> TimeParam(const httplib::Request& req, const std::string& name) {
  if (!req.has_param(name)) return std::optional<Timestamp>();
  Timestamp t;
  if (!ParseRfc3339(req.get_param_value(name), &t)) {
    return Status::Invalid(name + ": must be an RFC 3339 time such as 2026-11-01T00:00:00Z");
  }
  return std::optional<Timestamp>(t);
}

void PutMoney(json& j, const std::string& name, Money m) {
  j[name + "_usd"] = m.ToUsdString();
  j[name + "_nanos"] = m.nanos();
}

}  // namespace tollgate
