#include "net/http_server.h"

namespace tollgate {

void TuneServer(httplib::Server& server, const ServerTuning& tuning) {
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1000000);
  server.set_keep_alive_timeout(tuning.keep_alive_seconds);
  server.set_read_timeout(tuning.read_timeout_seconds, 0);
  server.set_payload_max_length(tuning.max_body_bytes);
  int threads = tuning.worker_threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
}

int RunningServer::Start(const std::string& host, int port) {
  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
  } else {
    port_ = server_->bind_to_port(host, port) ? port : -1;
  }
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
