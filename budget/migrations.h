// Versioned schema migrations, applied in order, each once, under an advisory lock
// so that several instances starting together do not race.
#pragma once

#include "budget/pg_pool.h"

namespace tollgate {

// Applies every migration not yet applied. Returns how many ran via `applied`.
Status Migrate(PgPool& pool, int* applied);
// The highest version the code knows.
int LatestSchemaVersion();

}  // namespace tollgate
