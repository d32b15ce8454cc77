// The upstream side of the proxy: one HTTP/1.1 connection to a provider, plain TCP
// or TLS with the certificate verified against the host name. A request is written
// whole and the answer read as it arrives. The socket is always non-blocking — the
// blocking calls wait with poll() and a timeout — so a worker can read an answer's
// head, then hand the connection to the stream relay's event loop, which reads the
// rest with ReadAvailable() whenever epoll says there is some.
//
// Why not cpp-httplib's client: it hides its socket, so a stream it reads holds a
// thread that wakes for every chunk (measured: ~120 µs of CPU per relayed chunk).
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "net/chunked_decoder.h"
#include "net/header_list.h"

namespace tollgate {

struct ClientTimeouts {
  int connect_ms = 5000;  // TCP connect and TLS handshake
  int read_ms = 600000;   // silence between two reads of an answer
  int write_ms = 60000;   // a request that cannot be written
};

// What went wrong, in terms the caller answers with (504 for kTimeout, 502 otherwise).
// kTooLarge: an answer read whole was larger than the caller's bound.
enum class ClientError { kNone, kConnect, kTls, kTimeout, kClosed, kProtocol, kTooLarge };

// The trust store for https upstreams: the system's, or one CA file (tests).
class TlsContext {
 public:
  explicit TlsContext(const std::string& ca_file = "");
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* get() const { return ctx_; }

 private:
  SSL_CTX* ctx_ = nullptr;
};

struct ResponseHead {
  int status = 0;
  HeaderList headers;
};

// The request line, Host, the caller's headers and Content-Length (when there is a
// body or the method is POST), then the body.
std::string FormatRequest(const std::string& method, const std::string& target,
                          const std::string& authority, const HeaderList& headers,
                          const std::string& body);

class HttpConnection {
 public:
  // Connects and, for https, completes the handshake (certificate and host name
  // checked), within timeouts.connect_ms. Null on failure, with `error` and `detail` set.
  static std::unique_ptr<HttpConnection> Open(const UpstreamAddress& address, SSL_CTX* tls,
                                              const ClientTimeouts& timeouts, ClientError* error,
                                              std::string* detail);
  // Whether OpenWithoutWaiting can open connections to `address`: plain HTTP to an IP
  // address (no name to resolve, no handshake).
  static bool OpensWithoutWaiting(const UpstreamAddress& address);
  // For an event loop: the connect is begun, not waited for (FinishConnect tells when it
  // ends). Null, with `error` and `detail` set, when it failed at once or when
  // OpensWithoutWaiting is false.
  static std::unique_ptr<HttpConnection> OpenWithoutWaiting(const UpstreamAddress& address,
                                                            const ClientTimeouts& timeouts,
                                                            ClientError* error,
                                                            std::string* detail);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Writes one request whole; the previous answer must have been read to its end.
  ClientError Send(std::string_view request);
  // Reads the answer's status line and headers (interim 1xx answers are skipped).
  // `method` tells whether a body follows (HEAD answers have none).
  ClientError ReadHead(ResponseHead* head, const std::string& method = "POST");
  // Reads the body to its end, handing each piece to `sink` (false stops the reading,
  // and the connection is then not reused).
  ClientError ReadBody(const std::function<bool(std::string_view)>& sink);

  // The same three without waiting, for an event loop. kWouldBlock means call again
  // once fd() is ready (writable when wants_write(), else readable).
  enum class Progress { kWouldBlock, kDone, kFailed };
  // Writes what the socket takes of `*rest`, dropping it from the front.
  Progress Write(std::string_view* rest, ClientError* error);
  Progress ReadHeadAvailable(ResponseHead* head, const std::string& method, ClientError* error);
  // Appends the body bytes that have arrived, about `max_bytes` at most (kWouldBlock
  // with `max_bytes` reached: call again at once).
  Progress ReadAvailable(std::string* body, ClientError* error, size_t max_bytes = SIZE_MAX);

  // A connection from OpenWithoutWaiting: kDone once connected, kWouldBlock until then
  // (call again once fd() is writable), kFailed (kConnect, with the system's `reason`)
  // when it could not connect.
  Progress FinishConnect(ClientError* error, std::string* reason);
  bool connecting() const { return connecting_; }

  int fd() const { return fd_; }
  bool wants_write() const { return want_write_; }
  // The answer was read to its end and the upstream keeps the connection open.
  bool reusable() const { return body_done_ && keep_alive_ && !broken_ && in_.empty(); }
  // Whether the upstream closed (or sent bytes on) the connection while it sat idle.
  bool IdleConnectionLost() const;
  // Bytes of the answer received so far (0: the upstream never answered this request).
  size_t answer_bytes() const { return answer_bytes_; }

 private:
  enum class Io { kOk, kWouldBlock, kEnd, kFailed };
  HttpConnection(int fd, SSL* ssl, const ClientTimeouts& timeouts)
      : fd_(fd), ssl_(ssl), timeouts_(timeouts) {}
  // One read into in_. A plain socket that gave less than asked is taken as drained
  // (kWouldBlock next, without asking the kernel again): epoll and poll are
  // level-triggered here, so bytes that arrive later are still seen.
  Io ReadSome();
  // Moves what in_ holds of the body into `body`; true once the body is complete.
  bool DecodeBody(std::string* body);

  const int fd_;
  SSL* const ssl_;
  const ClientTimeouts timeouts_;
  std::string in_;  // read and not yet consumed
  enum class Framing { kNone, kLength, kChunked, kUntilClose } framing_ = Framing::kNone;
  size_t remaining_ = 0;  // kLength: body bytes still to come
  ChunkedDecoder chunked_;
  bool body_done_ = false;
  bool keep_alive_ = true;
  bool broken_ = false;  // a protocol error or a read stopped half-way
  bool want_write_ = false;
  bool drained_ = false;     // the last plain read came up short
  bool sending_ = false;     // a request is being written
  bool connecting_ = false;  // OpenWithoutWaiting's connect has not ended yet
  size_t answer_bytes_ = 0;
};

}  // namespace tollgate
