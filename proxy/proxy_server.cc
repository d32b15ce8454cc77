#include "proxy/proxy_server.h"

#include "budget/cost.h"
#include "budget/keys.h"
#include "config/text.h"
#include "net/path.h"
#include "providers/json_bounded.h"

namespace tollgate {

struct Exchange {
  const Provider* provider = nullptr;
  Route route{};
  RequestFacts facts;
  Identity identity;
  int64_t user_id = 0;
  Rates rates;
  std::string price_id;
  std::string request_id;
  UpstreamRequest upstream;    // what goes to the provider
  int64_t default_cap = 4096;  // output tokens reserved when the request names no cap
  Timestamp started;
  std::chrono::steady_clock::time_point t0;
  bool on_loop = false;  // settles without blocking
  Admission admission;
  bool hide_usage_chunk = false;
  bool read_from_bytes = false;  // facts from the body's bytes: its tree not built
  int status = 0;                // the upstream's, once its head is in
  bool admitted = false;         // holds a reservation: Finish must run
  bool asked = false;            // sent (or being sent) upstream: it may have run
  bool finished = false;         // Finish ran, or the relay has the exchange now
};

namespace {

using nlohmann::json;

bool IsHopByHop(std::string_view name) {
  return IsOneOf(name, {"host", "content-length", "connection", "keep-alive", "transfer-encoding",
                        "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection",
                        "authorization", "x-api-key", "x-tollgate-user", "accept-encoding",
                        "remote_addr", "remote_port", "local_addr", "local_port"});
}

bool IsResponseHopByHop(std::string_view name) {
  return IsOneOf(name, {"content-length", "connection", "keep-alive", "transfer-encoding",
                        "content-encoding", "content-type"});
}

// Reads an answer's body to its end, and gives the connection back to its pool (which
// keeps it only if the answer was read whole). kTooLarge, the rest left unread, past
// `limit` bytes.
ClientError ReadWhole(UpstreamPool& pool, std::unique_ptr<HttpConnection> upstream, size_t limit,
                      std::string* body) {
  bool too_large = false;
  ClientError error = upstream->ReadBody([&](std::string_view piece) {
    too_large = piece.size() > limit - body->size();
    if (!too_large) body->append(piece);
    return !too_large;
  });
  pool.Release(std::move(upstream));
  return too_large ? ClientError::kTooLarge : error;
}

// The upstream's answer as it came, without its hop-by-hop headers.
void PassOn(const ResponseHead& head, std::string body, httplib::Response& res) {
  res.status = head.status;
  for (const auto& [name, value] : head.headers) {
    if (!IsResponseHopByHop(name)) res.headers.emplace(name, value);
  }
  const std::string* type = head.headers.Find("Content-Type");
  res.set_content(std::move(body), type ? *type : std::string("application/json"));
}

// Time-ordered (microseconds since the epoch, then 48 random bits): a burst of rows
// lands side by side in the ledger's unique index on request_id, not each on a random
// page of it (measured with 10,000,000 rows: see bench/RESULTS.md).
std::string NewRequestId(Timestamp started) {
  char micros[24];
  snprintf(micros, sizeof micros, "%014llx",
           static_cast<unsigned long long>(started.time_since_epoch().count()));
  return "tgr_" + std::string(micros) + RandomHex(6);
}

// The longest end user name a request may give (X-Tollgate-User, `user`,
// `metadata.user_id`), as an admin may set an external id.
constexpr size_t kMaxEndUserBytes = 200;

// Output tokens of text already relayed, when the provider's own count never came.
int64_t TokensOfText(int64_t bytes) { return (bytes + 3) / 4; }

std::string ResetText(const Admission& a) {
  return a.next_reset == Timestamp() ? "" : ", resets at " + FormatRfc3339(a.next_reset);
}

}  // namespace

ProxyService::ProxyService(ProxyDependencies deps)
    : deps_(deps),
      boundary_(&deps_.metrics),
      slow_(std::make_unique<WorkerPool>(static_cast<size_t>(deps_.config.worker_threads),
                                         boundary_)),
      exchanges_(std::make_unique<LoopExchanges>(deps_.config.upstream_read_timeout_ms,
                                                 deps_.config.max_upstream_answer_bytes)),
      relay_(std::make_unique<StreamRelay>(
          RelayTimeouts{.upstream_silence_ms = deps_.config.upstream_read_timeout_ms,
                        .drain_ms = deps_.config.drain_timeout_seconds * 1000},
          8, boundary_)) {
  for (const auto& [name, upstream] : deps_.config.upstreams) {
    pools_[name] = std::make_unique<UpstreamPool>(
        upstream.base_url, ClientTimeouts{.connect_ms = deps_.config.upstream_connect_timeout_ms,
                                          .read_ms = deps_.config.upstream_read_timeout_ms});
  }
}

std::unique_ptr<EventServer> ProxyService::BuildServer() {
  const Config& c = deps_.config;
  auto server = std::make_unique<EventServer>(
      ServerTuning{.worker_threads = c.worker_threads,
                   .max_body_bytes = c.max_body_bytes,
                   .max_connections = c.max_connections,
                   .head_timeout_seconds = c.head_timeout_seconds,
                   .body_timeout_seconds = c.body_timeout_seconds,
                   .body_min_bytes_per_second = c.body_min_bytes_per_second,
                   .keep_alive_seconds = 60},
      boundary_);
  server->set_metrics(&deps_.metrics);
  server->set_head_check([this](const ParsedRequest& head, bool on_loop, httplib::Response& res) {
    return CheckHead(head, on_loop, res);
  });
  for (const Provider* p : AllProviders()) {
    PathPrefix prefix{"/" + std::string(p->name()) + "/"};
    auto handler = [this, p](const httplib::Request& req, httplib::Response& res,
                             ResponseWriter& writer) { Handle(*p, req, res, writer); };
    server->Streaming("GET", prefix, handler);
    server->OnLoop(
        "POST", prefix,
        [this, p](const httplib::Request& req, const LoopReply& reply) {
          return HandleOnLoop(*p, req, reply);
        },
        handler);
  }
  // Errors the server raises itself (unknown prefix, a body over the limit, a request it
  // cannot read, a handler that threw) in the provider's shape when the path names one.
  server->set_error_renderer([this](const httplib::Request& req, int status,
                                    const std::string& message, httplib::Response& res) {
    if (status < 500) {  // a 500 is counted where its exception stopped
      deps_.metrics.Inc(Counter::kProxyRequests);
      deps_.metrics.Inc(Counter::kProxyRefusedBadRequest);
    }
    std::string path = req.path.empty() ? "" : req.path.substr(1);
    size_t slash = path.find('/');
    const Provider* p = FindProvider(path.substr(0, slash));
    ErrorKind kind = status == 413   ? ErrorKind::kTooLarge
                     : status == 404 ? ErrorKind::kNotFound
                     : status >= 500 ? ErrorKind::kInternal
                                     : ErrorKind::kInvalidRequest;
    std::string text = status == 404 ? "unknown path " + ValidUtf8(req.path) +
                                           ": use /mistral, /anthropic, /deepseek or /ollama"
                                     : message;
    std::optional<Route> route = p && slash != std::string::npos
                                     ? p->Match(req.method, path.substr(slash + 1))
                                     : std::nullopt;
    const char* type = status == 404   ? "not_found_error"
                       : status >= 500 ? "api_error"
                                       : "invalid_request_error";
    std::string body = p ? p->ErrorBody(route ? &*route : nullptr, kind, text)
                         : DumpJson(json{{"error", {{"message", text}, {"type", type}}}});
    res.set_content(body, "application/json");
  });
  return server;
}

void ProxyService::Refuse(const Provider& provider, const std::optional<Route>& route,
                          ErrorKind kind, const std::string& message, httplib::Response& res) {
  res.status = StatusFor(kind);
  // A refusal of tollgate's own is final; an upstream that failed or timed out may be
  // retried by the SDK as it would retry the provider itself.
  if (res.status < 500) res.set_header("x-should-retry", "false");
  // Messages quote what the caller sent (a path, a model, the parser's "last read").
  res.set_content(provider.ErrorBody(route ? &*route : nullptr, kind, ValidUtf8(message)),
                  "application/json");
}

HeaderList ProxyService::UpstreamHeaders(const Provider& provider,
                                         const httplib::Request& req) const {
  HeaderList h;
  h.Reserve(req.headers.size() + 2);
  for (const auto& [name, value] : req.headers) {
    if (!IsHopByHop(name)) h.Add(name, value);
  }
  const Upstream& up = deps_.config.upstreams.at(std::string(provider.name()));
  for (auto& [name, value] : provider.Credentials(up.api_key)) {
    if (IsOneOf(name, {"authorization", "x-api-key"}) || h.Find(name) == nullptr) {
      h.Erase(name);
      h.Add(std::move(name), std::move(value));
    }
  }
  return h;
}

ProxyService::Prepared ProxyService::Refused(const Provider& provider,
                                             const std::optional<Route>& route, ErrorKind kind,
                                             const std::string& message, Counter counter,
                                             httplib::Response& res) {
  deps_.metrics.Inc(counter);
  Refuse(provider, route, kind, message, res);
  return Prepared::kAnswered;
}

// The key in the headers, known and usable: kForward with `who` set; kAnswered (401, or
// 503 when the directory is unreachable, in `res`); kWouldBlock on the loop when the key
// is not cached.
ProxyService::Prepared ProxyService::Identify(const Provider& provider,
                                              const std::optional<Route>& route,
                                              const httplib::Headers& headers, bool on_loop,
                                              httplib::Response& res, Identity* who) {
  auto header = [&](const char* name) {
    return std::string(httplib::detail::get_header_value(headers, name, 0, ""));
  };
  std::string key = PresentedKey(header("Authorization"), header("x-api-key"));
  if (key.empty()) {
    return Refused(provider, route, ErrorKind::kAuthentication,
                   "missing tollgate key: send Authorization: Bearer tg-... or x-api-key: tg-...",
                   Counter::kProxyRefusedAuth, res);
  }
  std::optional<Result<Identity>> identity =
      on_loop ? deps_.authenticator.AuthenticateCached(key) : deps_.authenticator.Authenticate(key);
  if (!identity) return Prepared::kWouldBlock;
  if (!identity->ok()) {
    if (identity->status().code() == Status::Code::kUnavailable) {
      return Refused(provider, route, ErrorKind::kUnavailable,
                     "tollgate cannot reach its database; try again shortly",
                     Counter::kPostgresErrors, res);
    }
    return Refused(provider, route, ErrorKind::kAuthentication, identity->status().message(),
                   Counter::kProxyRefusedAuth, res);
  }
  *who = **identity;
  return Prepared::kForward;
}

// A body larger than one read is not read before its key is known good: a refusal goes
// out at once and the body is never read (EventServer::HeadCheck). Smaller bodies come
// with their head and are checked as a whole request, as before.
EventServer::HeadVerdict ProxyService::CheckHead(const ParsedRequest& head, bool on_loop,
                                                 httplib::Response& res) {
  using Verdict = EventServer::HeadVerdict;
  if (!head.chunked && head.content_length <= kEarlyCheckBytes) return Verdict::kProceed;
  std::string_view path(head.target);
  path = path.substr(1, path.find('?') - 1);  // "<provider>/<native path>"
  size_t slash = path.find('/');
  const Provider* provider = FindProvider(path.substr(0, slash));
  if (provider == nullptr || slash == std::string_view::npos) return Verdict::kProceed;
  std::optional<Route> route = provider->Match(head.method, std::string(path.substr(slash + 1)));
  if (!route) return Verdict::kProceed;  // its 404 comes with the body, as any request's
  Identity who;
  switch (Identify(*provider, route, head.headers, on_loop, res, &who)) {
    case Prepared::kWouldBlock:
      return Verdict::kUndecided;
    case Prepared::kAnswered:
      deps_.metrics.Inc(Counter::kProxyRequests);
      return Verdict::kRefuse;
    case Prepared::kForward:
      break;
  }
  return Verdict::kProceed;
}

// The request read, its caller known, priced, ready for the gate (kForward); or
// answered already (kAnswered: a refusal in `res`); or, on the loop, not without
// blocking (kWouldBlock: nothing answered, nothing counted).
ProxyService::Prepared ProxyService::Prepare(const Provider& provider, const httplib::Request& req,
                                             httplib::Response& res, Exchange& x, json& body,
                                             bool on_loop) {
  x.provider = &provider;
  x.on_loop = on_loop;
  x.t0 = std::chrono::steady_clock::now();
  x.started = deps_.clock.Now();
  std::string path = req.path.substr(provider.name().size() + 2);  // after "/<name>/"
  auto route = provider.Match(req.method, path);
  auto refuse = [&](ErrorKind kind, const std::string& message, Counter counter) {
    return Refused(provider, route, kind, message, counter, res);
  };
  // The upstream would resolve these against the path before them: a route other than
  // the one matched, priced and allowed here.
  if (!IsPlainPath(req.path)) {
    return refuse(ErrorKind::kInvalidRequest,
                  "path " + req.path +
                      ": dot-segments (. and .., also written %2e) and encoded slashes or "
                      "backslashes (%2f, %5c, \\) are not accepted",
                  Counter::kProxyRefusedBadRequest);
  }
  if (!route) {
    return refuse(ErrorKind::kNotFound,
                  "unknown path " + req.path + " for " + std::string(provider.name()),
                  Counter::kProxyRefusedBadRequest);
  }
  x.route = *route;
  // The query goes along as sent (models lists page with ?limit=, ?after_id=).
  size_t query = req.target.find('?');
  x.upstream.target = "/" + path + (query == std::string::npos ? "" : req.target.substr(query));

  // 1. Who is calling.
  if (Prepared p = Identify(provider, route, req.headers, on_loop, res, &x.identity);
      p != Prepared::kForward)
    return p;
  const Identity& who_calls = x.identity;
  x.user_id = who_calls.user.id;

  // 2. What is asked.
  if (route->endpoint != Endpoint::kListing) {
    if (auto facts = provider.ReadRequestBytes(*route, req.body)) {
      x.facts = std::move(*facts);
      x.read_from_bytes = true;
    } else {
      std::string error;
      auto parsed = ParseJsonBounded(req.body, &error);
      if (!parsed)
        return refuse(ErrorKind::kInvalidRequest, "request body is " + error,
                      Counter::kProxyRefusedBadRequest);
      body = std::move(*parsed);
      auto read = provider.ReadRequest(*route, body);
      if (!read.ok())
        return refuse(ErrorKind::kInvalidRequest, read.status().message(),
                      Counter::kProxyRefusedBadRequest);
      x.facts = std::move(*read);
    }
  }

  // 3. On whose budget.
  std::string named = req.get_header_value("X-Tollgate-User");
  if (!named.empty() && !who_calls.key.act_as_user) {
    return refuse(ErrorKind::kPermission,
                  "this key may not name other users (it lacks act_as_user)",
                  Counter::kProxyRefusedAuth);
  }
  if (who_calls.key.act_as_user) {
    std::string who = named.empty() ? x.facts.end_user : named;
    if (!who.empty()) {
      if (!IsCleanText(who, kMaxEndUserBytes)) {
        return refuse(ErrorKind::kInvalidRequest,
                      "end user: must be UTF-8 text without control characters, at most " +
                          std::to_string(kMaxEndUserBytes) + " bytes",
                      Counter::kProxyRefusedBadRequest);
      }
      if (on_loop) return Prepared::kWouldBlock;
      auto end_user = deps_.authenticator.ResolveEndUser(who, deps_.config.auto_create_end_users,
                                                         deps_.config.user_defaults);
      if (!end_user.ok()) {
        return refuse(
            end_user.status().code() == Status::Code::kUnavailable ? ErrorKind::kUnavailable
                                                                   : ErrorKind::kPermission,
            "end user \"" + who + "\": " + end_user.status().message(), Counter::kProxyRefusedAuth);
      }
      if (end_user->disabled) {
        return refuse(ErrorKind::kPermission, "end user \"" + who + "\" is disabled",
                      Counter::kProxyRefusedAuth);
      }
      x.user_id = end_user->id;
    }
  }

  // 4. At what price.
  if (route->endpoint == Endpoint::kChat || route->endpoint == Endpoint::kEmbeddings) {
    auto quote = deps_.pricing.Lookup(std::string(provider.name()), x.facts.model, x.started);
    int64_t max_output = PriceEntry::kAnyModelMaxOutput;
    if (quote.ok()) {
      x.rates = quote->rates;
      x.price_id = quote->id;
      x.default_cap = quote->entry->default_max_output;
      max_output = quote->entry->MaxOutput();
    } else if (deps_.config.fallback_input_per_million &&
               deps_.config.fallback_output_per_million) {
      x.rates.input =
          TokenRate::FromNanosPerMillion(deps_.config.fallback_input_per_million->nanos());
      x.rates.output =
          TokenRate::FromNanosPerMillion(deps_.config.fallback_output_per_million->nanos());
      x.rates.cache_read = x.rates.cache_write_5m = x.rates.cache_write_1h = x.rates.input;
      x.price_id = "fallback";
    } else {
      return refuse(ErrorKind::kInvalidRequest,
                    "model \"" + x.facts.model + "\" has no price configured for " +
                        std::string(provider.name()) +
                        "; ask an admin to add it to the pricing table",
                    Counter::kProxyRefusedBadRequest);
    }
    // No input bends the money: an output cap past the model's is refused before any
    // amount is computed from it, and so is a reservation past any amount.
    if (x.facts.max_output_tokens && *x.facts.max_output_tokens > max_output) {
      return refuse(ErrorKind::kInvalidRequest,
                    std::string(x.facts.max_output_field) + ": " +
                        std::to_string(*x.facts.max_output_tokens) + " is above the " +
                        std::to_string(max_output) + " output tokens \"" + x.facts.model +
                        "\" can give",
                    Counter::kProxyRefusedBadRequest);
    }
    if (!PlanReservation(ReserveFor(x), Money::FromNanos(Money::kMaxNanos))) {
      return refuse(ErrorKind::kInvalidRequest,
                    "the request is too large to price: reduce " +
                        std::string(x.facts.max_output_field) + " or the input",
                    Counter::kProxyRefusedBadRequest);
    }
  } else {
    x.price_id = "free";
  }
  x.request_id = NewRequestId(x.started);
  return Prepared::kForward;
}

// 5. May it be spent: what the gate is asked.
ReserveRequest ProxyService::ReserveFor(const Exchange& x) const {
  CostAccumulator input_cost;
  input_cost.Add(x.facts.input_tokens_estimate, x.rates.input);
  return ReserveRequest{
      .user_id = x.user_id,
      .request_id = x.request_id,
      // Past any amount: a negative cost, which PlanReservation refuses.
      .input_cost = input_cost.Total().value_or(Money::FromNanos(-1)),
      .output_rate = x.rates.output,
      .max_output_tokens = x.facts.max_output_tokens,
      .default_output_cap = x.default_cap,
      .clamp = deps_.config.clamp_max_tokens && x.route.endpoint == Endpoint::kChat,
      .min_output_tokens = deps_.config.min_output_tokens};
}

// The gate's answer in `x.admission`: admitted, the upstream request is built (true);
// refused, `res` holds the refusal in the provider's words (false).
bool ProxyService::Admitted(Exchange& x, const httplib::Request& req, json& body,
                            httplib::Response& res) {
  const Admission& a = x.admission;
  auto refuse = [&](ErrorKind kind, const std::string& message, Counter counter) {
    deps_.metrics.Inc(counter);
    Refuse(*x.provider, x.route, kind, message, res);
    return false;
  };
  switch (a.refusal) {
    case Refusal::kNone:
      x.admitted = true;
      deps_.metrics.Inc(Counter::kReservations);
      BuildUpstream(x, req, body, res);
      return true;
    case Refusal::kGlobalCap:
      return refuse(ErrorKind::kBudget, "the global spending cap is reached (" + a.message + ")",
                    Counter::kProxyRefusedGlobalCap);
    case Refusal::kUnavailable:
      return refuse(ErrorKind::kUnavailable, "the budget gate is unavailable: " + a.message,
                    Counter::kProxyRefusedUnavailable);
    default:
      return refuse(ErrorKind::kBudget,
                    "budget exhausted: limit $" + a.limit.ToUsdString() + ", spent $" +
                        a.spend.ToUsdString() + ResetText(a) +
                        (a.message.empty() ? "" : " (" + a.message + ")"),
                    Counter::kProxyRefusedBudget);
  }
}

// 6. What goes upstream: the caller's headers with the provider's credentials, the
// body as the provider rewrote it (a clamped cap, usage asked for in a stream).
void ProxyService::BuildUpstream(Exchange& x, const httplib::Request& req, json& body,
                                 httplib::Response& res) const {
  res.set_header("x-tollgate-request-id", x.request_id);
  if (x.admission.clamped_max_tokens) {
    res.set_header("x-tollgate-max-tokens-clamped",
                   std::to_string(*x.admission.clamped_max_tokens));
  }
  x.upstream.method = req.method == "GET" ? "GET" : "POST";
  x.upstream.headers = UpstreamHeaders(*x.provider, req);
  if (x.route.endpoint != Endpoint::kListing) {
    // Read from its bytes, a body goes as it came unless its cap is clamped (the
    // provider's word: ReadRequestBytes); clamped, it is parsed now, as the scan found it
    // valid. Otherwise: the caller's bytes, unless changed, or unless a key repeats: then
    // the upstream gets the one member the gate read (the model it priced), not a choice
    // of its own.
    // The cap sent upstream: the clamped one, or the one reserved for when the upstream
    // would otherwise generate without end.
    std::optional<int64_t> cap = x.admission.clamped_max_tokens;
    if (!cap && !x.facts.max_output_tokens && x.provider->UnboundedWithoutCap(x.route))
      cap = x.default_cap;
    if (x.read_from_bytes && !cap) {
      x.upstream.body = req.body;
    } else {
      std::string unused;
      if (x.read_from_bytes) body = ParseJsonBounded(req.body, &unused).value_or(json::object());
      Rewritten rewritten = x.provider->Rewrite(x.route, x.facts, cap, &body);
      x.hide_usage_chunk = rewritten.hide_usage_chunk;
      x.upstream.body =
          rewritten.changed || !NoMemberDropped(req.body, body) ? body.dump() : req.body;
    }
  }
  if (x.upstream.method == "POST" && x.upstream.headers.Find("Content-Type") == nullptr)
    x.upstream.headers.Add("Content-Type", "application/json");
}

// Tollgate's own failure (an exception: a bug, as errors are values): a 500 in the
// provider's shape, and the hold settled, so that the failure neither keeps the budget
// held until the hold lapses nor makes a request the upstream may have run free.
void ProxyService::Failed(Exchange& x, httplib::Response& res) {
  res = httplib::Response();
  res.status = 500;
  Refuse(*x.provider, x.route, ErrorKind::kInternal,
         "tollgate failed on this request (an internal error, logged); it may be retried", res);
  if (!x.admitted || x.finished) return;
  Usage estimate;  // as for a stream cut short: the input side, marked estimated
  if (x.asked) estimate.input_tokens = x.facts.input_tokens_estimate;
  Finish(x, 500, estimate, x.asked);
}

template <typename F>
bool ProxyService::Guarded(Exchange& x, httplib::Response& res, std::string_view where, F&& step) {
  if (boundary_.Run(where, std::forward<F>(step))) return true;
  res = httplib::Response();
  res.status = 500;  // should Failed itself fail
  boundary_.Run("a failed request's end", [&] { Failed(x, res); });
  return false;
}

void ProxyService::Handle(const Provider& provider, const httplib::Request& req,
                          httplib::Response& res, ResponseWriter& writer) {
  deps_.metrics.Inc(Counter::kProxyRequests);
  Exchange x;
  x.provider = &provider;
  json body;
  Guarded(x, res, "a proxy request", [&] {
    if (Prepare(provider, req, res, x, body, false) != Prepared::kForward) return;
    x.admission = deps_.gate.Reserve(ReserveFor(x));
    if (!Admitted(x, req, body, res)) return;
    if (x.facts.stream) {
      ForwardStreaming(std::move(x), res, writer);
    } else {
      ForwardBuffered(x, res);
    }
  });
}

// The hot path on the event loop: a buffered request whose caller and budget are
// cached, reserved through the gate's pipelined Redis connection and asked of the
// upstream on a kept-alive connection, without a thread waiting on either. Whatever
// would block goes on on a worker from where it is. A stream too: once its head is in,
// the relay takes the upstream connection and the client's, and sends the client the
// head with the first of the body (no worker at all); on a new upstream connection that
// may wait (a name to resolve, a TLS handshake) a worker begins it.
struct ProxyService::LoopCall {
  Exchange x;
  json body;
  const httplib::Request* req;  // the server keeps it until the reply is sent (or the
                                // worker it was handed to has it; see OnWorker)
  LoopReply reply;
  httplib::Response res;
  bool answered = false;  // the reply is sent, on its way, or handed over
};

// Each step of a loop call runs here: one that throws answers the caller (once) with the
// 500 Guarded leaves in `res`. No exception reaches the gate or the server.
template <typename F>
void ProxyService::Step(const std::shared_ptr<LoopCall>& call, std::string_view where, F&& step) {
  if (!Guarded(call->x, call->res, where, std::forward<F>(step)) && !call->answered)
    AnswerOnLoop(call);
}

bool ProxyService::HandleOnLoop(const Provider& provider, const httplib::Request& req,
                                const LoopReply& reply) {
  // A large body is parsed off the loop: a worker's.
  if (req.body.size() > kLoopBodyBytes) return false;
  auto call = std::make_shared<LoopCall>(LoopCall{{}, {}, &req, reply, {}});
  call->x.provider = &provider;
  bool taken = true;
  Step(call, "a proxy request on the loop", [&] { taken = StartOnLoop(call); });
  return taken;
}

bool ProxyService::StartOnLoop(const std::shared_ptr<LoopCall>& call) {
  Prepared prepared = Prepare(*call->x.provider, *call->req, call->res, call->x, call->body, true);
  if (prepared == Prepared::kWouldBlock) return false;
  if (prepared == Prepared::kAnswered) {
    deps_.metrics.Inc(Counter::kProxyRequests);
    AnswerOnLoop(call);
    return true;
  }
  // `done` runs only when the gate took the request (perhaps before it returns): it
  // counts the request, which a declined one is on the worker.
  return deps_.gate.ReserveNoWait(
      ReserveFor(call->x), [this, call](std::optional<Admission> admission) {
        Step(call, "a reservation's answer", [&] {
          deps_.metrics.Inc(Counter::kProxyRequests);
          if (call->answered) {  // failed meanwhile (a 500 is out): only a hold to give back
            if (!admission || !admission->allowed()) return;
            call->x.admission = std::move(*admission);
            call->x.admitted = true;
            return Finish(call->x, 500, Usage{}, false);
          }
          if (!admission) return OnWorker(call, true);
          call->x.admission = std::move(*admission);
          if (!Admitted(call->x, *call->req, call->body, call->res)) return AnswerOnLoop(call);
          AskOnLoop(call);
        });
      });
}

void ProxyService::AskOnLoop(const std::shared_ptr<LoopCall>& call) {
  UpstreamPool& pool = *pools_.at(std::string(call->x.provider->name()));
  auto done = [this, call](LoopAnswer answer) {
    Step(call, "an upstream's answer on the loop", [&] {
      if (call->answered) return;  // failed meanwhile: billed and answered by Failed
      if (answer.retry) return OnWorker(call, false);
      Exchange& x = call->x;
      if (answer.connection) {  // a stream's head: the relay has it from here
        deps_.metrics.Inc(Counter::kProxyAnsweredOnLoop);
        httplib::Headers out = StreamHeaders(answer.head, call->res.headers);
        call->answered = true;
        return Relay(std::move(x), answer.head.status, std::move(answer.connection),
                     call->reply.DetachWithHead(answer.head.status, out));
      }
      if (answer.error != ClientError::kNone)
        UpstreamFailed(x, answer.error, answer.detail, call->res);
      else
        Answered(x, answer.head, std::move(answer.body), call->res);
      AnswerOnLoop(call);
    });
  };
  call->x.asked = true;
  bool started = exchanges_->Start(call->reply.loop(), pool, call->x.upstream, std::move(done),
                                   call->x.facts.stream);
  if (!started) OnWorker(call, false);  // a new connection that may wait
}

// Posted, so the answer goes out after the settlement it bills has been written to
// Redis (the gate's commands of this batch are written by a task posted before); a
// request admitted against a lease is billed to the lease's hold until its cost, summed
// with others, reaches the counter (RedisGate::set_leased_cost_delay).
void ProxyService::AnswerOnLoop(const std::shared_ptr<LoopCall>& call) {
  if (call->answered) return;  // exactly once, whatever failed on the way
  call->answered = true;
  deps_.metrics.Inc(Counter::kProxyAnsweredOnLoop);
  call->reply.loop().Post([call] { call->reply.Send(call->res); });
}

// Goes on on a worker: from the reservation (`reserve`: the gate's own decision,
// with a hold id of its own in case the loop's attempt took one), or from the
// upstream exchange. A buffered answer goes back through the loop; a stream is begun
// by one of the server's workers, which has the client's connection to hand over.
void ProxyService::OnWorker(const std::shared_ptr<LoopCall>& call, bool reserve) {
  auto admitted = [this, call, reserve](const httplib::Request& req) {
    Exchange& x = call->x;
    x.on_loop = false;
    if (!reserve) return true;
    ReserveRequest r = ReserveFor(x);
    r.request_id += "-w";
    r.declined_on_loop = true;
    x.admission = deps_.gate.Reserve(r);
    return Admitted(x, req, call->body, call->res);
  };
  call->answered = true;  // by the worker from here
  if (call->x.facts.stream) {
    return call->reply.ToWorker([this, call, admitted](const httplib::Request& req,
                                                       httplib::Response& res,
                                                       ResponseWriter& writer) {
      Guarded(call->x, res, "a stream begun on a worker", [&] {
        bool forward = admitted(req);
        res = std::move(call->res);  // a refusal, or tollgate's own headers
        if (forward) ForwardStreaming(std::move(call->x), res, writer);
      });
    });
  }
  slow_->Submit([this, call, admitted] {
    Guarded(call->x, call->res, "a proxy request on a worker", [&] {
      if (admitted(*call->req)) ForwardBuffered(call->x, call->res);
    });
    call->reply.loop().Post([call] { call->reply.Send(call->res); });
  });
}

void ProxyService::UpstreamFailed(Exchange& x, ClientError error, const std::string& detail,
                                  httplib::Response& res) {
  deps_.metrics.Inc(Counter::kProxyUpstreamErrors);
  std::string what = "failed";
  switch (error) {
    case ClientError::kTimeout:
      what = "timed out";
      break;
    case ClientError::kConnect:
    case ClientError::kTls:
      what = "is unreachable";
      break;
    case ClientError::kClosed:
      what = "closed the connection";
      break;
    case ClientError::kProtocol:
      what = "sent a malformed answer";
      break;
    case ClientError::kTooLarge:
      what = "sent an answer larger than server.max_upstream_answer_bytes (" +
             std::to_string(deps_.config.max_upstream_answer_bytes) + " bytes)";
      break;
    case ClientError::kNone:
      break;
  }
  Refuse(*x.provider, x.route,
         error == ClientError::kTimeout ? ErrorKind::kTimeout : ErrorKind::kUpstream,
         std::string(x.provider->name()) + " upstream " + what + " (" + detail + ")", res);
  Finish(x, res.status, Usage{}, false);
}

void ProxyService::ForwardBuffered(Exchange& x, httplib::Response& res) {
  UpstreamPool& pool = *pools_.at(std::string(x.provider->name()));
  ResponseHead head;
  ClientError error = ClientError::kNone;
  std::string detail;
  x.asked = true;
  auto upstream = pool.Begin(x.upstream, &head, &error, &detail);
  std::string answer;
  if (upstream) {
    error = ReadWhole(pool, std::move(upstream), deps_.config.max_upstream_answer_bytes, &answer);
    detail = "while reading the answer";
  }
  if (error != ClientError::kNone) return UpstreamFailed(x, error, detail, res);
  Answered(x, head, std::move(answer), res);
}

void ProxyService::Answered(Exchange& x, const ResponseHead& head, std::string answer,
                            httplib::Response& res) {
  Usage usage;
  if (head.status >= 200 && head.status < 300) usage = x.provider->UsageFromAnswer(x.route, answer);
  PassOn(head, std::move(answer), res);
  Finish(x, head.status, usage, false);
}

// A stream on the relay: the provider's observer sees every byte, and the settlement
// comes once it is over, exactly as for a buffered answer.
class RelayedExchange : public RelayedStream {
 public:
  RelayedExchange(ProxyService* service, Exchange&& x)
      : service_(service),
        x_(std::move(x)),
        observer_(x_.provider->ObserveStream(x_.route, x_.hide_usage_chunk)) {}
  // Here, not in Done: counted off even if Done throws.
  ~RelayedExchange() override {
    if (draining_) service_->EndDrain();
    service_->streams_in_flight_.fetch_sub(1);
  }

