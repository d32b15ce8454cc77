// tollgate-bench-streams: N concurrent slow streams, each one timed to its first byte.
//
//   tollgate-bench-streams URLS KEYS N [TOKENS] [DELAY_MS] [RAMP_MS]
//
// URLS and KEYS may list several, comma-separated: stream i goes to URLS[i % count] with
// KEYS[i % count] ("none": no Authorization), so the targets share one client and one
// machine's load. Stream i starts RAMP_MS * i / N after the first (thousands of
// simultaneous SYNs overflow a listen queue and clients back off for seconds). Each asks
// for a DeepSeek-format stream of TOKENS tokens, DELAY_MS apart (tollgate-sim paces
// them by the x-sim-* headers, which tollgate forwards).
//
// Prints one JSON line per target: streams, completed, errors, first_error, ttfb_p50_ms,
// ttfb_p99_ms, wall_s (and "target": its index when there are several). Time to first
// byte runs from the connect to the first byte of the answer's body; a stream is
// completed when its answer is a 200 whose chunked body ends and holds "[DONE]".
//
// Why not Node (bench/streams.mjs until 2026-11-29): one event loop in a garbage-collected
// runtime stalled for 10-30 ms at moments of its own, which set both sides' p99. This
// client does nothing per byte but decode chunks, on one epoll thread.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "net/chunked_decoder.h"
#include "net/event_server.h"

namespace {

using SteadyClock = std::chrono::steady_clock;

struct Target {
  sockaddr_storage address{};
  socklen_t address_len = 0;
  std::string request;  // the whole request, written once connected
};

struct Stream {
  size_t target = 0;
  int fd = -1;
  SteadyClock::time_point started;
  size_t written = 0;
  std::string in;  // read and not yet decoded
  bool head_read = false;
  int status = 0;
  bool chunked = false;
  tollgate::ChunkedDecoder decoder;
  std::string body;
  std::optional<double> ttfb_ms;  // to the first byte of the answer's body
  bool ended = false;
  std::string error;  // empty: completed
};

std::vector<std::string> SplitCommas(const std::string& text) {
  std::vector<std::string> parts;
  size_t from = 0;
  for (;;) {
    size_t comma = text.find(',', from);
    parts.push_back(text.substr(from, comma - from));
    if (comma == std::string::npos) return parts;
    from = comma + 1;
  }
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "tollgate-bench-streams: %s\n", message.c_str());
  std::exit(2);
}

// http://host[:port]/path, read as the config reads an upstream's base URL (no TLS:
// the benchmark's targets are local).
Target MakeTarget(const std::string& url, const std::string& key, const std::string& body,
                  const std::string& tokens, const std::string& delay_ms) {
  size_t slash = url.find('/', url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
  std::optional<tollgate::UpstreamAddress> base = tollgate::ParseBaseUrl(url.substr(0, slash));
  if (!base || base->tls) Die("not an http://host[:port]/path URL: " + url);
  std::string path = slash == std::string::npos ? "/" : url.substr(slash);
  const std::string& authority = base->authority;

  Target t;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(base->host.c_str(), std::to_string(base->port).c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    Die("cannot resolve " + authority);
  }
  std::memcpy(&t.address, found->ai_addr, found->ai_addrlen);
  t.address_len = found->ai_addrlen;
  freeaddrinfo(found);

  t.request = "POST " + path + " HTTP/1.1\r\nHost: " + authority + "\r\n";
  if (key != "none") t.request += "Authorization: Bearer " + key + "\r\n";
  t.request += "Content-Type: application/json\r\nx-sim-output-tokens: " + tokens +
               "\r\nx-sim-token-delay-ms: " + delay_ms +
               "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return t;
}

double MsSince(SteadyClock::time_point from) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - from).count();
}

// The first answer's head in s.in: its status and framing. False while incomplete.
bool ReadHead(Stream& s) {
  size_t end = s.in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::string head = s.in.substr(0, end);
  s.in.erase(0, end + 4);
  s.head_read = true;
  if (head.size() > 12 && head.compare(0, 5, "HTTP/") == 0) s.status = std::atoi(head.c_str() + 9);
  std::transform(head.begin(), head.end(), head.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  s.chunked = head.find("\r\ntransfer-encoding: chunked") != std::string::npos;
  return true;
}

void End(Stream& s, std::string error) {
  s.ended = true;
  s.error = std::move(error);
  close(s.fd);
  s.fd = -1;
}

// Decodes what arrived; ends the stream once its answer is whole.
void Consume(Stream& s) {
  if (!s.head_read && !ReadHead(s)) return;
  if (!s.chunked) {  // an error answer with a Content-Length: its status says enough
    End(s, "status " + std::to_string(s.status));
    return;
  }
  tollgate::ChunkedDecoder::State state = s.decoder.Decode(s.in, s.body);
  if (!s.ttfb_ms && !s.body.empty()) s.ttfb_ms = MsSince(s.started);
  if (state == tollgate::ChunkedDecoder::State::kNeedMore) return;
  if (state != tollgate::ChunkedDecoder::State::kDone) {
    End(s, "malformed chunked body");
  } else if (s.status != 200 || s.body.find("[DONE]") == std::string::npos) {
    End(s, "status " + std::to_string(s.status));
  } else {
    End(s, "");
  }
}

void OnEvents(int epoll_fd, Stream& s, const Target& t, uint32_t events) {
  if (s.written < t.request.size() && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int error = 0;
    socklen_t len = sizeof(error);
    getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) return End(s, std::strerror(error));
    ssize_t n =
        send(s.fd, t.request.data() + s.written, t.request.size() - s.written, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) return End(s, std::strerror(errno));
    if (n > 0) s.written += static_cast<size_t>(n);
    if (s.written == t.request.size()) {
      epoll_event e{.events = EPOLLIN, .data = {.ptr = &s}};
      epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s.fd, &e);
    }
    return;
  }
  char buffer[16384];
  for (;;) {
    ssize_t n = recv(s.fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      s.in.append(buffer, static_cast<size_t>(n));
      if (n < static_cast<ssize_t>(sizeof(buffer))) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    Consume(s);
    if (!s.ended) End(s, n == 0 ? "closed before the answer ended" : std::strerror(errno));
    return;
  }
  Consume(s);
}

