#!/usr/bin/env bash
# The money findings of issue 23 (ctest: e2e_money), each checked against the ledger,
# the source of truth, never against the counter it checks. Three instances share a
# Postgres and a Redis of this test's own; every request is billed 1,050,000 nanos and
# reserves at least that (race.mjs).
#  1. A user no instance has seen: 300 requests at once over the three instances.
#  2. Redis killed under load and restarted empty: afterwards the counter is the ledger.
#  3. Right after that: reset, a hard $0.02 limit, 2.5 s, 300 requests at once (x3).
#  4. Redis restarted empty while admitted streams fill a hard limit: their holds come
#     back before any counter is built, so 20 more requests admit none past the limit.
#  5. An instance killed while Redis is down, its streams' rows committed but never
#     applied; Redis back empty: the counters built then hold those rows' batches.
#  6. SIGTERM while Postgres is down: every instance exits within its grace, and the
#     rows it held reach the ledger once Postgres is back (replayed by a new instance).
source "$(dirname "$0")/harness.sh"
own_servers
start_stack 0
proxies=() sides=() pids=()
for _ in 1 2 3; do
  start_instance
  proxies+=("$TG_PROXY"); sides+=("$TG_SIDE"); pids+=("${E2E_PIDS[-1]}")
done
limit=20000000  # $0.02: 19 requests of 1,050,000

user_id() { psql "$TG_DB" -qAt -c "SELECT id FROM users WHERE name = '$1'"; }
# The spend counter of the user's newest window, straight from Redis.
counter() {
  local key
  key=$(redis-cli -p "$redis_port" --scan --pattern "tg:{u:$1}:spend:*" | grep -E 'spend:[0-9]+$' |
    sort -t: -k4 -n | tail -1)
  [ -n "$key" ] && redis-cli -p "$redis_port" GET "$key" || echo missing
}
window_start() {
  local body
  for _ in $(seq 1 50); do
    body=$(curl -s "${sides[0]}/api/v1/budget/status" -H "Authorization: Bearer $1")
    case $body in *'"window_start"'*) break ;; esac
    sleep 0.1
  done
  node -e 'const j=JSON.parse(process.argv[1]); if (!j.window_start) { console.error(process.argv[1]); process.exit(1) } console.log(j.window_start)' "$body"
}
ledger_sum() { # USER_ID SINCE
  psql "$TG_DB" -qAt -c "SELECT coalesce(sum(cost_nanos), 0) FROM usage_ledger
    WHERE user_id = $1 AND started_at >= '$2'"
}
# Waits (bounded) until every answered request of RESULTS has its ledger row.
await_answered() { # RESULTS
  local ids
  ids=$(grep '"status":200' "$1" | sed 's/.*"id":"\([^"]*\)".*/\1/' | sed "s/.*/'&'/" | paste -sd,)
  [ -z "$ids" ] && { echo 0; return; }
  await_count "SELECT count(*) FROM usage_ledger WHERE request_id IN ($ids)" \
    "$(grep -c '"status":200' "$1")"
}
# Waits (bounded) until the counter stops moving and no hold is left.
settle_down() { # USER_ID
  local last="" now
  for _ in $(seq 1 100); do
    now=$(counter "$1")
    [ "$now" = "$last" ] && [ -z "$(redis-cli -p "$redis_port" GET "tg:{u:$1}:hold-sum")" ] && return
    last=$now
    sleep 0.2
  done
}

race() { # NAME USER KEY
  local name=$1 user=$2 key=$3 since results ok rows total count
  since=$(window_start "$key")
  results="$WORK/$name.jsonl"
  node "$(dirname "$0")/race.mjs" "$key" 300 300 "${proxies[@]}" >"$results"
  ok=$(grep -c '"status":200' "$results" || true)
  rows=$(await_answered "$results")
  settle_down "$user"
  total=$(ledger_sum "$user" "$since")
  count=$(counter "$user")
  echo "$name: admitted $ok, ledger rows $rows, ledger $total of $limit ($((total * 100 / limit))%), counter $count"
  check '[ "$rows" -eq "$ok" ]' "$name: every 200 has its ledger row"
  check '[ "$total" -le "$limit" ]' "$name: the ledger stays within the hard limit (I1)"
  check '[ "$count" = "$total" ]' "$name: the counter equals the ledger (I2)"
}

