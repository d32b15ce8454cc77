#!/usr/bin/env bash
# Faults under load (ctest: e2e_faults), with a Postgres and a Redis of this test's own:
# Redis stopped mid-run (the gate falls back to Postgres) and restarted empty (counters
# rebuilt from the ledger); then Postgres stopped for 20 s (served from the last good
# settings, ledger rows queued) and started again. Nothing is lost: every 200 ends in
# exactly one ledger row.
source "$(dirname "$0")/harness.sh"
own_servers
start_stack 0
start_instance
tg user create --name steady --limit 100 >/dev/null
key=$(new_key --user steady)

node "$(dirname "$0")/load.mjs" "$TG_PROXY/deepseek/chat/completions" "$key" 4 30000 >"$WORK/load.txt" &
load=$!
sleep 2; stop_redis "$redis_port"                                  # t=2 s: Redis gone
sleep 3; start_redis "$WORK/redis" "$redis_port"                   # t=5 s: back, empty
sleep 3; stop_postgres "$WORK/pg"                                  # t=8 s: Postgres gone
sleep 20; PG_FSYNC=off start_postgres "$WORK/pg" "$pg_port"        # t=28 s: back
wait $load

ok=$(awk '$2 == 200' "$WORK/load.txt" | wc -l)
in_redis_outage=$(awk '$2 == 200 && $1 > 2500 && $1 < 4500' "$WORK/load.txt" | wc -l)
in_pg_outage=$(awk '$2 == 200 && $1 > 9000 && $1 < 27000' "$WORK/load.txt" | wc -l)
others=$(awk '$2 != 200 {print $2}' "$WORK/load.txt" | sort | uniq -c | tr '\n' ' ')
rows=0
for _ in $(seq 1 600); do  # the writer retries with back-off up to 5 s
  rows=$(psql "$TG_DB" -qAt -c "SELECT count(*) FROM usage_ledger" 2>/dev/null || echo 0)
  [ "$rows" -ge "$ok" ] && break
  sleep 0.1
done
dup=$(psql "$TG_DB" -qAt -c "SELECT count(*) - count(DISTINCT request_id) FROM usage_ledger")
echo "200s: $ok (during the Redis outage: $in_redis_outage, during the Postgres outage: $in_pg_outage);" \
     "other answers: ${others:-none}; ledger rows: $rows"
check '[ "$in_redis_outage" -gt 0 ]' "requests are served while Redis is down (Postgres fallback)"
check '[ "$in_pg_outage" -gt 0 ]' "requests are served while Postgres is down"
check '[ "$rows" -eq "$ok" ]' "every 200 has exactly one ledger row once Postgres is back"
check '[ "$dup" -eq 0 ]' "request ids are unique"
verdict
