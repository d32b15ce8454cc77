#include "budget/migrations.h"

namespace tollgate {
namespace {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// Append only: a migration, once shipped, is never edited.
const Migration kMigrations[] = {
    {1, "initial schema", R"sql(
CREATE TABLE users (
  id           BIGSERIAL PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE CHECK (name <> ''),
  email        TEXT NOT NULL DEFAULT '',
  external_id  TEXT UNIQUE,
  role         TEXT NOT NULL CHECK (role IN ('user', 'admin')),
  disabled     BOOLEAN NOT NULL DEFAULT false,
  created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Secrets are stored only as SHA-256 hashes; prefix is the first characters for display.
CREATE TABLE api_keys (
  id           BIGSERIAL PRIMARY KEY,
  user_id      BIGINT NOT NULL REFERENCES users(id),
  key_hash     TEXT NOT NULL UNIQUE,
  prefix       TEXT NOT NULL,
  name         TEXT NOT NULL DEFAULT '',
  act_as_user  BOOLEAN NOT NULL DEFAULT false,
  expires_at   TIMESTAMPTZ,
  revoked_at   TIMESTAMPTZ,
  created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);

CREATE TABLE budget_settings (
  user_id              BIGINT PRIMARY KEY REFERENCES users(id),
  limit_nanos          BIGINT NOT NULL CHECK (limit_nanos >= 0),
  period               TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'custom')),
  custom_period_days   INT NOT NULL DEFAULT 30 CHECK (custom_period_days BETWEEN 1 AND 366),
  period_anchor        TIMESTAMPTZ NOT NULL,
  timezone             TEXT NOT NULL DEFAULT 'UTC',
  enforcement          TEXT NOT NULL CHECK (enforcement IN ('hard', 'soft', 'off')),
  yellow_pct           INT NOT NULL,
  orange_pct           INT NOT NULL,
  red_pct              INT NOT NULL,
  budget_visible       BOOLEAN NOT NULL,
  can_modify_limit     BOOLEAN NOT NULL,
  max_self_limit_nanos BIGINT CHECK (max_self_limit_nanos >= 0),
  can_reset            BOOLEAN NOT NULL,
  version              BIGINT NOT NULL DEFAULT 1,
  updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_by           TEXT NOT NULL DEFAULT '',
  CHECK (1 <= yellow_pct AND yellow_pct < orange_pct AND orange_pct < red_pct AND red_pct <= 100)
);

-- Append-only: one row per forwarded request, never updated or deleted.
CREATE TABLE usage_ledger (
  id                    BIGSERIAL PRIMARY KEY,
  request_id            TEXT NOT NULL UNIQUE,
  user_id               BIGINT NOT NULL REFERENCES users(id),
  key_id                BIGINT REFERENCES api_keys(id),
  provider              TEXT NOT NULL,
  model                 TEXT NOT NULL,
  price_id              TEXT NOT NULL DEFAULT '',
  started_at            TIMESTAMPTZ NOT NULL,
  input_tokens          BIGINT NOT NULL DEFAULT 0,
  output_tokens         BIGINT NOT NULL DEFAULT 0,
  cache_read_tokens     BIGINT NOT NULL DEFAULT 0,
  cache_write_tokens    BIGINT NOT NULL DEFAULT 0,
  cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0,
  reasoning_tokens      BIGINT NOT NULL DEFAULT 0,
  cost_nanos            BIGINT NOT NULL CHECK (cost_nanos >= 0),
  status                INT NOT NULL,
  streamed              BOOLEAN NOT NULL DEFAULT false,
  estimated             BOOLEAN NOT NULL DEFAULT false,
  latency_ms            INT NOT NULL DEFAULT 0
);
-- Per-user window sums and history read one user's recent rows only.
CREATE INDEX usage_ledger_user_time_idx ON usage_ledger (user_id, started_at DESC);
CREATE INDEX usage_ledger_time_idx ON usage_ledger (started_at);

CREATE TABLE budget_reset_log (
  id                 BIGSERIAL PRIMARY KEY,
  user_id            BIGINT NOT NULL REFERENCES users(id),
  actor              TEXT NOT NULL,
  reset_at           TIMESTAMPTZ NOT NULL,
  spend_before_nanos BIGINT NOT NULL,
  reason             TEXT NOT NULL DEFAULT ''
);
CREATE INDEX budget_reset_log_user_idx ON budget_reset_log (user_id, reset_at DESC);

CREATE TABLE settings_audit (
  id          BIGSERIAL PRIMARY KEY,
  user_id     BIGINT NOT NULL REFERENCES users(id),
  actor       TEXT NOT NULL,
  changed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  change      JSONB NOT NULL
);
CREATE INDEX settings_audit_user_idx ON settings_audit (user_id, changed_at DESC);

-- Rates in nano-dollars per million tokens.
CREATE TABLE pricing_overrides (
  id                   BIGSERIAL PRIMARY KEY,
  provider             TEXT NOT NULL,
  model                TEXT NOT NULL,
  effective_from       TIMESTAMPTZ NOT NULL,
  input_nanos_per_m    BIGINT NOT NULL CHECK (input_nanos_per_m >= 0),
  output_nanos_per_m   BIGINT NOT NULL CHECK (output_nanos_per_m >= 0),
  cache_read_nanos_per_m     BIGINT CHECK (cache_read_nanos_per_m >= 0),
  cache_write_5m_nanos_per_m BIGINT CHECK (cache_write_5m_nanos_per_m >= 0),
  cache_write_1h_nanos_per_m BIGINT CHECK (cache_write_1h_nanos_per_m >= 0),
  created_by           TEXT NOT NULL DEFAULT '',
  created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (provider, model, effective_from)
);

CREATE TABLE alert_events (
  id              BIGSERIAL PRIMARY KEY,
  user_id         BIGINT NOT NULL REFERENCES users(id),
  level           TEXT NOT NULL CHECK (level IN ('YELLOW', 'ORANGE', 'RED', 'EXCEEDED')),
  window_start    TIMESTAMPTZ NOT NULL,
  spend_nanos     BIGINT NOT NULL,
  limit_nanos     BIGINT NOT NULL,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  attempts        INT NOT NULL DEFAULT 0,
  next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  delivered_at    TIMESTAMPTZ,
  last_error      TEXT NOT NULL DEFAULT '',
  UNIQUE (user_id, window_start, level)
);
CREATE INDEX alert_events_pending_idx ON alert_events (next_attempt_at) WHERE delivered_at IS NULL;
)sql"},
    {2, "holds for the Postgres fallback gate", R"sql(
-- Used only while Redis is unreachable: the same reservation, done in SQL.
CREATE TABLE budget_holds (
  hold_id      TEXT PRIMARY KEY,
  user_id      BIGINT NOT NULL REFERENCES users(id),
  amount_nanos BIGINT NOT NULL CHECK (amount_nanos >= 0),
  expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX budget_holds_user_idx ON budget_holds (user_id, expires_at);
)sql"},
    {3, "a cheaper ledger row", R"sql(
-- Every ledger row's user and key come from rows the proxy has just read, and users and
-- keys are never deleted (they are disabled and revoked), so the foreign-key checks,
-- one lookup per key per row, guarded nothing and cost ~5 µs of Postgres per row on the
-- proxy's hot path (bench/RESULTS.md).
ALTER TABLE usage_ledger DROP CONSTRAINT IF EXISTS usage_ledger_user_id_fkey;
ALTER TABLE usage_ledger DROP CONSTRAINT IF EXISTS usage_ledger_key_id_fkey;
-- Rows arrive in time order: ascending, each goes in at the right of its user's range
-- (descending put it at the left, a dearer page split). Scans read it either way.
DROP INDEX usage_ledger_user_time_idx;
CREATE INDEX usage_ledger_user_time_idx ON usage_ledger (user_id, started_at);
-- The time index serves only whole-ledger sums over a range (the global cap's rebuild,
-- the admin's breakdown); rows arrive in time order, which is what BRIN needs, and it
-- costs next to nothing per insert.
DROP INDEX usage_ledger_time_idx;
CREATE INDEX usage_ledger_time_idx ON usage_ledger USING brin (started_at);
)sql"},
    {4, "rows name their windows; batches wait for their counters", R"sql(
-- The window a row was charged to (a reset or a change of period moves a user's window;
-- an instance may charge the old one for up to a second after): counters are sums of
-- rows by these, not by started_at. Empty for rows written before this migration.
ALTER TABLE usage_ledger ADD COLUMN window_start timestamptz;
ALTER TABLE usage_ledger ADD COLUMN global_window_start timestamptz;
-- The batch that wrote the row; its costs reach the Redis counters after it commits.
ALTER TABLE usage_ledger ADD COLUMN batch text;
-- Batches committed whose costs may not be in the counters yet (docs/ARCHITECTURE.md,
-- "Money"): a counter rebuilt from the ledger leaves their rows out, and they are
-- applied to it later, once. `deltas` is what the batch adds to which counter.
CREATE TABLE ledger_pending (
  token      text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  deltas     jsonb NOT NULL
);
)sql"},
};

}  // namespace

int LatestSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

Status Migrate(PgPool& pool, int* applied) {
  *applied = 0;
  return pool.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    // One migrator at a time across every instance; the lock ends with the transaction.
    w.exec("SELECT pg_advisory_xact_lock(7710010)");
    w.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT "
        "now())");
    int current = w.exec1("SELECT coalesce(max(version), 0) FROM schema_migrations")[0].as<int>();
    for (const Migration& m : kMigrations) {
      if (m.version <= current) continue;
      w.exec(m.sql);
      w.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                    m.name);
      ++*applied;
    }
    w.commit();
  });
}

}  // namespace tollgate
