#include "proxy/proxy_server.h"

#include "budget/cost.h"
#include "budget/keys.h"
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
  std::string upstream_path;
  std::string body;
  httplib::Headers headers;
  Timestamp started;
  std::chrono::steady_clock::time_point t0;
  Admission admission;
  bool hide_usage_chunk = false;
  bool finished = false;
};

namespace {

using nlohmann::json;

bool IsHopByHop(const std::string& name) {
  static const char* kDrop[] = {"host",
                                "content-length",
                                "connection",
                                "keep-alive",
                                "transfer-encoding",
                                "te",
                                "trailer",
                                "upgrade",
                                "proxy-authorization",
                                "proxy-connection",
                                "authorization",
                                "x-api-key",
                                "x-tollgate-user",
                                "accept-encoding",
                                "remote_addr",
                                "remote_port",
                                "local_addr",
                                "local_port"};
  for (const char* d : kDrop) {
    if (strcasecmp(name.c_str(), d) == 0) return true;
  }
  return false;
}

bool IsResponseHopByHop(const std::string& name) {
  static const char* kDrop[] = {"content-length",    "connection",       "keep-alive",
                                "transfer-encoding", "content-encoding", "content-type"};
  for (const char* d : kDrop) {
    if (strcasecmp(name.c_str(), d) == 0) return true;
  }
  return false;
}

// Output tokens of text already relayed, when the provider's own count never came.
int64_t TokensOfText(int64_t bytes) { return (bytes + 3) / 4; }

std::string ResetText(const Admission& a) {
  return a.next_reset == Timestamp() ? "" : ", resets at " + FormatRfc3339(a.next_reset);
}

}  // namespace

ProxyService::ProxyService(ProxyDependencies deps) : deps_(deps) {
  for (const auto& [name, upstream] : deps_.config.upstreams) {
    pools_[name] = std::make_unique<UpstreamPool>(
        upstream.base_url, UpstreamTimeouts{deps_.config.upstream_connect_timeout_ms,
                                            deps_.config.upstream_read_timeout_ms});
  }
}

