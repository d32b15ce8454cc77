# Starts a real stack for end-to-end tests: a fresh database, tollgate-sim, and
# `tollgate serve`, all on free ports. Source it, then call start_stack REDIS_DB.
# Needs TOLLGATE_BINARY, TOLLGATE_SIM_BINARY, TOLLGATE_SOURCE_DIR,
# TOLLGATE_TEST_DATABASE_URL, TOLLGATE_TEST_REDIS_PORT (scripts/test sets them).
set -euo pipefail
TOP=$TOLLGATE_SOURCE_DIR
source "$TOP/scripts/lib.sh"

E2E_PIDS=()
stop_stack() {
  for pid in "${E2E_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${E2E_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_stack EXIT

wait_http() { # wait_http URL: until it answers 200 (a readiness check, bounded)
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.05
  done
  die "$1 did not become ready"
}

# start_stack REDIS_DB [SIM_ARGS...]: exports TG_PROXY, TG_SIDE, TG_DB, TG_SIM and
# tg() (the CLI against this stack).
start_stack() {
  local redis_db=$1
  shift
  local admin=$TOLLGATE_TEST_DATABASE_URL name="tg_e2e_$(date +%s%N | tail -c 9)$RANDOM"
  psql "$admin" -qAt -c "CREATE DATABASE $name" >/dev/null
  export TOLLGATE_DATABASE_URL="${admin%/*}/$name"
  export TOLLGATE_REDIS_URL="redis://127.0.0.1:$TOLLGATE_TEST_REDIS_PORT/$redis_db"
  redis-cli -p "$TOLLGATE_TEST_REDIS_PORT" -n "$redis_db" flushdb >/dev/null
  export TOLLGATE_CONFIG="$TOP/config/tollgate.json"
  # /metrics answers this bearer token (or an admin's key) only.
  export TOLLGATE_METRICS_TOKEN="e2e-metrics-$RANDOM$RANDOM"
  TG_DB=$TOLLGATE_DATABASE_URL
  "$TOLLGATE_SIM_BINARY" --listen 127.0.0.1:0 "$@" >"$WORK/sim.log" 2>&1 &
  E2E_PIDS+=($!)
  export TG_SIM="http://$(bound_address "$WORK/sim.log" 'listening on ')"
  for p in MISTRAL ANTHROPIC DEEPSEEK OLLAMA; do export "TOLLGATE_${p}_URL=$TG_SIM"; done
  export ANTHROPIC_API_KEY=sk-ant-e2e-upstream MISTRAL_API_KEY=mistral-e2e-upstream DEEPSEEK_API_KEY=sk-ds-e2e-upstream
  "$TOLLGATE_BINARY" migrate >/dev/null
  wait_http "$TG_SIM/api/tags"
}

# bound_address LOG PREFIX: the host:port a process printed after PREFIX once it
# bound port 0 (a readiness check, bounded).
bound_address() {
  for _ in $(seq 1 200); do
    local line
    line=$(grep -o "$2[0-9.]*:[0-9]*" "$1" 2>/dev/null | head -1)
    [ -n "$line" ] && { echo "${line#"$2"}"; return 0; }
    sleep 0.05
  done
  cat "$1" >&2
  die "no address in $1"
}

# start_instance: one more `tollgate serve` on the current stack (OS-assigned ports,
# a small worker pool); sets TG_PROXY/TG_SIDE. Instances run in $WORK, so their ledger
# spool (the default, ./tollgate-spool) is this test's own.
start_instance() {
  local log="$WORK/tollgate.$RANDOM.log"
  (cd "$WORK" && TOLLGATE_LISTEN=127.0.0.1:0 TOLLGATE_ADMIN_LISTEN=127.0.0.1:0 \
    exec "$TOLLGATE_BINARY" serve) >"$log" 2>&1 &
  E2E_PIDS+=($!)
  TG_PROXY="http://$(bound_address "$log" 'proxy on ')"
  TG_SIDE="http://$(bound_address "$log" 'side port on ')"
  wait_http "$TG_SIDE/readyz"
}

tg() { "$TOLLGATE_BINARY" "$@"; }
# scrape SIDE_URL: the instance's /metrics text.
scrape() { curl -s "$1/metrics" -H "Authorization: Bearer $TOLLGATE_METRICS_TOKEN"; }

# own_servers: a Postgres and a Redis of this test's own (it stops or kills them);
# sets pg_port and redis_port, and points start_stack at them.
own_servers() {
  chmod 755 "$WORK"
  pg_port=$(free_port $((27000 + RANDOM % 3000)))
  redis_port=$(free_port $((24000 + RANDOM % 3000)))
  PG_FSYNC=off start_postgres "$WORK/pg" "$pg_port"
  start_redis "$WORK/redis" "$redis_port"
  trap 'stop_stack; stop_postgres "$WORK/pg"; stop_redis "$redis_port"' EXIT
  export TOLLGATE_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  export TOLLGATE_TEST_REDIS_PORT=$redis_port
}

# await_count SQL N: waits (bounded) until the count SQL gives reaches N; prints it.
await_count() {
  local got=0
  for _ in $(seq 1 300); do
    got=$(psql "$TG_DB" -qAt -c "$1")
    [ "$got" -ge "$2" ] && break
    sleep 0.1
  done
  echo "$got"
}
# await_rows USER_ID N: until the user has N ledger rows.
await_rows() { await_count "SELECT count(*) FROM usage_ledger WHERE user_id = $1" "$2"; }

# check CONDITION WHAT: records a failed expectation; verdict prints the closing line
# ctest-readers understand and exits with the result.
E2E_FAILED=0
check() { if ! eval "$1"; then echo "FAILED: $2"; E2E_FAILED=1; fi; }
verdict() {
  if [ "$E2E_FAILED" -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
  exit "$E2E_FAILED"
}
new_key() { tg key create "$@" | tail -1; }

WORK=$(mktemp -d /tmp/tollgate-e2e.XXXXXX)
