#!/usr/bin/env bash
# Money chaos (ctest: e2e_chaos). Three instances on a Postgres and a Redis of this
# test's own; 50 users with random limits, periods and enforcement; concurrent streaming
# and non-streaming traffic through all four providers of tollgate-sim (chaos.mjs), with
# random resets and limit changes; meanwhile Redis is killed and restarted empty, Postgres
# stopped for 10 s, and one instance SIGKILLed mid-stream (its spool is replayed by the
# others; its holds lapse). No reconciler runs. Then, for every user, against the ledger:
#   I1  a hard limit's window never holds more than the highest limit it had,
#   I2  every spend counter in Redis equals the sum of its window's ledger rows,
#   I3  every answer received whole has exactly one ledger row.
# TOLLGATE_CHAOS_SEED picks the run (users, traffic, admin actions); the default is fixed.
source "$(dirname "$0")/harness.sh"
own_servers
seed=${TOLLGATE_CHAOS_SEED:-20261206}
RANDOM=$seed
export TOLLGATE_ADMIN_TOKEN="chaos-admin-$RANDOM$RANDOM"
start_stack 0
# No reconciler: the invariants must hold without the safety net.
sed 's/"reconcile_seconds": [0-9]*/"reconcile_seconds": 0/' "$TOP/config/tollgate.json" \
  >"$WORK/tollgate.json"
export TOLLGATE_CONFIG="$WORK/tollgate.json" TOLLGATE_PRICING_FILE="$TOP/config/pricing.json"
pids=()
instances="$WORK/instances.txt"
: >"$instances"
for _ in 1 2 3; do
  start_instance
  pids+=("${E2E_PIDS[-1]}")
  echo "$TG_PROXY $TG_SIDE" >>"$instances"
done

# 50 users: limits of $0.003-$0.050, any period, one in five soft.
periods=(daily weekly monthly custom)
zones=(UTC Europe/Paris America/New_York Asia/Kolkata Pacific/Auckland)
echo "[" >"$WORK/users.json"
for i in $(seq 1 50); do
  limit_nanos=$(((3 + RANDOM % 48) * 1000000))
  tg user create --name "chaos$i" --limit "$(printf '0.%09d' "$limit_nanos")" >/dev/null
  enforcement=hard
  [ $((i % 5)) -eq 0 ] && enforcement=soft
  tg budget set --user "chaos$i" --period "${periods[RANDOM % 4]}" --custom-days $((1 + RANDOM % 30)) \
    --timezone "${zones[RANDOM % 5]}" --enforcement "$enforcement" >/dev/null
  id=$(psql "$TG_DB" -qAt -c "SELECT id FROM users WHERE name = 'chaos$i'")
  key=$(new_key --user "chaos$i")
  [ "$i" -gt 1 ] && echo "," >>"$WORK/users.json"
  echo "{\"id\":$id,\"key\":\"$key\",\"limit_nanos\":$limit_nanos,\"enforcement\":\"$enforcement\"}" \
    >>"$WORK/users.json"
done
echo "]" >>"$WORK/users.json"

node "$(dirname "$0")/chaos.mjs" "$seed" 55 "$WORK/users.json" "$instances" "$WORK" >"$WORK/traffic.txt" &
traffic=$!
sleep 10; stop_redis "$redis_port"                              # t=10 s: Redis killed
sleep 3; start_redis "$WORK/redis" "$redis_port"                # t=13 s: back, empty
sleep 9; stop_postgres "$WORK/pg"                               # t=22 s: Postgres stopped
sleep 10; PG_FSYNC=off start_postgres "$WORK/pg" "$pg_port"     # t=32 s: back
sleep 10                                                        # t=42 s: one instance killed
sed -i '3d' "$instances"
kill -KILL "${pids[2]}"
wait $traffic
echo "traffic: $(cat "$WORK/traffic.txt")"