std::unique_ptr<EventServer> ProxyService::BuildServer() {
  auto server =
      std::make_unique<EventServer>(ServerTuning{.worker_threads = deps_.config.worker_threads,
                                                 .max_body_bytes = deps_.config.max_body_bytes,
                                                 .read_timeout_seconds = 60,
                                                 .keep_alive_seconds = 60});
  for (const Provider* p : AllProviders()) {
    std::string pattern = "/" + std::string(p->name()) + "/(.*)";
    auto handler = [this, p](const httplib::Request& req, httplib::Response& res,
                             ResponseWriter& writer) { Handle(*p, req, res, writer); };
    server->Streaming("GET", pattern, handler);
    server->Streaming("POST", pattern, handler);
  }
  // Errors the server raises itself (unknown prefix, a body over the limit, a request it
  // cannot read) in the provider's shape when the path names one.
  server->set_error_renderer([this](const httplib::Request& req, int status,
                                    const std::string& message, httplib::Response& res) {
    deps_.metrics.Inc(Counter::kProxyRequests);
    deps_.metrics.Inc(Counter::kProxyRefusedBadRequest);
    std::string path = req.path.empty() ? "" : req.path.substr(1);
    size_t slash = path.find('/');
    const Provider* p = FindProvider(path.substr(0, slash));
    ErrorKind kind = status == 413   ? ErrorKind::kTooLarge
                     : status == 404 ? ErrorKind::kNotFound
                                     : ErrorKind::kInvalidRequest;
    std::string text = status == 404 ? "unknown path " + req.path +
                                           ": use /mistral, /anthropic, /deepseek or /ollama"
                                     : message;
    std::optional<Route> route = p && slash != std::string::npos
                                     ? p->Match(req.method, path.substr(slash + 1))
                                     : std::nullopt;
    std::string body =
        p ? p->ErrorBody(route ? &*route : nullptr, kind, text)
          : json{{"error",
                  {{"message", text},
                   {"type", status == 404 ? "not_found_error" : "invalid_request_error"}}}}
                .dump();
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
  res.set_content(provider.ErrorBody(route ? &*route : nullptr, kind, message), "application/json");
}

httplib::Headers ProxyService::UpstreamHeaders(const Provider& provider,
                                               const httplib::Request& req) const {
  httplib::Headers h;
  for (const auto& [name, value] : req.headers) {
    if (!IsHopByHop(name)) h.emplace(name, value);
  }
  const Upstream& up = deps_.config.upstreams.at(std::string(provider.name()));
  for (const auto& [name, value] : provider.Credentials(up.api_key)) {
    bool is_credential = strcasecmp(name.c_str(), "authorization") == 0 ||
                         strcasecmp(name.c_str(), "x-api-key") == 0;
    if (is_credential || h.find(name) == h.end()) {
      h.erase(name);
      h.emplace(name, value);
    }
  }
  return h;
}

void ProxyService::Handle(const Provider& provider, const httplib::Request& req,
                          httplib::Response& res, ResponseWriter& writer) {
  deps_.metrics.Inc(Counter::kProxyRequests);
  Exchange x;
  x.provider = &provider;
  x.t0 = std::chrono::steady_clock::now();
  x.started = deps_.clock.Now();
  std::string path = req.matches[1];
  auto route = provider.Match(req.method, path);
  auto refuse = [&](ErrorKind kind, const std::string& message, Counter counter) {
    deps_.metrics.Inc(counter);
    Refuse(provider, route, kind, message, res);
  };
  if (!route) {
    return refuse(ErrorKind::kNotFound,
                  "unknown path " + req.path + " for " + std::string(provider.name()),
                  Counter::kProxyRefusedBadRequest);
  }
  x.route = *route;
  // The query goes along as sent (models lists page with ?limit=, ?after_id=).
  size_t query = req.target.find('?');
  x.upstream_path = "/" + path + (query == std::string::npos ? "" : req.target.substr(query));

  // 1. Who is calling.
  std::string key =
      PresentedKey(req.get_header_value("Authorization"), req.get_header_value("x-api-key"));
  if (key.empty()) {
    return refuse(ErrorKind::kAuthentication,
                  "missing tollgate key: send Authorization: Bearer tg-... or x-api-key: tg-...",
                  Counter::kProxyRefusedAuth);
  }
  auto identity = deps_.authenticator.Authenticate(key);
  if (!identity.ok()) {
    if (identity.status().code() == Status::Code::kUnavailable) {
      return refuse(ErrorKind::kUnavailable,
                    "tollgate cannot reach its database; try again shortly",
                    Counter::kPostgresErrors);
    }
    return refuse(ErrorKind::kAuthentication, identity.status().message(),
                  Counter::kProxyRefusedAuth);
  }
  x.identity = *identity;
  x.user_id = identity->user.id;

  // 2. What is asked.
  json body;
  if (route->endpoint != Endpoint::kListing) {
    std::string error;
    auto parsed = ParseJsonBounded(req.body, &error);
    if (!parsed)
      return refuse(ErrorKind::kInvalidRequest, "request body is " + error,
                    Counter::kProxyRefusedBadRequest);
    body = std::move(*parsed);
    auto facts = provider.ReadRequest(*route, body);
    if (!facts.ok())
      return refuse(ErrorKind::kInvalidRequest, facts.status().message(),
                    Counter::kProxyRefusedBadRequest);
    x.facts = std::move(*facts);
  }

  // 3. On whose budget.
  std::string named = req.get_header_value("X-Tollgate-User");
  if (!named.empty() && !identity->key.act_as_user) {
    return refuse(ErrorKind::kPermission,
                  "this key may not name other users (it lacks act_as_user)",
                  Counter::kProxyRefusedAuth);
  }
  if (identity->key.act_as_user) {
    std::string who = named.empty() ? x.facts.end_user : named;
    if (!who.empty()) {
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
  int64_t default_cap = 4096;
  if (route->endpoint == Endpoint::kChat || route->endpoint == Endpoint::kEmbeddings) {
    auto quote = deps_.pricing.Lookup(std::string(provider.name()), x.facts.model, x.started);
    if (quote.ok()) {
      x.rates = quote->rates;
      x.price_id = quote->id;
      default_cap = quote->entry->default_max_output;
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
  } else {
    x.price_id = "free";
  }

  // 5. May it be spent.
  x.request_id = "tgr_" + RandomHex(12);
  CostAccumulator input_cost;
  input_cost.Add(x.facts.input_tokens_estimate, x.rates.input);
  ReserveRequest reserve{
      .user_id = x.user_id,
      .request_id = x.request_id,
      .input_cost = input_cost.Total(),
      .output_rate = x.rates.output,
      .max_output_tokens = x.facts.max_output_tokens,
      .default_output_cap = default_cap,
      .clamp = deps_.config.clamp_max_tokens && route->endpoint == Endpoint::kChat,
      .min_output_tokens = deps_.config.min_output_tokens};
  x.admission = deps_.gate.Reserve(reserve);
  if (!x.admission.allowed()) {
    const Admission& a = x.admission;
    switch (a.refusal) {
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
  deps_.metrics.Inc(Counter::kReservations);

  // 6. Forward.
  res.set_header("x-tollgate-request-id", x.request_id);
  if (x.admission.clamped_max_tokens) {
    res.set_header("x-tollgate-max-tokens-clamped",
                   std::to_string(*x.admission.clamped_max_tokens));
  }
  if (route->endpoint != Endpoint::kListing) {
    x.hide_usage_chunk = provider.Rewrite(*route, x.facts, x.admission.clamped_max_tokens, &body);
    x.body = body.dump();
  }
  x.headers = UpstreamHeaders(provider, req);
  if (x.facts.stream) {
    ForwardStreaming(x, res, writer);
  } else {
    ForwardBuffered(x, req, res);
  }
}

void ProxyService::ForwardBuffered(Exchange& x, const httplib::Request& req,
                                   httplib::Response& res) {
  UpstreamPool& pool = *pools_.at(std::string(x.provider->name()));
  auto client = pool.Acquire();
  httplib::Result result = req.method == "GET" ? client->Get(x.upstream_path.c_str(), x.headers)
                                               : client->Post(x.upstream_path.c_str(), x.headers,
                                                              x.body, "application/json");
  pool.Release(std::move(client));
  if (!result) {
    deps_.metrics.Inc(Counter::kProxyUpstreamErrors);
    bool timeout = result.error() == httplib::Error::Read;
    ErrorKind kind = timeout ? ErrorKind::kTimeout : ErrorKind::kUpstream;
    Refuse(*x.provider, x.route, kind,
           std::string(x.provider->name()) + " upstream " +
               (timeout ? "timed out" : "is unreachable") + " (" +
               httplib::to_string(result.error()) + ")",
           res);
    return Finish(x, res.status, Usage{}, false);
  }
  Usage usage;
  if (result->status >= 200 && result->status < 300) {
    std::string error;
    if (auto answer = ParseJsonBounded(result->body, &error))
      usage = x.provider->UsageFromAnswer(x.route, *answer);
  }
  res.status = result->status;
  for (const auto& [name, value] : result->headers) {
    if (!IsResponseHopByHop(name)) res.set_header(name, value);
  }
  res.set_content(result->body, result->has_header("Content-Type")
                                    ? result->get_header_value("Content-Type")
                                    : std::string("application/json"));
  Finish(x, result->status, usage, false);
}

void ProxyService::ForwardStreaming(Exchange& x, httplib::Response& res, ResponseWriter& writer) {
  std::unique_ptr<StreamObserver> observer = x.provider->ObserveStream(x.route, x.hide_usage_chunk);
  streams_in_flight_.fetch_add(1);
  UpstreamPool& pool = *pools_.at(std::string(x.provider->name()));
  auto client = pool.Acquire();

  // Read from the upstream and write to the client on this one thread: the client gets
  // the upstream's real status line at once and each chunk as it comes, a slow client
  // slows the upstream read (socket buffers bound the memory), and a client that hangs
  // up leaves the read going on to the final usage, within the drain budget.
  int status = 0;
  httplib::Headers upstream_headers;
  std::string error_body;  // a non-2xx answer, collected whole
  bool client_gone = false;
  bool draining = false;
  auto drain_deadline = std::chrono::steady_clock::time_point::max();
  auto is_success = [&] { return status >= 200 && status < 300; };
  httplib::Request up;
  up.method = "POST";
  up.path = x.upstream_path;
  up.headers = x.headers;
  up.body = x.body;
  up.set_header("Content-Type", "application/json");
  up.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    upstream_headers = r.headers;
    if (is_success()) {
      httplib::Headers out = res.headers;  // tollgate's own: request id, clamped max tokens
      for (const auto& [name, value] : r.headers) {
        if (!IsResponseHopByHop(name)) out.emplace(name, value);
      }
      out.emplace("Content-Type", r.has_header("Content-Type") ? r.get_header_value("Content-Type")
                                                               : std::string("text/event-stream"));
      client_gone = !writer.Begin(status, out);
    }
    return true;
  };
  up.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (!is_success()) {
      if (error_body.size() < (1 << 20)) error_body.append(data, n);
      return true;
    }
    std::string out = observer->Feed(std::string_view(data, n));
    if (!client_gone && !out.empty()) client_gone = !writer.Write(out);
    if (!client_gone) return true;
    if (!draining) {
      if (!TryStartDrain()) return false;
      draining = true;
      drain_deadline = std::chrono::steady_clock::now() +
                       std::chrono::seconds(deps_.config.drain_timeout_seconds);
    }
    return std::chrono::steady_clock::now() < drain_deadline;
  };
  httplib::Result result = client->send(up);
  pool.Release(std::move(client));
  if (draining) EndDrain();

  if (status == 0) {
    deps_.metrics.Inc(Counter::kProxyUpstreamErrors);
    bool timeout = result.error() == httplib::Error::Read;
    Refuse(*x.provider, x.route, timeout ? ErrorKind::kTimeout : ErrorKind::kUpstream,
           std::string(x.provider->name()) + " upstream " +
               (timeout ? "timed out" : "is unreachable") + " (" +
               httplib::to_string(result.error()) + ")",
           res);
    Finish(x, res.status, Usage{}, false);
  } else if (!is_success()) {
    res.status = status;
    for (const auto& [name, value] : upstream_headers) {
      if (!IsResponseHopByHop(name)) res.set_header(name, value);
    }
    auto type = upstream_headers.find("Content-Type");
    res.set_content(error_body, type != upstream_headers.end() ? type->second : "application/json");
    Finish(x, status, Usage{}, false);
  } else {
    std::string rest = observer->Flush();
    if (!client_gone && !rest.empty()) client_gone = !writer.Write(rest);
    if (!client_gone) {
      if (observer->finished()) {
        writer.End();
      } else if (x.provider->name() == "mistral") {
        // The upstream broke off. Mistral has no in-stream error form documented, so
        // its stream just ends without [DONE]; the others say so in their own form.
        writer.Abort();
      } else {
        writer.Write(x.provider->StreamErrorFrame(x.route, "upstream stream ended early"));
        writer.End();
      }
    }
    if (observer->finished() && observer->usage().reported) {
      Finish(x, status, observer->usage(), false);
    } else {
      // Cut short (client gone without a drain, or upstream cut): bill what we know —
      // the exact input side when it came, the text relayed for the output.
      Usage estimate = observer->usage();
      if (estimate.input_tokens + estimate.cache_read_tokens + estimate.cache_write_5m_tokens +
              estimate.cache_write_1h_tokens ==
          0)
        estimate.input_tokens = x.facts.input_tokens_estimate;
      estimate.output_tokens =
          std::max(estimate.output_tokens, TokensOfText(observer->relayed_text_bytes()));
      Finish(x, status, estimate, true);
    }
  }
  streams_in_flight_.fetch_sub(1);
}

bool ProxyService::TryStartDrain() {
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
  Money cost = CostOf(usage, x.rates);
  deps_.gate.Settle(x.user_id, x.admission.hold_id, cost);
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
  deps_.metrics.Observe(Histogram::kUpstreamLatency, r.latency_ms, r.provider);
  deps_.ledger.Append(std::move(r));
}

}  // namespace tollgate
