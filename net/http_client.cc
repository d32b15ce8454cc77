#include "net/http_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/http_request_parser.h"

namespace tollgate {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr size_t kMaxHeadBytes = 64 * 1024;
constexpr size_t kMaxHeaders = 256;
constexpr size_t kReadSize = 64 * 1024;

std::string SslErrorText() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "TLS error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

int RemainingMs(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Whether `fd` became ready (readable, or writable with `for_write`) within the time.
bool WaitFor(int fd, bool for_write, int timeout_ms) {
  pollfd p{.fd = fd, .events = static_cast<short>(for_write ? POLLOUT : POLLIN), .revents = 0};
  for (;;) {
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    return rc == 1;
  }
}

// A socket for `a`, non-blocking, its connect begun: fd >= 0 with `*connected` when it
// is done, fd >= 0 without when it is in progress (writable once it ends), -1 (errno set)
// when it failed.
int BeginConnect(const addrinfo& a, bool* connected) {
  int fd = socket(a.ai_family, a.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a.ai_protocol);
  if (fd < 0) return -1;
  int yes = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  *connected = connect(fd, a.ai_addr, a.ai_addrlen) == 0;
  if (*connected || errno == EINPROGRESS) return fd;
  int saved = errno;
  close(fd);
  errno = saved;
  return -1;
}

// The host's TCP addresses (getaddrinfo's code; `flags` are its AI_ flags).
int Resolve(const UpstreamAddress& address, int flags, addrinfo** found) {
  addrinfo hints{};
  hints.ai_flags = flags;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  return getaddrinfo(address.host.c_str(), std::to_string(address.port).c_str(), &hints, found);
}

// A TCP connection to one of the host's addresses, within the deadline.
int ConnectTcp(const UpstreamAddress& address, SteadyClock::time_point deadline, ClientError* error,
               std::string* detail) {
  addrinfo* found = nullptr;
  int rc = Resolve(address, 0, &found);
  if (rc != 0) {
    *error = ClientError::kConnect;
    *detail = "cannot resolve " + address.host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  *error = ClientError::kConnect;
  *detail = "cannot connect to " + address.authority;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    bool connected = false;
    fd = BeginConnect(*a, &connected);
    if (fd < 0) {
      *detail = "cannot connect to " + address.authority + ": " + strerror(errno);
      continue;
    }
    if (connected) break;
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    bool ready = WaitFor(fd, true, RemainingMs(deadline));
    if (ready && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == 0 && so_error == 0) break;
    if (!ready) {
      *error = ClientError::kTimeout;
      *detail = "connecting to " + address.authority + " timed out";
    } else if (so_error != 0) {
      *detail = "cannot connect to " + address.authority + ": " + strerror(so_error);
    }
    close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  if (fd >= 0) {
    *error = ClientError::kNone;
    detail->clear();
  }
  return fd;
}

}  // namespace

TlsContext::TlsContext(const std::string& ca_file) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  if (ca_file.empty()) {
    SSL_CTX_set_default_verify_paths(ctx_);
  } else {
    SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
  }
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::string FormatRequest(const std::string& method, const std::string& target,
                          const std::string& authority, const HeaderList& headers,
                          const std::string& body) {
  std::string out;
  out.reserve(512 + body.size());
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ");
  out.append(authority).append("\r\n");
  for (const auto& [name, value] : headers) {
    if (IsOneOf(name, {"Host", "Content-Length"})) continue;
    out.append(name).append(": ").append(value).append("\r\n");
  }
  if (!body.empty() || method == "POST" || method == "PUT")
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  out.append("\r\n").append(body);
  return out;
}

std::unique_ptr<HttpConnection> HttpConnection::Open(const UpstreamAddress& address, SSL_CTX* tls,
                                                     const ClientTimeouts& timeouts,
                                                     ClientError* error, std::string* detail) {
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeouts.connect_ms);
  int fd = ConnectTcp(address, deadline, error, detail);
  if (fd < 0) return nullptr;
  if (!address.tls)
    return std::unique_ptr<HttpConnection>(new HttpConnection(fd, nullptr, timeouts));

  SSL* ssl = SSL_new(tls);
  auto connection = std::unique_ptr<HttpConnection>(new HttpConnection(fd, ssl, timeouts));
  SSL_set_fd(ssl, fd);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (IsIpAddress(address.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, address.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, address.host.c_str());  // SNI
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, address.host.c_str(), 0);
  }
  for (;;) {
    ERR_clear_error();
    int rc = SSL_connect(ssl);
    if (rc == 1) return connection;
    int reason = SSL_get_error(ssl, rc);
    if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) {
      if (WaitFor(fd, reason == SSL_ERROR_WANT_WRITE, RemainingMs(deadline))) continue;
      *error = ClientError::kTimeout;
      *detail = "TLS handshake with " + address.authority + " timed out";
      return nullptr;
    }
    *error = ClientError::kTls;
    long verify = SSL_get_verify_result(ssl);
    *detail = "TLS handshake with " + address.authority + " failed: " +
              (verify != X509_V_OK ? std::string("certificate not trusted (") +
                                         X509_verify_cert_error_string(verify) + ")"
                                   : SslErrorText());
    return nullptr;
  }
}

