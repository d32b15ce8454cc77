// Helpers for tests that use the real Postgres and Redis started by scripts/test.
// A missing variable fails the test: CI must never skip these silently.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "budget/keys.h"
#include "budget/migrations.h"
#include "budget/pg_pool.h"
#include "budget/redis.h"
#include "config/clock.h"
#include "proxy/upstream_pool.h"

namespace tollgate::testing {

inline std::string RequiredEnv(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    ADD_FAILURE() << name << " is not set: run the tests through scripts/test";
    return "";
  }
  return v;
}

inline std::string SourceDir() { return TOLLGATE_SOURCE_DIR; }
inline std::string TollgateBinary() { return TOLLGATE_BINARY; }
inline std::string SimBinary() { return TOLLGATE_SIM_BINARY; }

// Creates an empty database of its own for one test and returns its URL.
inline std::string FreshDatabase() {
  std::string admin_url = RequiredEnv("TOLLGATE_TEST_DATABASE_URL");
  if (admin_url.empty()) return "";
  std::string name = "tg_" + RandomHex(6);
  pqxx::connection c(admin_url);
  pqxx::nontransaction(c).exec("CREATE DATABASE " + name);
  return admin_url.substr(0, admin_url.rfind('/') + 1) + name;
}

// A fresh database with the schema applied. Ids of a fresh database start at 1 in
// every test process, and tests run in parallel against one Redis, so user ids start
// at a random point instead (above 2^20) to keep their Redis keys apart.
inline std::unique_ptr<PgPool> FreshMigratedPool(int connections) {
  std::string url = FreshDatabase();
  if (url.empty()) return nullptr;
  auto pool = std::make_unique<PgPool>(url, connections);
  int applied = 0;
  EXPECT_TRUE(Migrate(*pool, &applied).ok());
  EXPECT_TRUE(pool->Run([](pqxx::connection& c) {
                    pqxx::nontransaction(c).exec(
                        "ALTER SEQUENCE users_id_seq RESTART WITH " +
                        std::to_string(std::stoll(RandomHex(5), nullptr, 16) + 1000));
                  })
                  .ok());
  return pool;
}

// A pool on the Redis that scripts/test started, in database `db` (tests that need
// keys nobody else touches take a database of their own); null if it is not set.
// One ledger row written straight into usage_ledger (as a writer leaves it): charged to
// the window starting at `window_start`, in `batch` if not empty.
inline void InsertLedgerRow(pqxx::work& t, const std::string& request_id, int64_t user,
                            Timestamp started_at, int64_t cost, Timestamp window_start,
                            const std::string& batch = "") {
  t.exec_params("INSERT INTO usage_ledger (request_id, user_id, provider, model, price_id,"
                " started_at, cost_nanos, status, window_start, batch) VALUES ($1, $2, 'p',"
                " 'm', 'x', " + SqlFromMicros(3) + ", $4, 200, " + SqlFromMicros(5) +
                    ", NULLIF($6, ''))",
                request_id, user, Micros(started_at), cost, Micros(window_start), batch);
}

inline std::unique_ptr<HiredisPool> TestRedis(int db, int connections) {
  auto address = ParseRedisUrl(RequiredEnv("TOLLGATE_TEST_REDIS_URL"));
  EXPECT_TRUE(address.ok());
  if (!address.ok()) return nullptr;
  address->db = db;
  return std::make_unique<HiredisPool>(*address, connections, 2000);
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout, then stderr
};

// Runs a shell command line and captures its output.
inline CommandResult Run(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline Timestamp At(const char* rfc3339) {
  Timestamp t;
  EXPECT_TRUE(ParseRfc3339(rfc3339, &t)) << rfc3339;
  return t;
}

// The JSON of every `data:` line of an SSE body, [DONE] left out.
inline std::vector<nlohmann::json> SseData(const std::string& body) {
  std::vector<nlohmann::json> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find('\n', pos);
    std::string data = body.substr(pos + 6, end - pos - 6);
    if (data != "[DONE]") out.push_back(nlohmann::json::parse(data));
    pos = end;
  }
  return out;
}

// A TCP socket bound to 127.0.0.1 on a free port, listening unless `listen_too` is
// false (then connections to it are refused); the port goes to `*port`.
inline int LoopbackSocket(int* port, bool listen_too = true) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (listen_too) listen(fd, 16);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// Sends `wire` as it is (bytes no HTTP client would write) to 127.0.0.1:`port` and
// returns all that comes back until the server closes (or 10 s of silence).
inline std::string RawExchange(int port, const std::string& wire) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(send(fd, wire.data(), wire.size(), MSG_NOSIGNAL), static_cast<ssize_t>(wire.size()));
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) reply.append(buf, size_t(n));
  close(fd);
  return reply;
}

// A raw server's side: reads a request's head from `fd` (up to the blank line, or what
// came before the peer closed).
inline std::string ReadRequestHead(int fd) {
  std::string head;
  char buffer[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    head.append(buffer, static_cast<size_t>(n));
  }
  return head;
}

// One POST through an upstream pool, its answer read whole and the connection given
// back: what came, or how it failed.
struct UpstreamAnswer {
  ClientError error = ClientError::kNone;
  std::string detail;
  int status = 0;
  std::string body;
  bool reusable = false;  // the connection could serve the next request
};
inline UpstreamAnswer Ask(UpstreamPool& pool, const std::string& target = "/x") {
  UpstreamAnswer a;
  ResponseHead head;
  auto connection = pool.Begin({.method = "POST", .target = target, .headers = {}, .body = "{}"},
                               &head, &a.error, &a.detail);
  if (!connection) return a;
  a.status = head.status;
  a.error = connection->ReadBody([&](std::string_view piece) {
    a.body.append(piece);
    return true;
  });
  a.reusable = connection->reusable();
  pool.Release(std::move(connection));
  return a;
}

// Opens `n` streaming POSTs at once, one client thread each. `ended_before_all_begun`
// is how many had ended when the last one got its first byte: 0 shows they ran side by
// side (a server holding a thread per stream would have made the late ones wait).
struct ConcurrentStreams {
  int ended = 0;  // with status 200 and "[DONE]"
  int ended_before_all_begun = -1;
};
inline ConcurrentStreams RunConcurrentStreams(int port, int n, const std::string& path,
                                              const httplib::Headers& headers,
                                              const std::string& body) {
  std::atomic<int> begun{0}, ended{0}, ended_before_all_begun{-1};
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i) {
    clients.emplace_back([&] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(60, 0);
      httplib::Request req;
      req.method = "POST";
      req.path = path;
      req.headers = headers;
      req.body = body;
      req.set_header("Content-Type", "application/json");
      bool first = true;
      std::string answer;
      req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
        if (first && ++begun == n) ended_before_all_begun = ended.load();
        first = false;
        answer.append(data, size);
        return true;
      };
      auto r = c.send(req);
      if (r && r->status == 200 && answer.find("[DONE]") != std::string::npos) ++ended;
    });
  }
  for (auto& t : clients) t.join();
  return {ended.load(), ended_before_all_begun.load()};
}

}  // namespace tollgate::testing
