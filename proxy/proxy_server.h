// The proxy port: routes /<provider>/<native path> to the provider's upstream, with
// the gate before and the settlement after. Streams are relayed chunk by chunk.
#pragma once

#include <atomic>
#include <map>
#include <memory>

#include "budget/authenticator.h"
#include "budget/gate.h"
#include "budget/ledger.h"
#include "config/config.h"
#include "config/pricing.h"
#include "net/boundary.h"
#include "net/event_server.h"
#include "net/metrics.h"
#include "net/stream_relay.h"
#include "providers/provider.h"
#include "proxy/loop_exchange.h"
#include "proxy/upstream_pool.h"

namespace tollgate {

struct ProxyDependencies {
  const Config& config;
  const PricingTable& pricing;
  Authenticator& authenticator;
  Gate& gate;
  Ledger& ledger;
  Metrics& metrics;
  const Clock& clock;
};

struct Exchange;
class RelayedExchange;

class ProxyService {
 public:
  explicit ProxyService(ProxyDependencies deps);
  ProxyService(const ProxyService&) = delete;
  ProxyService& operator=(const ProxyService&) = delete;

  // A server whose handlers use this service; stop it before destroying the service
  // (Stop() waits for the requests in progress, streams and their drains included).
  std::unique_ptr<EventServer> BuildServer();
  // At a stop: a stream whose client is cut is billed from what was relayed rather than
  // drained (a drain may read for minutes), so the stop ends within its grace.
  void StopDraining() { no_more_drains_ = true; }
  // Streams being relayed or drained (tests wait for 0 before reading the ledger).
  int streams_in_flight() const { return streams_in_flight_.load(); }

 private:
  enum class Prepared { kAnswered, kForward, kWouldBlock };
  struct LoopCall;
  // Bodies larger than this are parsed on a worker, not on the event loop.
  static constexpr size_t kLoopBodyBytes = 256 * 1024;
  // Bodies larger than this (about one read) wait for their key to be checked from the
  // head before they are read.
  static constexpr size_t kEarlyCheckBytes = 64 * 1024;

  void Handle(const Provider& provider, const httplib::Request& req, httplib::Response& res,
              ResponseWriter& writer);
  bool HandleOnLoop(const Provider& provider, const httplib::Request& req, const LoopReply& reply);
  bool StartOnLoop(const std::shared_ptr<LoopCall>& call);
  // Runs `step` of exchange `x` inside the boundary; if it throws, Failed() answers in
  // `res` (false).
  template <typename F>
  bool Guarded(Exchange& x, httplib::Response& res, std::string_view where, F&& step);
  template <typename F>
  void Step(const std::shared_ptr<LoopCall>& call, std::string_view where, F&& step);
  void Failed(Exchange& x, httplib::Response& res);
  Prepared Prepare(const Provider& provider, const httplib::Request& req, httplib::Response& res,
                   Exchange& x, nlohmann::json& body, bool on_loop);
  Prepared Identify(const Provider& provider, const std::optional<Route>& route,
                    const httplib::Headers& headers, bool on_loop, httplib::Response& res,
                    Identity* who);
  EventServer::HeadVerdict CheckHead(const ParsedRequest& head, bool on_loop,
                                     httplib::Response& res);
  // A refusal in `res`, counted: kAnswered.
  Prepared Refused(const Provider& provider, const std::optional<Route>& route, ErrorKind kind,
                   const std::string& message, Counter counter, httplib::Response& res);
  ReserveRequest ReserveFor(const Exchange& x) const;
  bool Admitted(Exchange& x, const httplib::Request& req, nlohmann::json& body,
                httplib::Response& res);
  void BuildUpstream(Exchange& x, const httplib::Request& req, nlohmann::json& body,
                     httplib::Response& res) const;
  void AskOnLoop(const std::shared_ptr<LoopCall>& call);
  void AnswerOnLoop(const std::shared_ptr<LoopCall>& call);
  void OnWorker(const std::shared_ptr<LoopCall>& call, bool reserve);
  // The upstream's answer passed on, its usage billed.
  void Answered(Exchange& x, const ResponseHead& head, std::string answer, httplib::Response& res);
  void ForwardBuffered(Exchange& x, httplib::Response& res);
  void ForwardStreaming(Exchange&& x, httplib::Response& res, ResponseWriter& writer);
  static httplib::Headers StreamHeaders(const ResponseHead& head, httplib::Headers own);
  void Relay(Exchange&& x, int status, std::unique_ptr<HttpConnection> upstream,
             ResponseWriter::Detached client);
  // The upstream could not be asked, or did not answer: a 502 or 504 in the provider's shape.
  void UpstreamFailed(Exchange& x, ClientError error, const std::string& detail,
                      httplib::Response& res);
  void Refuse(const Provider& provider, const std::optional<Route>& route, ErrorKind kind,
              const std::string& message, httplib::Response& res);
  // Settles the hold and appends the ledger row: exactly once per forwarded request.
  void Finish(Exchange& x, int status, Usage usage, bool estimated);
  HeaderList UpstreamHeaders(const Provider& provider, const httplib::Request& req) const;
  bool TryStartDrain();
  std::atomic<bool> no_more_drains_{false};
  void EndDrain();
  friend class RelayedExchange;

  ProxyDependencies deps_;
  const Boundary boundary_;
  std::map<std::string, std::unique_ptr<UpstreamPool>> pools_;
  std::atomic<int> streams_in_flight_{0};
  std::atomic<int> drains_{0};
  // Work from the loop path that blocks: a reservation the gate decides itself, a new
  // upstream connection, a settlement.
  std::unique_ptr<WorkerPool> slow_;
  std::unique_ptr<LoopExchanges> exchanges_;
  // After the pools: its streams give their connections back as it shuts down.
  std::unique_ptr<StreamRelay> relay_;
};

}  // namespace tollgate
