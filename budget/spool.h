// The ledger's spool: every usage row is appended to a file here before the request's
// answer leaves, and the file goes once all its rows are in Postgres. So a row outlives
// the process (SIGKILL included: the kernel keeps what was written; fsynced within a
// second against a machine's crash), a Postgres outage costs disk rather than memory,
// and a stop never waits for Postgres. Files of a process that has gone are replayed by
// the next one to start on the directory (or by any running one, every few seconds):
// a live process holds a lock (flock) on each of its files.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/status.h"

namespace tollgate {

struct UsageRecord;

// Text as COPY's text format holds it: backslash, tab, newline and carriage return
// escaped, NUL (which Postgres text cannot hold) dropped.
void AppendCopyText(std::string& out, std::string_view v);
// One row as a line (no newline): tab-separated fields, text escaped as in COPY.
void AppendSpoolLine(std::string& out, const UsageRecord& r);
// The row of a line this version or an earlier one (JSON) wrote; nullopt for a torn one.
std::optional<UsageRecord> ParseSpoolLine(std::string_view line);

class LedgerSpool {
 public:
  // Segments are rotated past this size, so committed rows free their disk.
  static constexpr size_t kSegmentBytes = 8 << 20;

  explicit LedgerSpool(std::string dir);
  ~LedgerSpool();
  LedgerSpool(const LedgerSpool&) = delete;
  LedgerSpool& operator=(const LedgerSpool&) = delete;

  // Thread-safe. Writes the row and returns the number of the segment holding it
  // (segments count up from 1), or an error (disk full...): the row is not durable.
  Result<uint64_t> Append(const UsageRecord& r);
  // Starts a new segment; returns the number of the one closed.
  uint64_t Rotate();
  // Flushes what was written to the disk (fdatasync); cheap when nothing was.
  void Sync();
  // Deletes the closed segments numbered below `first_needed`.
  void Release(uint64_t first_needed);
  // Deletes every segment, the open one included (everything is in Postgres).
  void ReleaseAll();
  // The rows of closed segment `n` (a spill), to be written; then Drop(n).
  std::vector<UsageRecord> Read(uint64_t n);
  void Drop(uint64_t n);

  // Keeps a row Postgres refused in rejected.log (never replayed), for a person to read.
  void Reject(const UsageRecord& r);

  // A file left by a process that has gone, claimed (locked) by this one.
  struct Orphan {
    std::string path;
    int fd = -1;
    std::vector<UsageRecord> rows;
  };
  std::optional<Orphan> ClaimOrphan();
  void Finish(Orphan& o);  // deletes it: its rows are in Postgres
  void Unclaim(Orphan& o);  // leaves it for later

  const std::string& dir() const { return dir_; }

 private:
  struct Segment {
    uint64_t number;
    std::string path;
    int fd;
  };
  bool OpenSegment();  // mu_ held
  std::string PathOf(uint64_t n) const;

  const std::string dir_;
  const std::string prefix_;  // "ledger-<pid>-<random>-"
  std::mutex mu_;
  std::vector<Segment> segments_;  // oldest first; the last one is open for appends
  size_t open_bytes_ = 0;
  bool dirty_ = false;
  uint64_t next_ = 1;
};

}  // namespace tollgate
