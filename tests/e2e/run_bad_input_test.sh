#!/usr/bin/env bash
# Malformed requests on both ports of a real `tollgate serve` (ctest: e2e_bad_input):
# bad_input.mjs generates and sends them (bytes that are not UTF-8 in every place, long
# targets, many and long headers, numbers past every bound, broken framing, slow heads,
# dot-segments); each gets a 4xx or a clean close and /healthz answers after each. The
# process is still the same one at the end, and none of them counted as a bug.
source "$(dirname "$0")/harness.sh"
start_stack 12
start_instance
pid=${E2E_PIDS[-1]}
user_id=$(tg user create --name prober)
key=$(new_key --user prober)
tg user create --name boss --role admin >/dev/null
admin=$(new_key --user boss)

TG_PROXY=$TG_PROXY TG_SIDE=$TG_SIDE KEY=$key ADMIN=$admin USER_ID=$user_id \
  node "$TOP/tests/e2e/bad_input.mjs" || E2E_FAILED=1
check 'kill -0 "$pid" 2>/dev/null' "tollgate is no longer running"
metrics=$(scrape "$TG_SIDE")
check 'grep -q "^tollgate_internal_errors_total 0$" <<<"$metrics"' \
  "a malformed request was counted as an internal error: $(grep '^tollgate_internal_errors_total' <<<"$metrics")"
verdict
