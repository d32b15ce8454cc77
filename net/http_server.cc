#include "net/http_server.h"

#include <sys/socket.h>

namespace tollgate {

void TuneServer(httplib::Server& server, const ServerTuning& tuning) {
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1000000);
  server.set_keep_alive_timeout(tuning.keep_alive_seconds);
  server.set_read_timeout(tuning.read_timeout_seconds, 0);
  server.set_payload_max_length(tuning.max_body_bytes);
  int threads = tuning.worker_threads;
  server.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
}

int BindWithBacklog(httplib::Server& server, const std::string& host, int port, int backlog) {
  auto fd = std::make_shared<int>(-1);
  server.set_socket_options([fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *fd = sock;
  });
  int bound =
      port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound >= 0 && *fd >= 0) ::listen(*fd, backlog);
  return bound;
}

int RunningServer::Start(const std::string& host, int port) {
  port_ = BindWithBacklog(*server_, host, port);
  if (port_ < 0) return -1;
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // The socket is already bound and listening, so connections queue from here on;
  // wait only until the accept loop has started so that Stop() cannot race it.
  while (!server_->is_running()) std::this_thread::yield();
  return port_;
}

void RunningServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace tollgate
