#!/usr/bin/env bash
# The status page and the admin page in a real browser (ctest: e2e_pages): Debian's
# chromium driven by playwright-core, against a real tollgate, Postgres, Redis and
# tollgate-sim. Real proxied requests first, so the pages have real numbers to show.
# Screenshots go to $TOLLGATE_ARTIFACTS_DIR/pages (default: build/test-artifacts).
source "$(dirname "$0")/harness.sh"
[ -x /usr/bin/chromium ] || die "chromium is missing: scripts/test installs it"
start_stack 7
start_instance
tg user create --name alice --email alice@example.com --external-id app-alice --limit 1 >/dev/null
tg user create --name bob --email bob@example.com --limit 1 >/dev/null
tg user create --name root --role admin >/dev/null
export ALICE_KEY=$(new_key --user alice) BOB_KEY=$(new_key --user bob) ADMIN_KEY=$(new_key --user root)

# Real requests through the proxy: three to Mistral and one to DeepSeek, as Alice.
for model in mistral-small-latest mistral-small-latest mistral-large-latest; do
  curl -sf -o /dev/null "$TG_PROXY/mistral/v1/chat/completions" -H "Authorization: Bearer $ALICE_KEY" \
    -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}],\"max_tokens\":40}" ||
    die "proxied request failed"
done
curl -sf -o /dev/null "$TG_PROXY/deepseek/chat/completions" -H "Authorization: Bearer $ALICE_KEY" \
  -H 'Content-Type: application/json' -H 'x-sim-output-tokens: 300' \
  -d '{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}]}' || die "proxied request failed"
# Wait (bounded) for the batched ledger writer, then take the truth from Postgres.
for _ in $(seq 1 100); do
  [ "$(psql "$TG_DB" -qAt -c "SELECT count(*) FROM usage_ledger")" -ge 4 ] && break
  sleep 0.1
done
# Her last requests may leave a budget lease held (gate.lease_requests) for about a
# second; the pages are checked with nothing held. Bounded, like the wait above.
for _ in $(seq 1 50); do
  curl -sf "$TG_SIDE/api/v1/budget/status" -H "Authorization: Bearer $ALICE_KEY" |
    grep -q '"reserved_nanos":0[,}]' && break
  sleep 0.1
done
export LEDGER_NANOS=$(psql "$TG_DB" -qAt -c "SELECT sum(cost_nanos) FROM usage_ledger WHERE status = 200")
export LEDGER_ROWS=$(psql "$TG_DB" -qAt -c "SELECT count(*) FROM usage_ledger")
export TG_SIDE TG_DB
export ARTIFACTS="${TOLLGATE_ARTIFACTS_DIR:-$(dirname "$TOLLGATE_BINARY")/test-artifacts}/pages"
mkdir -p "$ARTIFACTS"
echo "alice spent $LEDGER_NANOS nanos in $LEDGER_ROWS requests; screenshots in $ARTIFACTS"
cd "$(dirname "$0")"
[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null
node --test --test-concurrency=1 pages.test.mjs