// The percentile as the Node client took it: the sorted value at floor(p% of the count).
double Percentile(const std::vector<double>& sorted, double p) {
  size_t i = static_cast<size_t>(p / 100 * static_cast<double>(sorted.size()));
  return sorted[std::min(sorted.size() - 1, i)];
}

double Rounded(double ms) { return std::round(ms * 100) / 100; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) Die("usage: tollgate-bench-streams URLS KEYS N [TOKENS] [DELAY_MS] [RAMP_MS]");
  std::vector<std::string> urls = SplitCommas(argv[1]), keys = SplitCommas(argv[2]);
  const size_t n = std::strtoul(argv[3], nullptr, 10);
  const std::string tokens = argc > 4 ? argv[4] : "20", delay_ms = argc > 5 ? argv[5] : "100";
  const double ramp_ms = argc > 6 ? std::atof(argv[6]) : 0;
  if (keys.size() != urls.size()) Die("give one key per URL");

  tollgate::RaiseOpenFileLimit();  // a descriptor per stream
  const std::string body =
      nlohmann::json{
          {"model", "deepseek-flash"},
          {"stream", true},
          {"max_tokens", std::atoi(tokens.c_str())},
          {"messages", nlohmann::json::array({{{"role", "user"}, {"content", "hello world!"}}})}}
          .dump();
  std::vector<Target> targets;
  for (size_t i = 0; i < urls.size(); ++i) {
    targets.push_back(MakeTarget(urls[i], keys[i], body, tokens, delay_ms));
  }

  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Stream> streams(n);
  const SteadyClock::time_point first = SteadyClock::now();
  size_t started = 0, ended = 0;
  std::vector<epoll_event> ready(1024);
  while (ended < n) {
    // Start every stream whose time has come; then wait for events until the next is due.
    int wait_ms = -1;
    while (started < n) {
      auto due =
          first + std::chrono::microseconds(static_cast<int64_t>(
                      ramp_ms * 1000 * static_cast<double>(started) / static_cast<double>(n)));
      auto now = SteadyClock::now();
      if (due > now) {
        wait_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(due - now).count());
        break;
      }
      Stream& s = streams[started];
      s.target = started % targets.size();
      ++started;
      const Target& t = targets[s.target];
      s.started = SteadyClock::now();
      s.fd = socket(t.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      int yes = 1;
      setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
      if (connect(s.fd, reinterpret_cast<const sockaddr*>(&t.address), t.address_len) != 0 &&
          errno != EINPROGRESS) {
        End(s, std::strerror(errno));
        ++ended;
        continue;
      }
      epoll_event e{.events = EPOLLOUT | EPOLLIN, .data = {.ptr = &s}};
      epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s.fd, &e);
    }
    int count = epoll_wait(epoll_fd, ready.data(), static_cast<int>(ready.size()), wait_ms);
    for (int i = 0; i < count; ++i) {
      Stream& s = *static_cast<Stream*>(ready[i].data.ptr);
      if (s.ended) continue;
      OnEvents(epoll_fd, s, targets[s.target], ready[i].events);
      if (s.ended) ++ended;
    }
  }
  const double wall_s = MsSince(first) / 1000;

  for (size_t t = 0; t < targets.size(); ++t) {
    std::vector<double> ttfb;
    size_t mine = 0, errors = 0;
    std::string first_error;
    for (const Stream& s : streams) {
      if (s.target != t) continue;
      ++mine;
      if (s.error.empty() && s.ttfb_ms) {
        ttfb.push_back(*s.ttfb_ms);
      } else {
        if (errors++ == 0) first_error = s.error;
      }
    }
    std::sort(ttfb.begin(), ttfb.end());
    nlohmann::json line;
    if (targets.size() > 1) line["target"] = t;
    line["streams"] = mine;
    line["completed"] = ttfb.size();
    line["errors"] = errors;
    if (errors > 0) line["first_error"] = first_error;
    line["ttfb_p50_ms"] =
        ttfb.empty() ? nlohmann::json("n/a") : nlohmann::json(Rounded(Percentile(ttfb, 50)));
    line["ttfb_p99_ms"] =
        ttfb.empty() ? nlohmann::json("n/a") : nlohmann::json(Rounded(Percentile(ttfb, 99)));
    line["wall_s"] = Rounded(wall_s);
    std::printf("%s\n", line.dump().c_str());
  }
  close(epoll_fd);
  return 0;
}
