#include "config/jsonc.h"

#include <fstream>
#include <sstream>

namespace tollgate {

Result<nlohmann::json> ReadJsoncFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path + ": cannot open file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseJsonc(buffer.str(), path);
}

Result<nlohmann::json> ParseJsonc(std::string_view text, const std::string& where) {
  try {
    return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/true,
                                 /*ignore_comments=*/true);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range: 1e999
    return Status::Invalid(where + ": not valid JSON: " + e.what());
  }
}

Status CheckKeys(const nlohmann::json& object, const std::string& where,
                 const std::set<std::string>& allowed) {
  if (!object.is_object())
    return FieldError(where.empty() ? "(top level)" : where, "must be an object");
  for (const auto& [key, value] : object.items()) {
    if (!allowed.count(key)) {
      return FieldError(where.empty() ? key : where + "." + key, "unknown field");
    }
  }
  return Status::Ok();
}

Status FieldError(const std::string& field, const std::string& reason) {
  return Status::Invalid(field + ": " + reason);
}

}  // namespace tollgate