bool HttpConnection::OpensWithoutWaiting(const UpstreamAddress& address) {
  return !address.tls && IsIpAddress(address.host);
}

std::unique_ptr<HttpConnection> HttpConnection::OpenWithoutWaiting(const UpstreamAddress& address,
                                                                   const ClientTimeouts& timeouts,
                                                                   ClientError* error,
                                                                   std::string* detail) {
  *error = ClientError::kConnect;
  *detail = "cannot connect to " + address.authority;
  if (!OpensWithoutWaiting(address)) return nullptr;
  addrinfo* found = nullptr;
  if (Resolve(address, AI_NUMERICHOST | AI_NUMERICSERV, &found) != 0)  // no lookup: no wait
    return nullptr;
  bool connected = false;
  int fd = BeginConnect(*found, &connected);
  if (fd < 0) *detail += std::string(": ") + strerror(errno);
  freeaddrinfo(found);
  if (fd < 0) return nullptr;
  *error = ClientError::kNone;
  detail->clear();
  auto connection = std::unique_ptr<HttpConnection>(new HttpConnection(fd, nullptr, timeouts));
  connection->connecting_ = !connected;
  return connection;
}

HttpConnection::Progress HttpConnection::FinishConnect(ClientError* error, std::string* reason) {
  if (!connecting_) return Progress::kDone;
  int so_error = 0;
  socklen_t len = sizeof(so_error);
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
  if (so_error == 0) {
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0) {
      connecting_ = false;
      return Progress::kDone;
    }
    if (errno == ENOTCONN) {
      want_write_ = true;  // writable once the connect ends, either way
      return Progress::kWouldBlock;
    }
    so_error = errno;
  }
  broken_ = true;
  *error = ClientError::kConnect;
  *reason = strerror(so_error);
  return Progress::kFailed;
}

HttpConnection::~HttpConnection() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // no close_notify: the socket is dropped as is
  close(fd_);
}

bool HttpConnection::IdleConnectionLost() const {
  // An idle keep-alive connection has nothing to read; readable means closed (or junk).
  return WaitFor(fd_, false, 0) || (ssl_ != nullptr && SSL_pending(ssl_) > 0);
}

HttpConnection::Progress HttpConnection::Write(std::string_view* rest, ClientError* error) {
  if (!sending_) {
    // A fresh answer starts.
    sending_ = true;
    framing_ = Framing::kNone;
    body_done_ = false;
    keep_alive_ = true;
    answer_bytes_ = 0;
    chunked_.Reset();
  }
  want_write_ = true;
  while (!rest->empty()) {
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int rc = SSL_write(ssl_, rest->data(), static_cast<int>(rest->size()));
      if (rc <= 0) {
        int reason = SSL_get_error(ssl_, rc);
        if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) {
          want_write_ = reason == SSL_ERROR_WANT_WRITE;
          return Progress::kWouldBlock;
        }
        break;
      }
      n = rc;
    } else {
      n = send(fd_, rest->data(), rest->size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Progress::kWouldBlock;
      if (n <= 0) break;
    }
    rest->remove_prefix(static_cast<size_t>(n));
  }
  sending_ = false;
  if (rest->empty()) return Progress::kDone;
  broken_ = true;
  *error = ClientError::kClosed;
  return Progress::kFailed;
}

