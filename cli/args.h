// Command-line flags: "--name value" or "--flag". Unknown flags are errors.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/status.h"

namespace tollgate {

class Args {
 public:
  // `valued` take a value, `switches` do not. "--help" is always accepted.
  static Result<Args> Parse(const std::vector<std::string>& argv,
                            const std::set<std::string>& valued,
                            const std::set<std::string>& switches);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace tollgate
