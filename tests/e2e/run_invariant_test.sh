#!/usr/bin/env bash
# The invariant under concurrency (ctest: e2e_invariant): three proxy instances share
# one Redis and one Postgres; 300 requests from one user whose budget covers about 100
# (max_tokens given, answers as long as max_tokens), first all at once, then (another
# user) from 6 clients asking in turn, so that the instances admit against budget
# leases (gate.lease_requests) while the budget is far from spent. Each time the ledger
# total never passes the limit, every 200 has exactly one ledger row, every refusal is
# a final 402 in DeepSeek's envelope. Then each instance is stopped with SIGTERM: it exits
# cleanly and leaves no hold behind.
source "$(dirname "$0")/harness.sh"
start_stack 2
proxies=() sides=() instance_pids=()
for _ in 1 2 3; do
  start_instance
  proxies+=("$TG_PROXY")
  sides+=("$TG_SIDE")
  instance_pids+=("${E2E_PIDS[-1]}")
done
limit_usd=0.006  # 6,000,000 nanos: ~97 answers off-peak, ~48 at peak prices

# Admissions against leases so far, all instances together.
leased() {
  local sum=0 side n
  for side in "${sides[@]}"; do
    n=$(scrape "$side" | awk '/^tollgate_lease_admissions_total/ {print $2}')
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

# phase NAME CLIENTS: 300 requests of a new user from CLIENTS concurrent clients.
phase() {
  local name=$1 clients=$2
  tg user create --name "$name" --limit "$limit_usd" >/dev/null
  local key user_id
  key=$(new_key --user "$name")
  user_id=$(psql "$TG_DB" -qAt -c "SELECT id FROM users WHERE name = '$name'")
  local before
  before=$(leased)
  node "$(dirname "$0")/invariant.mjs" "$key" 300 "$clients" "${proxies[@]}" >"$WORK/$name.jsonl"
  local results="$WORK/$name.jsonl"
  ok=$(grep -c '"status":200' "$results" || true)
  refused=$(grep -c '"status":402' "$results" || true)
  other=$(grep -vcE '"status":(200|402)' "$results" || true)
  final=$(grep '"status":402' "$results" | grep -c '"retry":"false"' || true)
  native=$(grep '"status":402' "$results" | grep -c 'budget_exceeded' || true)
  # Wait (bounded) until the batched ledger writer has caught up.
  local mine="FROM usage_ledger WHERE user_id = $user_id"
  rows=0
  for _ in $(seq 1 300); do
    rows=$(psql "$TG_DB" -qAt -c "SELECT count(*) $mine")
    [ "$rows" -ge "$ok" ] && break
    sleep 0.1
  done
  total=$(psql "$TG_DB" -qAt -c "SELECT coalesce(sum(cost_nanos), 0) $mine")
  dup=$(psql "$TG_DB" -qAt -c "SELECT count(*) - count(DISTINCT request_id) $mine")
  status_spend=$(curl -s "$TG_SIDE/api/v1/budget/status" -H "Authorization: Bearer $key" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).spend_nanos))')
  on_leases=$(($(leased) - before))
  echo "$name ($clients clients): 200: $ok, 402: $refused (final: $final, native: $native), other: $other; ledger rows: $rows, total: $total nanos of 6000000, status spend: $status_spend; admitted on leases: $on_leases"
  check '[ "$other" -eq 0 ]' "$name: every answer is a 200 or a 402"
  check '[ "$ok" -gt 0 ] && [ "$refused" -gt 0 ]' "$name: the budget admits some and refuses the rest"
  check '[ "$rows" -eq "$ok" ]' "$name: every 200 has exactly one ledger row"
  check '[ "$dup" -eq 0 ]' "$name: request ids are unique"
  check '[ "$total" -le 6000000 ]' "$name: the ledger total never passes the limit"
  check '[ "$status_spend" = "$total" ]' "$name: the live counter (budget status) equals the ledger total"
  check '[ "$final" -eq "$refused" ] && [ "$native" -eq "$refused" ]' \
    "$name: refusals are final 402s in the native envelope"
}

phase at-once 300
phase in-rounds 6
check '[ "$on_leases" -gt 0 ]' "in rounds, requests are admitted against leases"

# Stopped with SIGTERM, each instance shuts down cleanly (exit 0, within 20 s) and gives
# its budget leases back: a user's few requests just before leave each instance a lease
# (held in Redis for up to a second), and no hold is left once they have stopped.
tg user create --name stopping --limit 10 >/dev/null
stop_key=$(new_key --user stopping)
for proxy in "${proxies[@]}"; do
  for _ in 1 2 3; do
    curl -s -o /dev/null "$proxy/deepseek/chat/completions" -H "Authorization: Bearer $stop_key" \
      -H 'Content-Type: application/json' \
      -d '{"model":"deepseek-flash","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
  done
done
for pid in "${instance_pids[@]}"; do
  kill -TERM "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    check false "an instance ignored SIGTERM for 20 s"
    kill -KILL "$pid"
  fi
  rc=0
  wait "$pid" || rc=$?
  check '[ "$rc" -eq 0 ]' "an instance stopped by SIGTERM exits 0 (got $rc)"
done
holds=$(redis-cli -p "$TOLLGATE_TEST_REDIS_PORT" -n 2 --scan --pattern 'tg:*:hold-sum' | wc -l)
check '[ "$holds" -eq 0 ]' "stopped instances leave no hold in Redis ($holds hold totals left)"
verdict