ClientError HttpConnection::Send(std::string_view request) {
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeouts_.write_ms);
  for (;;) {
    ClientError error = ClientError::kNone;
    Progress p = Write(&request, &error);
    if (p != Progress::kWouldBlock) return error;
    if (!WaitFor(fd_, want_write_, RemainingMs(deadline))) {
      broken_ = true;
      sending_ = false;
      return ClientError::kTimeout;
    }
  }
}

HttpConnection::Io HttpConnection::ReadSome() {
  char buffer[kReadSize];
  want_write_ = false;
  if (drained_) {
    drained_ = false;
    return Io::kWouldBlock;
  }
  for (;;) {
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      errno = 0;  // read below: 0 means the peer closed without close_notify
      int rc = SSL_read(ssl_, buffer, sizeof(buffer));
      if (rc > 0) {
        n = rc;
      } else {
        int reason = SSL_get_error(ssl_, rc);
        if (reason == SSL_ERROR_WANT_READ) return Io::kWouldBlock;
        if (reason == SSL_ERROR_WANT_WRITE) {
          want_write_ = true;
          return Io::kWouldBlock;
        }
        // A close_notify, or a peer that just closed: both end the bytes.
        if (reason == SSL_ERROR_ZERO_RETURN || (reason == SSL_ERROR_SYSCALL && errno == 0))
          return Io::kEnd;
        return Io::kFailed;
      }
    } else {
      n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return Io::kEnd;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWouldBlock;
        return Io::kFailed;
      }
      drained_ = static_cast<size_t>(n) < sizeof(buffer);
    }
    in_.append(buffer, static_cast<size_t>(n));
    answer_bytes_ += static_cast<size_t>(n);
    return Io::kOk;
  }
}

ClientError HttpConnection::ReadHead(ResponseHead* head, const std::string& method) {
  for (;;) {
    ClientError error = ClientError::kNone;
    Progress p = ReadHeadAvailable(head, method, &error);
    if (p != Progress::kWouldBlock) return error;
    if (!WaitFor(fd_, want_write_, timeouts_.read_ms)) {
      broken_ = true;
      return ClientError::kTimeout;
    }
  }
}