  std::string Transform(std::string_view upstream) override { return observer_->Feed(upstream); }

  std::string Finish(bool* complete) override {
    std::string rest = Flush();
    *complete = true;
    if (observer_->finished()) return rest;
    // The upstream broke off. Mistral has no in-stream error form documented, so its
    // stream just ends without [DONE]; the others say so in their own form.
    if (x_.provider->name() == "mistral") {
      *complete = false;
      return rest;
    }
    return rest + x_.provider->StreamErrorFrame(x_.route, "upstream stream ended early");
  }

  bool MayDrain() override { return draining_ = service_->TryStartDrain(); }

  void Done(bool /*client_complete*/) override {
    Flush();
    if (observer_->finished() && observer_->usage().reported) {
      service_->Finish(x_, x_.status, observer_->usage(), false);
    } else {
      // Cut short (client gone without a drain, or upstream cut): bill what we know —
      // the exact input side when it came, the text relayed for the output.
      Usage estimate = observer_->usage();
      if (estimate.input_tokens + estimate.cache_read_tokens + estimate.cache_write_5m_tokens +
              estimate.cache_write_1h_tokens ==
          0)
        estimate.input_tokens = x_.facts.input_tokens_estimate;
      estimate.output_tokens =
          std::max(estimate.output_tokens, TokensOfText(observer_->relayed_text_bytes()));
      service_->Finish(x_, x_.status, estimate, true);
    }
  }

