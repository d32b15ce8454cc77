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
  TG_DB=$TOLLGATE_DATABASE_URL
  local sim_port
  sim_port=$(free_port $((30000 + RANDOM % 20000)))
  "$TOLLGATE_SIM_BINARY" --listen "127.0.0.1:$sim_port" "$@" >"$WORK/sim.log" 2>&1 &
  E2E_PIDS+=($!)
  export TG_SIM="http://127.0.0.1:$sim_port"
  for p in MISTRAL ANTHROPIC DEEPSEEK OLLAMA; do export "TOLLGATE_${p}_URL=$TG_SIM"; done
  export ANTHROPIC_API_KEY=sk-ant-e2e-upstream MISTRAL_API_KEY=mistral-e2e-upstream DEEPSEEK_API_KEY=sk-ds-e2e-upstream
  "$TOLLGATE_BINARY" migrate >/dev/null
  wait_http "$TG_SIM/api/tags"
}

# start_instance: one more `tollgate serve` on the current stack; sets TG_PROXY/TG_SIDE.
start_instance() {
  local proxy_port side_port
  proxy_port=$(free_port $((30000 + RANDOM % 20000)))
  side_port=$(free_port $((proxy_port + 1)))
  TOLLGATE_LISTEN="127.0.0.1:$proxy_port" TOLLGATE_ADMIN_LISTEN="127.0.0.1:$side_port" \
    "$TOLLGATE_BINARY" serve >>"$WORK/tollgate.log" 2>&1 &
  E2E_PIDS+=($!)
  TG_PROXY="http://127.0.0.1:$proxy_port"
  TG_SIDE="http://127.0.0.1:$side_port"
  wait_http "$TG_SIDE/readyz"
}

tg() { "$TOLLGATE_BINARY" "$@"; }
new_key() { tg key create "$@" | tail -1; }

WORK=$(mktemp -d /tmp/tollgate-e2e.XXXXXX)
