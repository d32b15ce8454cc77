#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

#include "tools/sim/sim_server.h"

namespace {
void Usage() {
  std::cerr << "usage: tollgate-sim [--listen HOST:PORT] [--output-tokens N] [--token-delay-ms N] "
               "[--threads N]\n"
               "Serves simulated Mistral, Anthropic, DeepSeek and Ollama APIs (default "
               "127.0.0.1:9090).\n";
}
}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 9090;
  tollgate::sim::SimOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--listen") {
      std::string v = next();
      auto colon = v.rfind(':');
      if (colon == std::string::npos) {
        Usage();
        return 2;
      }
      host = v.substr(0, colon);
      port = std::atoi(v.c_str() + colon + 1);
    } else if (arg == "--output-tokens") {
      options.default_output_tokens = std::atoi(next().c_str());
    } else if (arg == "--token-delay-ms") {
      options.token_delay_ms = std::atoi(next().c_str());
    } else if (arg == "--threads") {
      options.worker_threads = std::atoi(next().c_str());
    } else if (arg == "--help") {
      Usage();
      return 0;
    } else {
      std::cerr << "tollgate-sim: unknown option " << arg << "\n";
      return 2;
    }
  }
  std::signal(SIGPIPE, SIG_IGN);
  tollgate::sim::SimServer sim(options);
  auto& server = sim.server();
  int bound = server.Start(host, port);  // port 0: any free port
  if (bound < 0) {
    std::cerr << "tollgate-sim: cannot listen on " << host << ":" << port << "\n";
    return 1;
  }
  std::cout << "tollgate-sim listening on " << host << ":" << bound << std::endl;
  for (;;) pause();  // serves until a signal ends the process
}
