// The upstream answer reader (HttpConnection's head and body reading, net/http_client.h)
// on arbitrary bytes from a real loopback socket, in arbitrary splits: the reader has no
// pure entry point, so a listener on 127.0.0.1 plays the upstream. The first input byte
// picks the split and whether the request was a HEAD; the rest is what the upstream
// sends, then it closes. Whatever the split, the same head, body and verdict.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/http_client.h"
#include "tests/fuzz/fuzz_support.h"

namespace tollgate {
namespace {

struct Listener {
  int fd = -1;
  UpstreamAddress address;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    FUZZ_CHECK(bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0 && listen(fd, 16) == 0 &&
                   getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0,
               "a loopback listener");
    address.host = "127.0.0.1";
    address.port = ntohs(a.sin_port);
    address.authority = "127.0.0.1:" + std::to_string(address.port);
  }
};

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) > 0;
}

struct Outcome {
  int status = 0;  // 0: no head
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool done = false;  // the answer was read to its end
  ClientError error = ClientError::kNone;
  bool operator==(const Outcome&) const = default;
};

Outcome Run(const Listener& listener, const std::vector<std::string_view>& pieces,
            const std::string& method) {
  ClientError error = ClientError::kNone;
  std::string detail;
  auto connection = HttpConnection::OpenWithoutWaiting(listener.address, {}, &error, &detail);
  FUZZ_CHECK(connection != nullptr, detail.c_str());
  int upstream = accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC);
  FUZZ_CHECK(upstream >= 0, "accepted");
  std::string reason;
  while (connection->FinishConnect(&error, &reason) == HttpConnection::Progress::kWouldBlock) {
    pollfd p{connection->fd(), POLLOUT, 0};
    FUZZ_CHECK(poll(&p, 1, 2000) > 0, "connected");
  }

  Outcome o;
  ResponseHead head;
  bool have_head = false, ended = false;
  // Reads what has arrived; true once the exchange has ended (done or failed).
  auto step = [&]() -> bool {
    for (;;) {
      HttpConnection::Progress p;
      if (!have_head) {
        p = connection->ReadHeadAvailable(&head, method, &o.error);
        if (p == HttpConnection::Progress::kDone) {
          have_head = true;
          continue;
        }
      } else {
        p = connection->ReadAvailable(&o.body, &o.error);
        o.done = p == HttpConnection::Progress::kDone;
      }
      if (p != HttpConnection::Progress::kWouldBlock) return true;
      // kWouldBlock after a short read: ask again while the socket has bytes (or its end).
      if (!Readable(connection->fd(), 0)) return false;
    }
  };
  for (std::string_view piece : pieces) {
    while (!piece.empty() && !ended) {
      ssize_t n = send(upstream, piece.data(), piece.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) piece.remove_prefix(static_cast<size_t>(n));
      ended = step();
    }
  }
  shutdown(upstream, SHUT_WR);
  while (!ended) {
    FUZZ_CHECK(Readable(connection->fd(), 2000), "the end of the answer is seen");
    ended = step();
  }
  close(upstream);
  if (have_head) {
    o.status = head.status;
    o.headers.assign(head.headers.begin(), head.headers.end());
  }
  if (o.done) {
    FUZZ_CHECK(o.error == ClientError::kNone, "a whole answer has no error");
    FUZZ_CHECK(o.status >= 100 && o.status <= 599, "a status HTTP defines");
  }
  if (connection->reusable()) FUZZ_CHECK(o.done, "only a whole answer leaves it reusable");
  return o;
}

}  // namespace
}  // namespace tollgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tollgate;
  static const Listener listener;
  if (size == 0 || size > 64 * 1024) return 0;
  std::string method = data[0] & 0x80 ? "HEAD" : "POST";
  std::string_view bytes = fuzz::Bytes(data + 1, size - 1);
  Outcome whole = Run(listener, {bytes}, method);
  Outcome split = Run(listener, fuzz::Pieces(bytes, data[0] & 0x7f), method);
  FUZZ_CHECK(whole == split, "the same answer reads the same in any split");
  return 0;
}