# 1. A user no instance has seen yet.
tg user create --name fresh --limit 0.02 >/dev/null
tg budget set --user fresh --enforcement hard >/dev/null
race unseen "$(user_id fresh)" "$(new_key --user fresh)"

# 2. Redis killed under load and restarted empty.
tg user create --name steady --limit 1000 >/dev/null
steady=$(user_id steady)
steady_key=$(new_key --user steady)
since=$(window_start "$steady_key")
node "$(dirname "$0")/load.mjs" "${proxies[0]}/deepseek/chat/completions" "$steady_key" 8 9000 >"$WORK/load.txt" &
load=$!
sleep 3; redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
sleep 2; start_redis "$WORK/redis" "$redis_port"
wait $load
ok=$(awk '$2 == 200' "$WORK/load.txt" | wc -l)
await_rows "$steady" "$ok" >/dev/null
# One more request after the dust has settled makes sure the counter exists.
curl -s -o /dev/null "${proxies[1]}/deepseek/chat/completions" -H "Authorization: Bearer $steady_key" \
  -H 'Content-Type: application/json' -d '{"model":"deepseek-flash","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
ok=$((ok + 1))
rows=$(await_rows "$steady" "$ok")
settle_down "$steady"
total=$(ledger_sum "$steady" "$since")
count=$(counter "$steady")
echo "redis restart: 200s $ok, ledger rows $rows, ledger $total, counter $count"
check '[ "$rows" -eq "$ok" ]' "redis restart: every 200 has its ledger row"
check '[ "$count" = "$total" ]' "redis restart: the counter equals the ledger afterwards (I2)"

# 3. Reset, a hard limit, then the race, three times.
tg user create --name resetting --limit 1 >/dev/null
resetting=$(user_id resetting)
reset_key=$(new_key --user resetting)
for round in 1 2 3; do
  tg budget reset --user resetting --reason "round $round" >/dev/null
  tg budget set --user resetting --limit 0.02 --enforcement hard >/dev/null
  sleep 2.5  # the settings change reaches every instance within a second
  race "reset-$round" "$resetting" "$reset_key"
done

hold_sum() { redis-cli -p "$redis_port" GET "tg:{u:$1}:hold-sum"; }
# Prints the user's held total once it stops growing (each admission takes a few ms).
await_held() { # USER_ID
  local last="" held=""
  for _ in $(seq 1 50); do
    held=$(hold_sum "$1")
    [ -n "$held" ] && [ "$held" = "$last" ] && break
    last=$held
    sleep 0.2
  done
  echo "$held"
}
# A user's window after the streams of STREAMS and the requests of AFTER, against the
# ledger: every 200 has its row (I3), the ledger is within the $0.01 limit (I1), and
# the counter is the ledger once quiet (I2).
check_window() { # NAME USER SINCE STREAMS AFTER
  local name=$1 user=$2 since=$3 ok rows total count
  cat "$4" "$5" >"$WORK/$name.all.jsonl"
  ok=$(grep -c '"status":200' "$WORK/$name.all.jsonl" || true)
  rows=$(await_answered "$WORK/$name.all.jsonl")
  settle_down "$user"
  total=$(ledger_sum "$user" "$since")
  count=$(counter "$user")
  echo "$name: streams $(grep -c '"status":200' "$4"), after $(grep -c '"status":200' "$5" || true), ledger $total of 10000000, counter $count"
  check '[ "$rows" -eq "$ok" ]' "$name: every 200 has its ledger row"
  check '[ "$total" -le 10000000 ]' "$name: the ledger stays within the hard limit (I1)"
  check '[ "$count" = "$total" ]' "$name: the counter equals the ledger (I2)"
}