# Quiet: every answer's row written, every batch applied (the killed instance's spool
# replayed and its committed batches applied by the others), every counter built.
psql "$TG_DB" -qAt -c "CREATE TABLE chaos_answered (request_id text)"
psql "$TG_DB" -qAt -c "\copy chaos_answered FROM '$WORK/answered.txt'"
answered=$(psql "$TG_DB" -qAt -c "SELECT count(*) FROM chaos_answered")
found=$(await_count "SELECT count(DISTINCT a.request_id) FROM chaos_answered a
  JOIN usage_ledger l USING (request_id)" "$answered")
pending=$(await_count "SELECT 1000000 - count(*) FROM ledger_pending" 1000000)
while read -r proxy side; do
  for key in $(node -e 'for (const u of require(process.argv[1])) console.log(u.key)' "$WORK/users.json"); do
    curl -s -o /dev/null "$side/api/v1/budget/status" -H "Authorization: Bearer $key"
  done
  break
done <"$instances"

# I3: every answer whole has exactly one row.
dup=$(psql "$TG_DB" -qAt -c "SELECT count(*) FROM (SELECT request_id FROM usage_ledger
  GROUP BY 1 HAVING count(*) > 1) d")
echo "I3: $answered answers received whole, $found with their row; duplicate ids: $dup;" \
  "batches still pending: $((1000000 - pending))"
check '[ "$answered" -gt 500 ]' "the run answered enough requests to mean something"
check '[ "$found" -eq "$answered" ]' "I3: every answer received whole has its ledger row"
check '[ "$dup" -eq 0 ]' "I3: no request id twice"

# I2: every spend counter equals the sum of its window's rows.
: >"$WORK/counters.txt"
for key in $(redis-cli -p "$redis_port" --scan --pattern 'tg:{u:*}:spend:*'); do
  user=${key#tg:\{u:}
  user=${user%%\}*}
  echo "$user ${key##*:} $(redis-cli -p "$redis_port" GET "$key")" >>"$WORK/counters.txt"
done
psql "$TG_DB" -qAt -c "CREATE TABLE chaos_counters (user_id bigint, window_us bigint, counter bigint)"
psql "$TG_DB" -qAt -c "\copy chaos_counters FROM '$WORK/counters.txt' DELIMITER ' '"
psql "$TG_DB" -qAt -F ' ' -c "SELECT c.user_id, c.window_us, c.counter, coalesce(sum(l.cost_nanos), 0)
  FROM chaos_counters c LEFT JOIN usage_ledger l ON l.user_id = c.user_id
   AND l.window_start = timestamptz 'epoch' + c.window_us * interval '1 microsecond'
  GROUP BY 1, 2, 3 ORDER BY 1, 2" >"$WORK/i2.txt"
counters=$(wc -l <"$WORK/i2.txt")
drift=$(awk '$3 != $4' "$WORK/i2.txt")
echo "I2: $counters counters compared with the ledger; different: $(echo -n "$drift" | grep -c . || true)"
[ -n "$drift" ] && echo "$drift" | head -20
check '[ "$counters" -ge 50 ]' "I2: every user has a counter to compare"
check '[ -z "$drift" ]' "I2: every counter equals its ledger rows"
tg audit >"$WORK/audit.txt" || true
check '! grep -q DIFFERENT "$WORK/audit.txt"' "I2: tollgate audit finds every current window's counter equal"

# I1: no window of a hard limit holds more than the highest limit it had.
psql "$TG_DB" -qAt -c "CREATE TABLE chaos_limits (user_id bigint, limit_nanos bigint)"
psql "$TG_DB" -qAt -c "\copy chaos_limits FROM '$WORK/limits.txt' DELIMITER ' '"
node -e 'for (const u of require(process.argv[1])) if (u.enforcement === "hard") console.log(u.id)' \
  "$WORK/users.json" >"$WORK/hard.txt"
psql "$TG_DB" -qAt -c "CREATE TABLE chaos_hard (user_id bigint)"
psql "$TG_DB" -qAt -c "\copy chaos_hard FROM '$WORK/hard.txt'"
psql "$TG_DB" -qAt -F ' ' -c "SELECT l.user_id, l.window_start, sum(l.cost_nanos) AS spent, m.top
  FROM usage_ledger l JOIN chaos_hard h USING (user_id)
  JOIN (SELECT user_id, max(limit_nanos) AS top FROM chaos_limits GROUP BY 1) m USING (user_id)
  GROUP BY l.user_id, l.window_start, m.top ORDER BY 1, 2" >"$WORK/i1.txt"
over=$(awk '$(NF-1) > $NF' "$WORK/i1.txt")
at_limit=$(awk '$(NF-1) * 10 >= $NF * 8' "$WORK/i1.txt" | wc -l)
echo "I1: $(wc -l <"$WORK/i1.txt") windows of hard limits, $at_limit of them at 80 % or more;" \
  "over: $(echo -n "$over" | grep -c . || true)"
[ -n "$over" ] && echo "$over" | head -20
check '[ "$at_limit" -ge 5 ]' "I1: the traffic drove several windows to their limit"
check '[ -z "$over" ]' "I1: no hard limit's window holds more than its limit"
verdict
