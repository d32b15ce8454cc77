// Reading JSON-with-comments files and checking their fields strictly, so that a
// misspelt key stops start-up with its name instead of being ignored.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "config/status.h"

namespace tollgate {

// Reads a file of JSON with // and /* */ comments.
Result<nlohmann::json> ReadJsoncFile(const std::string& path);
// The same for text already read; errors read "<where>: not valid JSON: ...".
Result<nlohmann::json> ParseJsonc(std::string_view text, const std::string& where);

// Checks that `object` is an object holding only `allowed` keys; `where` names it.
Status CheckKeys(const nlohmann::json& object, const std::string& where,
                 const std::set<std::string>& allowed);

// "field: reason" — the one shape of a configuration error.
Status FieldError(const std::string& field, const std::string& reason);

}  // namespace tollgate
