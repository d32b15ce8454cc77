// Server tuning shared by the event-driven server (proxy port, sim) and the cpp-httplib
// server of the side port: TCP_NODELAY, long keep-alive, a bounded worker pool.
#pragma once

#include <httplib.h>

#include <memory>
#include <string>
#include <thread>

namespace tollgate {

struct ServerTuning {
  int worker_threads = 64;  // cpp-httplib: one per open connection; EventServer: per request
  size_t max_body_bytes = 10 * 1024 * 1024;
  int read_timeout_seconds = 60;
  int keep_alive_seconds = 60;
};

void TuneServer(httplib::Server& server, const ServerTuning& tuning);

// Binds (port 0 = any free port) and returns the port, or -1. cpp-httplib 0.11 is
// compiled with a listen backlog of 5: a burst of connections overflows it and clients
// retry after 1, 3, 7 s. This re-listens on the bound socket with `backlog`.
int BindWithBacklog(httplib::Server& server, const std::string& host, int port, int backlog = 4096);

// Owns a server listening on its own thread. Start() binds (port 0 = any free
// port) and returns once the server accepts connections.
class RunningServer {
 public:
  explicit RunningServer(std::unique_ptr<httplib::Server> server) : server_(std::move(server)) {}
  ~RunningServer() { Stop(); }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  // Returns the bound port, or -1 if the address could not be bound.
  int Start(const std::string& host, int port);
  void Stop();
  int port() const { return port_; }
  httplib::Server& server() { return *server_; }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = -1;
};

}  // namespace tollgate