# Creates user NAME with a hard $0.01 limit; sets U (its id), K (a key) and SINCE.
hard_user() { # NAME
  tg user create --name "$1" --limit 0.01 >/dev/null
  tg budget set --user "$1" --enforcement hard >/dev/null
  U=$(user_id "$1") K=$(new_key --user "$1")
  SINCE=$(window_start "$K")
}

# 4. Redis restarted empty while streams are in flight.
hard_user inflight
RACE_STREAM_MS=9000 node "$(dirname "$0")/race.mjs" "$K" 12 12 "${proxies[@]}" >"$WORK/streams.jsonl" &
streams=$!
held=$(await_held "$U")
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
start_redis "$WORK/redis" "$redis_port"
# Every instance places its live holds in the new dataset (within its quarantine).
back=""
for _ in $(seq 1 50); do
  back=$(hold_sum "$U")
  [ "$back" = "$held" ] && break
  sleep 0.1
done
echo "redis restart mid-stream: held $held before, $back after"
check '[ -n "$held" ] && [ "$back" = "$held" ]' "the streams' holds are back after Redis restarted empty"
node "$(dirname "$0")/race.mjs" "$K" 20 20 "${proxies[@]}" >"$WORK/after.jsonl"
wait $streams
check_window "redis restart mid-stream" "$U" "$SINCE" "$WORK/streams.jsonl" "$WORK/after.jsonl"

# 5. An instance killed while Redis is down, then Redis back empty.
hard_user orphaned
RACE_STREAM_MS=3000 node "$(dirname "$0")/race.mjs" "$K" 12 12 "${proxies[0]}" >"$WORK/orphaned.jsonl" &
streams=$!
await_held "$U" >/dev/null
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
wait $streams
await_answered "$WORK/orphaned.jsonl" >/dev/null  # committed, not applied: Redis is away
kill -KILL "${pids[0]}"
start_redis "$WORK/redis" "$redis_port"
node "$(dirname "$0")/race.mjs" "$K" 20 20 "${proxies[1]}" "${proxies[2]}" >"$WORK/after-kill.jsonl"
start_instance  # in place of the killed one
proxies[0]=$TG_PROXY pids[0]=${E2E_PIDS[-1]}
check_window "killed while redis was down" "$U" "$SINCE" "$WORK/orphaned.jsonl" \
  "$WORK/after-kill.jsonl"

# 6. SIGTERM while Postgres is down.
tg user create --name outage --limit 1000 >/dev/null
outage_key=$(new_key --user outage)
for proxy in "${proxies[@]}"; do  # cache the key and settings on every instance
  curl -s -o /dev/null "$proxy/deepseek/chat/completions" -H "Authorization: Bearer $outage_key" \
    -H 'Content-Type: application/json' -d '{"model":"deepseek-flash","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
done
stop_postgres "$WORK/pg"
node "$(dirname "$0")/load.mjs" "${proxies[0]}/deepseek/chat/completions" "$outage_key" 4 1500 >"$WORK/outage.txt"
served=$(awk '$2 == 200' "$WORK/outage.txt" | wc -l)
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    check false "an instance stopped during a Postgres outage still runs after 30 s"
    kill -KILL "$pid"
  fi
done
PG_FSYNC=off start_postgres "$WORK/pg" "$pg_port"
start_instance  # replays what the stopped instances left in the spool
want=$((served + 3))
rows=$(await_rows "$(user_id outage)" "$want")
echo "postgres outage: served $served while down, ledger rows $rows of $want"
check '[ "$served" -gt 0 ]' "requests are served while Postgres is down"
check '[ "$rows" -eq "$want" ]' "rows queued during the outage reach the ledger after a stop and a restart"
verdict