HttpConnection::Progress HttpConnection::ReadHeadAvailable(ResponseHead* head,
                                                           const std::string& method,
                                                           ClientError* error) {
  auto fail = [&](ClientError why) {
    broken_ = true;
    *error = why;
    return Progress::kFailed;
  };
  for (;;) {
    size_t end = in_.find("\r\n\r\n");
    while (end == std::string::npos) {
      if (in_.size() > kMaxHeadBytes) return fail(ClientError::kProtocol);
      Io io = ReadSome();
      if (io == Io::kWouldBlock) return Progress::kWouldBlock;
      if (io != Io::kOk) return fail(ClientError::kClosed);
      end = in_.find("\r\n\r\n");
    }
    std::string_view text(in_.data(), end);
    size_t eol = std::min(text.find("\r\n"), text.size());
    std::string_view line = text.substr(0, eol);
    // HTTP/1.x SSS[ reason]
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
        !std::all_of(line.begin() + 9, line.begin() + 12,
                     [](char c) { return c >= '0' && c <= '9'; })) {
      return fail(ClientError::kProtocol);
    }
    bool http10 = line[7] == '0';
    int status = std::stoi(std::string(line.substr(9, 3)));
    if (status < 100 || status > 599) return fail(ClientError::kProtocol);  // not an HTTP status
    HeaderList headers;
    if (ParseFields(text.substr(std::min(eol + 2, text.size())), kMaxHeaders, &headers).status != 0)
      return fail(ClientError::kProtocol);
    in_.erase(0, end + 4);
    if (status >= 100 && status < 200) continue;  // 100 Continue and friends: the answer follows

    head->status = status;
    head->headers = std::move(headers);
    const HeaderList& h = head->headers;
    keep_alive_ =
        http10 ? ListsToken(h, "Connection", "keep-alive") : !ListsToken(h, "Connection", "close");
    if (method == "HEAD" || status == 204 || status == 304) {
      framing_ = Framing::kNone;
    } else {
      // Conflicting lengths, or a coding we cannot take off (gzip, chunked: we never ask
      // for one), would have us read a different answer from the one the upstream meant.
      BodyFraming framing = ReadBodyFraming(h);
      if (framing.error.status != 0) return fail(ClientError::kProtocol);
      framing_ = framing.kind == BodyFraming::Kind::kChunked  ? Framing::kChunked
                 : framing.kind == BodyFraming::Kind::kLength ? Framing::kLength
                                                              : Framing::kUntilClose;
      remaining_ = framing.length;
      if (framing_ == Framing::kUntilClose) keep_alive_ = false;
    }
    body_done_ = framing_ == Framing::kNone || (framing_ == Framing::kLength && remaining_ == 0);
    return Progress::kDone;
  }
}

bool HttpConnection::DecodeBody(std::string* body) {
  switch (framing_) {
    case Framing::kNone:
      return true;
    case Framing::kLength: {
      size_t take = std::min(remaining_, in_.size());
      body->append(in_, 0, take);
      in_.erase(0, take);
      remaining_ -= take;
      return remaining_ == 0;
    }
    case Framing::kChunked:
      switch (chunked_.Decode(in_, *body)) {
        case ChunkedDecoder::State::kDone:
          return true;
        case ChunkedDecoder::State::kNeedMore:
          return false;
        default:
          broken_ = true;
          return false;
      }
    case Framing::kUntilClose:
      body->append(in_);
      in_.clear();
      return false;
  }
  return false;
}

HttpConnection::Progress HttpConnection::ReadAvailable(std::string* body, ClientError* error,
                                                       size_t max_bytes) {
  for (;;) {
    if (!body_done_) body_done_ = DecodeBody(body);
    if (broken_) {
      *error = ClientError::kProtocol;
      return Progress::kFailed;
    }
    if (body_done_) return Progress::kDone;
    // Stop at the bound only where epoll will say there is more: in the socket, not
    // in OpenSSL's buffers.
    if (body->size() >= max_bytes && (ssl_ == nullptr || !SSL_has_pending(ssl_)))
      return Progress::kWouldBlock;
    switch (ReadSome()) {
      case Io::kOk:
        continue;
      case Io::kWouldBlock:
        return Progress::kWouldBlock;
      case Io::kEnd:
        if (framing_ == Framing::kUntilClose) {
          body_done_ = true;
          return Progress::kDone;
        }
        broken_ = true;
        *error = ClientError::kClosed;
        return Progress::kFailed;
      case Io::kFailed:
        broken_ = true;
        *error = ClientError::kClosed;
        return Progress::kFailed;
    }
  }
}

ClientError HttpConnection::ReadBody(const std::function<bool(std::string_view)>& sink) {
  std::string piece;
  for (;;) {
    piece.clear();
    ClientError error = ClientError::kNone;
    Progress p = ReadAvailable(&piece, &error);
    if (!piece.empty() && !sink(piece)) {
      broken_ = true;  // the rest of the answer is left unread
      return ClientError::kNone;
    }
    if (p == Progress::kDone) return ClientError::kNone;
    if (p == Progress::kFailed) return error;
    if (!WaitFor(fd_, want_write_, timeouts_.read_ms)) {
      broken_ = true;
      return ClientError::kTimeout;
    }
  }
}

}  // namespace tollgate