 private:
  std::string Flush() {
    if (flushed_) return "";
    flushed_ = true;
    return observer_->Flush();
  }

  ProxyService* const service_;
  Exchange x_;
  std::unique_ptr<StreamObserver> observer_;
  bool draining_ = false;
  bool flushed_ = false;
};

void ProxyService::ForwardStreaming(Exchange&& x, httplib::Response& res, ResponseWriter& writer) {
  UpstreamPool& pool = *pools_.at(std::string(x.provider->name()));
  ResponseHead head;
  ClientError error = ClientError::kNone;
  std::string detail;
  x.asked = true;
  auto upstream = pool.Begin(x.upstream, &head, &error, &detail);
  if (!upstream) return UpstreamFailed(x, error, detail, res);

  if (head.status < 200 || head.status >= 300) {
    // An error answer: collected whole (bounded, as any buffered answer) and passed on as
    // it came.
    std::string answer;
    error = ReadWhole(pool, std::move(upstream), deps_.config.max_upstream_answer_bytes, &answer);
    if (error == ClientError::kTooLarge)
      return UpstreamFailed(x, error, "while reading its error answer", res);
    PassOn(head, std::move(answer), res);
    return Finish(x, head.status, Usage{}, false);
  }

  Relay(std::move(x), head.status, std::move(upstream),
        writer.DetachWithHead(head.status, StreamHeaders(head, res.headers)));
}

// The client gets the upstream's real status line; tollgate's own headers (request id,
// clamped max tokens) are in `own`.
httplib::Headers ProxyService::StreamHeaders(const ResponseHead& head, httplib::Headers own) {
  for (const auto& [name, value] : head.headers) {
    if (!IsResponseHopByHop(name)) own.emplace(name, value);
  }
  const std::string* type = head.headers.Find("Content-Type");
  own.emplace("Content-Type", type ? *type : std::string("text/event-stream"));
  return own;
}

// The relay sends the client the head and the body as it comes, and settles the stream
// from a worker when it is over (a client already gone is found by its first write).
void ProxyService::Relay(Exchange&& x, int status, std::unique_ptr<HttpConnection> upstream,
                         ResponseWriter::Detached client) {
  UpstreamPool& pool = *pools_.at(std::string(x.provider->name()));
  x.status = status;
  x.on_loop = false;
  x.upstream = UpstreamRequest{};  // sent: a long stream need not hold a long prompt
  streams_in_flight_.fetch_add(1);
  auto stream = std::make_unique<RelayedExchange>(this, std::move(x));
  x.finished = true;  // the relay's to finish now
  relay_->Add(
      std::move(upstream),
      [&pool](std::unique_ptr<HttpConnection> used) { pool.Release(std::move(used)); },
      std::move(client), std::move(stream));
}

bool ProxyService::TryStartDrain() {
  if (no_more_drains_) return false;
  int current = drains_.load();
  while (current < deps_.config.drain_max_concurrent) {
    if (drains_.compare_exchange_weak(current, current + 1)) return true;
  }
  return false;
}

void ProxyService::EndDrain() { drains_.fetch_sub(1); }

void ProxyService::Finish(Exchange& x, int status, Usage usage, bool estimated) {
  if (x.finished) return;
  x.finished = true;
  // A usage past any amount (no provider reports one) is billed at what was reserved.
  std::optional<Money> priced = CostOf(usage, x.rates);
  if (!priced) estimated = true;
  Money cost = priced.value_or(x.admission.held);
  if (!x.on_loop) {
    deps_.gate.Settle(x.user_id, x.admission.hold_id, cost);
  } else if (!deps_.gate.SettleNoWait(x.user_id, x.admission.hold_id, cost)) {
    slow_->Submit([this, user = x.user_id, hold = x.admission.hold_id, cost] {
      deps_.gate.Settle(user, hold, cost);
    });
  }
  deps_.metrics.Inc(Counter::kSettlements);
  UsageRecord r;
  r.request_id = x.request_id;
  r.user_id = x.user_id;
  r.key_id = x.identity.key.id;
  r.provider = std::string(x.provider->name());
  r.model = x.facts.model;
  r.price_id = x.price_id;
  r.started_at = x.started;
  r.usage = usage;
  r.cost = cost;
  r.status = status;
  r.streamed = x.facts.stream;
  r.estimated = estimated;
  r.latency_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - x.t0)
          .count();
  r.window = x.admission.window;
  r.global_window = x.admission.global_window;
  r.hold_id = x.admission.hold_id;
  deps_.metrics.Observe(Histogram::kUpstreamLatency, r.latency_ms, r.provider);
  deps_.ledger.Append(std::move(r));
}

}  // namespace tollgate
