#!/usr/bin/env bash
# The invariant under concurrency (ctest: e2e_invariant): three proxy instances share
# one Redis and one Postgres; 300 concurrent requests from one user whose budget
# covers about 100 (max_tokens given, answers as long as max_tokens). The ledger total
# never passes the limit, every 200 has exactly one ledger row, every refusal is a
# final 402 in DeepSeek's envelope.
source "$(dirname "$0")/harness.sh"
start_stack 2
proxies=()
for _ in 1 2 3; do
  start_instance
  proxies+=("$TG_PROXY")
done
limit_usd=0.006  # 6,000,000 nanos: ~97 answers off-peak, ~48 at peak prices
tg user create --name invariant --limit "$limit_usd" >/dev/null
key=$(new_key --user invariant)

node "$(dirname "$0")/invariant.mjs" "$key" 300 "${proxies[@]}" >"$WORK/results.jsonl"
ok=$(grep -c '"status":200' "$WORK/results.jsonl" || true)
refused=$(grep -c '"status":402' "$WORK/results.jsonl" || true)
other=$(grep -vcE '"status":(200|402)' "$WORK/results.jsonl" || true)
final=$(grep '"status":402' "$WORK/results.jsonl" | grep -c '"retry":"false"' || true)
native=$(grep '"status":402' "$WORK/results.jsonl" | grep -c 'budget_exceeded' || true)

# Wait (bounded) until the batched ledger writer has caught up.
rows=0
for _ in $(seq 1 300); do
  rows=$(psql "$TG_DB" -qAt -c "SELECT count(*) FROM usage_ledger")
  [ "$rows" -ge "$ok" ] && break
  sleep 0.1
done
total=$(psql "$TG_DB" -qAt -c "SELECT coalesce(sum(cost_nanos), 0) FROM usage_ledger")
dup=$(psql "$TG_DB" -qAt -c "SELECT count(*) - count(DISTINCT request_id) FROM usage_ledger")

status_spend=$(curl -s "$TG_SIDE/api/v1/budget/status" -H "Authorization: Bearer $key" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).spend_nanos))')

echo "200: $ok, 402: $refused (final: $final, native: $native), other: $other; ledger rows: $rows, total: $total nanos of 6000000, status spend: $status_spend"
check '[ "$other" -eq 0 ]' "every answer is a 200 or a 402"
check '[ "$ok" -gt 0 ] && [ "$refused" -gt 0 ]' "the budget admits some and refuses the rest"
check '[ "$rows" -eq "$ok" ]' "every 200 has exactly one ledger row"
check '[ "$dup" -eq 0 ]' "request ids are unique"
check '[ "$total" -le 6000000 ]' "the ledger total never passes the limit"
check '[ "$status_spend" = "$total" ]' "the live counter (budget status) equals the ledger total"
check '[ "$final" -eq "$refused" ] && [ "$native" -eq "$refused" ]' "refusals are final 402s in the native envelope"
verdict
