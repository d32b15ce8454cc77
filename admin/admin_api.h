// The admin half of the budget REST API on the side port: any user's budget,
// users and keys, the reset log, prices, the overview and the CSV export. Only
// admin users' keys and the bootstrap TOLLGATE_ADMIN_TOKEN get in; everyone else
// gets 403 before anything is read.
#pragma once

#include "admin/api_support.h"

namespace tollgate {

void RegisterAdminApi(EventServer& server, const BudgetApiDependencies& deps);

// One CSV line (with "\r\n") of a ledger row for the export; text that a spreadsheet
// would run as a formula is prefixed with an apostrophe.
std::string CsvLine(const LedgerRow& row);
extern const char* const kCsvHeader;

}  // namespace tollgate
