// Budget settings as JSON on the side port: how they are shown, and how a change
// (a partial object) is checked and applied, by an admin or by the user themself.
#pragma once

#include <nlohmann/json.hpp>

#include "budget/directory.h"

namespace tollgate {

nlohmann::json SettingsToJson(const BudgetSettings& s);

enum class Editor {
  kAdmin,  // may change every field
  kSelf,   // the user: the limit when can_modify_limit (up to max_self_limit), thresholds
};

// Applies the fields present in `change` to `s`. Unknown fields, wrong types and
// broken rules are kInvalid "field: rule"; a field the editor may not change is
// kForbidden. `s` is left untouched unless everything is valid.
Status ApplySettingsChange(const nlohmann::json& change, Editor editor, BudgetSettings* s);

// Fields the user may change themself now, and why the others are locked.
nlohmann::json SelfEditable(const BudgetSettings& s);

}  // namespace tollgate
