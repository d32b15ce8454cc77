#!/usr/bin/env bash
# The streams benchmark's client (ctest: e2e_bench_streams): bench/run trusts its counts
# and times, so here it runs against tollgate-sim directly and through `tollgate serve`,
# interleaved as bench/run runs it, and is checked against what the sim and the ledger
# saw: every stream completed, one ledger row per stream through tollgate, times to
# first byte measured, refused streams counted as errors.
source "$(dirname "$0")/harness.sh"
start_stack 5
start_instance
tg user create --name bench-client --limit 100 >/dev/null
key=$(new_key --user bench-client)
client=$TOLLGATE_BENCH_STREAMS_BINARY
user_id=$(psql "$TG_DB" -qAt -c "SELECT id FROM users WHERE name = 'bench-client'")

# 40 streams, one in two direct and one in two through tollgate, 5 tokens 10 ms apart.
out=$("$client" "$TG_SIM/chat/completions,$TG_PROXY/deepseek/chat/completions" "none,$key" 40 5 10 40)
echo "$out"
field() { # field TARGET NAME
  echo "$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
    const l=s.trim().split("\n").map(JSON.parse).find(x=>x.target===Number(process.argv[1]));
    console.log(l[process.argv[2]])})' "$1" "$2"
}
check '[ "$(field 0 streams)" = 20 ] && [ "$(field 1 streams)" = 20 ]' "stream i goes to target i % 2"
check '[ "$(field 0 completed)" = 20 ] && [ "$(field 0 errors)" = 0 ]' "every direct stream completes"
check '[ "$(field 1 completed)" = 20 ] && [ "$(field 1 errors)" = 0 ]' "every stream through tollgate completes"
rows=0
for _ in $(seq 1 100); do
  rows=$(psql "$TG_DB" -qAt -c "SELECT count(*) FROM usage_ledger WHERE user_id = $user_id AND streamed")
  [ "$rows" -ge 20 ] && break
  sleep 0.1
done
check '[ "$rows" = 20 ]' "one ledger row per stream through tollgate (got $rows)"
check 'node -e "process.exit(0 < $(field 1 ttfb_p50_ms) && $(field 1 ttfb_p50_ms) <= $(field 1 ttfb_p99_ms) ? 0 : 1)"' \
  "times to first byte are measured (p50 > 0, p99 >= p50)"

# A refused stream is an error, not a completion.
out=$("$client" "$TG_PROXY/deepseek/chat/completions" "tg-not-a-key" 3 5 10 0)
echo "$out"
check '[ "$(echo "$out" | grep -c "\"errors\":3")" = 1 ]' "refused streams (401) count as errors"
check '[ "$(echo "$out" | grep -c "\"completed\":0")" = 1 ]' "refused streams do not count as completed"
verdict
