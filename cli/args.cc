#include "cli/args.h"

namespace tollgate {

Result<Args> Args::Parse(const std::vector<std::string>& argv, const std::set<std::string>& valued,
                         const std::set<std::string>& switches) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      a.positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (name == "help" || switches.count(name)) {
      if (inline_value) return Status::Invalid("--" + name + " takes no value");
      a.values_[name] = "";
    } else if (valued.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) return Status::Invalid("--" + name + " needs a value");
        value = argv[++i];
      }
      a.values_[name] = value;
    } else {
      return Status::Invalid("unknown option --" + name);
    }
  }
  return a;
}

std::optional<std::string> Args::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

}  // namespace tollgate
