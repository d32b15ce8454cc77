#include "budget/spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "budget/keys.h"
#include "budget/ledger.h"

namespace tollgate {
namespace {

constexpr std::string_view kVersion = "v4";
constexpr std::string_view kSuffix = ".wal";

void AppendNumber(std::string& out, int64_t v) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
  out.append(digits, end);
}

void AppendOptionalWindow(std::string& out, const std::optional<Window>& w) {
  out += '\t';
  if (!w) {
    out += "-\t-";
    return;
  }
  AppendNumber(out, Micros(w->start));
  out += '\t';
  AppendNumber(out, Micros(w->end));
}

std::string Unescape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '\\' || i + 1 == v.size()) {
      out += v[i];
      continue;
    }
    char c = v[++i];
    out += c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c;
  }
  return out;
}

std::optional<int64_t> Number(std::string_view f) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (ec != std::errc() || end != f.data() + f.size()) return std::nullopt;
  return v;
}

// Lines of spool files written before this format: one JSON object per row.
std::optional<UsageRecord> ParseJsonLine(std::string_view line) {
  try {
    auto j = nlohmann::json::parse(line);
    UsageRecord r;
    r.request_id = j.at("request_id");
    r.user_id = j.at("user_id");
    r.key_id = j.at("key_id");
    r.provider = j.at("provider");
    r.model = j.at("model");
    r.price_id = j.at("price_id");
    r.started_at = FromMicros(j.at("started_at_us"));
    r.usage.input_tokens = j.at("input");
    r.usage.output_tokens = j.at("output");
    r.usage.cache_read_tokens = j.at("cache_read");
    r.usage.cache_write_5m_tokens = j.at("cache_write_5m");
    r.usage.cache_write_1h_tokens = j.at("cache_write_1h");
    r.usage.reasoning_tokens = j.at("reasoning");
    r.cost = Money::FromNanos(j.at("cost_nanos"));
    r.status = j.at("status");
    r.streamed = j.at("streamed");
    r.estimated = j.at("estimated");
    r.latency_ms = j.at("latency_ms");
    return r;  // counted in Redis by the version that wrote it: no window to charge
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

void AppendCopyText(std::string& out, std::string_view v) {
  size_t run = 0;  // the start of the plain characters not yet appended
  for (size_t i = 0; i < v.size(); ++i) {
    const char* escaped;
    switch (v[i]) {
      case '\0':
        escaped = "";
        break;
      case '\\':
        escaped = "\\\\";
        break;
      case '\t':
        escaped = "\\t";
        break;
      case '\n':
        escaped = "\\n";
        break;
      case '\r':
        escaped = "\\r";
        break;
      default:
        continue;
    }
    out.append(v.substr(run, i - run));
    out += escaped;
    run = i + 1;
  }
  out.append(v.substr(run));
}

void AppendSpoolLine(std::string& out, const UsageRecord& r) {
  out += kVersion;
  for (const std::string* text : {&r.request_id}) {
    out += '\t';
    AppendCopyText(out, *text);
  }
  for (int64_t n : {r.user_id, r.key_id}) {
    out += '\t';
    AppendNumber(out, n);
  }
  for (const std::string* text : {&r.provider, &r.model, &r.price_id}) {
    out += '\t';
    AppendCopyText(out, *text);
  }
  const Usage& u = r.usage;
  for (int64_t n : {Micros(r.started_at), u.input_tokens, u.output_tokens, u.cache_read_tokens,
                    u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.reasoning_tokens,
                    r.cost.nanos(), int64_t{r.status}, int64_t{r.streamed}, int64_t{r.estimated},
                    r.latency_ms}) {
    out += '\t';
    AppendNumber(out, n);
  }
  AppendOptionalWindow(out, r.window);
  AppendOptionalWindow(out, r.global_window);
  out += '\t';
  AppendCopyText(out, r.hold_id);
}

std::optional<UsageRecord> ParseSpoolLine(std::string_view line) {
  if (line.starts_with("{")) return ParseJsonLine(line);
  std::vector<std::string_view> f;
  size_t at = 0;
  while (true) {
    size_t tab = line.find('\t', at);
    f.push_back(line.substr(at, tab == std::string_view::npos ? tab : tab - at));
    if (tab == std::string_view::npos) break;
    at = tab + 1;
  }
  if (f.size() != 24 || f[0] != kVersion) return std::nullopt;
  std::vector<int64_t> n;
  for (size_t i : {2, 3, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}) {
    auto v = Number(f[i]);
    if (!v) return std::nullopt;
    n.push_back(*v);
  }
  auto window = [&](size_t i) -> std::optional<std::optional<Window>> {
    if (f[i] == "-") return std::optional<Window>();
    auto s = Number(f[i]), e = Number(f[i + 1]);
    if (!s || !e) return std::nullopt;
    return std::optional<Window>(Window{FromMicros(*s), FromMicros(*e)});
  };
  auto user_window = window(19), global_window = window(21);
  if (!user_window || !global_window) return std::nullopt;
  UsageRecord r;
  r.request_id = Unescape(f[1]);
  r.user_id = n[0];
  r.key_id = n[1];
  r.provider = Unescape(f[4]);
  r.model = Unescape(f[5]);
  r.price_id = Unescape(f[6]);
  r.started_at = FromMicros(n[2]);
  r.usage = {n[3], n[4], n[5], n[6], n[7], n[8]};
  r.cost = Money::FromNanos(n[9]);
  r.status = static_cast<int>(n[10]);
  r.streamed = n[11] != 0;
  r.estimated = n[12] != 0;
  r.latency_ms = n[13];
  r.window = *user_window;
  r.global_window = *global_window;
  r.hold_id = Unescape(f[23]);
  return r;
}

LedgerSpool::LedgerSpool(std::string dir)
    : dir_(std::move(dir)),
      prefix_("ledger-" + std::to_string(getpid()) + "-" + RandomHex(4) + "-") {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  std::lock_guard lock(mu_);
  OpenSegment();
}

LedgerSpool::~LedgerSpool() {
  std::lock_guard lock(mu_);
  for (Segment& s : segments_) {
    if (s.fd >= 0) {
      ::fdatasync(s.fd);
      ::close(s.fd);
    }
  }
}

std::string LedgerSpool::PathOf(uint64_t n) const {
  return dir_ + "/" + prefix_ + std::to_string(n) + std::string(kSuffix);
}

// Made under a name no scan reads, locked, then renamed: a scan never finds a live
// segment unlocked.
bool LedgerSpool::OpenSegment() {
  uint64_t n = next_++;
  std::string path = PathOf(n), fresh = path + ".new";
  int fd = ::open(fresh.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || std::rename(fresh.c_str(), path.c_str()) != 0) {
    ::close(fd);
    ::unlink(fresh.c_str());
    return false;
  }
  segments_.push_back({n, path, fd});
  open_bytes_ = 0;
  return true;
}

Result<uint64_t> LedgerSpool::Append(const UsageRecord& r) {
  std::string line;
  line.reserve(256);
  AppendSpoolLine(line, r);
  line += '\n';
  std::lock_guard lock(mu_);
  if ((segments_.empty() || open_bytes_ >= kSegmentBytes) && !OpenSegment())
    return Status::Unavailable("ledger spool: cannot open a file in " + dir_);
  Segment& s = segments_.back();
  if (::write(s.fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    return Status::Unavailable("ledger spool: write failed in " + dir_);
  open_bytes_ += line.size();
  dirty_ = true;
  return s.number;
}

uint64_t LedgerSpool::Rotate() {
  std::lock_guard lock(mu_);
  uint64_t closed = segments_.empty() ? 0 : segments_.back().number;
  if (!segments_.empty()) ::fdatasync(segments_.back().fd);
  OpenSegment();
  return closed;
}

void LedgerSpool::Sync() {
  int fd;
  {
    std::lock_guard lock(mu_);
    if (!dirty_ || segments_.empty()) return;
    dirty_ = false;
    fd = ::dup(segments_.back().fd);
  }
  if (fd < 0) return;
  ::fdatasync(fd);
  ::close(fd);
}

void LedgerSpool::Release(uint64_t first_needed) {
  std::lock_guard lock(mu_);
  while (segments_.size() > 1 && segments_.front().number < first_needed) {
    ::unlink(segments_.front().path.c_str());
    ::close(segments_.front().fd);
    segments_.erase(segments_.begin());
  }
}

void LedgerSpool::ReleaseAll() {
  std::lock_guard lock(mu_);
  for (Segment& s : segments_) {
    ::unlink(s.path.c_str());
    ::close(s.fd);
  }
  segments_.clear();
  open_bytes_ = 0;
  dirty_ = false;
}

std::vector<UsageRecord> LedgerSpool::Read(uint64_t n) {
  std::string path;
  {
    std::lock_guard lock(mu_);
    for (const Segment& s : segments_) {
      if (s.number == n) path = s.path;
    }
  }
  std::vector<UsageRecord> rows;
  if (path.empty()) return rows;
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return rows;
  char* buf = nullptr;
  size_t cap = 0;
  ssize_t len;
  while ((len = ::getline(&buf, &cap, f)) > 0) {
    std::string_view line(buf, static_cast<size_t>(len));
    if (line.ends_with('\n')) line.remove_suffix(1);
    if (auto r = ParseSpoolLine(line)) rows.push_back(std::move(*r));
  }
  std::free(buf);
  std::fclose(f);
  return rows;
}

void LedgerSpool::Drop(uint64_t n) {
  std::lock_guard lock(mu_);
  for (auto it = segments_.begin(); it != segments_.end(); ++it) {
    if (it->number != n || std::next(it) == segments_.end()) continue;
    ::unlink(it->path.c_str());
    ::close(it->fd);
    segments_.erase(it);
    return;
  }
}

void LedgerSpool::Reject(const UsageRecord& r) {
  std::string line;
  AppendSpoolLine(line, r);
  line += '\n';
  int fd = ::open((dir_ + "/rejected.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (::write(fd, line.data(), line.size()) < 0) {
    // nothing more to do: the row was logged on stderr
  }
  ::close(fd);
}

std::optional<LedgerSpool::Orphan> LedgerSpool::ClaimOrphan() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(prefix_) || name.ends_with(".new") || name == "rejected.log" ||
        !entry.is_regular_file(ec))
      continue;
    std::string path = entry.path().string();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {  // its process is alive
      ::close(fd);
      continue;
    }
    // Gone between the listing and the lock (its owner finished it): not ours.
    if (!std::filesystem::exists(path, ec)) {
      ::close(fd);
      continue;
    }
    Orphan o{path, fd, {}};
    std::string text, line;
    char buf[1 << 16];
    ssize_t got;
    while ((got = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(got));
    size_t at = 0;
    while (at < text.size()) {
      size_t nl = text.find('\n', at);
      if (nl == std::string::npos) break;  // a torn last line: the row never was answered
      if (auto r = ParseSpoolLine(std::string_view(text).substr(at, nl - at)))
        o.rows.push_back(std::move(*r));
      at = nl + 1;
    }
    return o;
  }
  return std::nullopt;
}

void LedgerSpool::Finish(Orphan& o) {
  ::unlink(o.path.c_str());
  ::close(o.fd);
  o.fd = -1;
}

void LedgerSpool::Unclaim(Orphan& o) {
  ::close(o.fd);
  o.fd = -1;
}

}  // namespace tollgate
