#include "net/boundary.h"

#include <cstdio>
#include <string>

#include "config/text.h"

namespace tollgate {

void Boundary::Report(std::string_view where, std::string_view what) const noexcept {
  if (metrics_ != nullptr) metrics_->Inc(Counter::kInternalErrors);
  // An exception's text may quote a caller's bytes (nlohmann's "last read: ..."): made
  // valid UTF-8 and cut short, then written in one call so that lines do not interleave.
  try {
    std::string line = "tollgate: internal error in " + std::string(where) + ": " +
                       ValidUtf8(what.substr(0, 300)) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
  } catch (...) {
    std::fputs("tollgate: internal error (and no memory to say more)\n", stderr);
  }
}

}  // namespace tollgate
