// The tollgate command line: serve, migrate, user, key, budget, pricing.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "config/config.h"

namespace tollgate {

// Runs one command line; returns the process exit code. Output goes to `out`,
// one-line error reasons to `err`.
int RunCli(const std::vector<std::string>& argv, const Environment& env, std::ostream& out,
           std::ostream& err);

}  // namespace tollgate
