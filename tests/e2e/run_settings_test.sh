#!/usr/bin/env bash
# A settings change made anywhere is enforced by every instance within a second
# (ctest: e2e_settings): two instances, `tollgate budget set` and `key revoke`.
source "$(dirname "$0")/harness.sh"
start_stack 4
start_instance
a=$TG_PROXY
start_instance
b=$TG_PROXY
tg user create --name prop --limit 1 >/dev/null
key=$(new_key --user prop)

ask() { # ask PROXY: the status of one small request
  curl -s -o /dev/null -w '%{http_code}' "$1/deepseek/chat/completions" -H "Authorization: Bearer $key" \
    -d '{"model":"deepseek-flash","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'
}
# until_both PROXY_A PROXY_B STATUS: milliseconds until both answer STATUS (bounded at 5 s)
until_both() {
  local start now
  start=$(date +%s%3N)
  while true; do
    now=$(date +%s%3N)
    [ "$(ask "$1")" = "$3" ] && [ "$(ask "$2")" = "$3" ] && { echo $((now - start)); return 0; }
    [ $((now - start)) -gt 5000 ] && { echo 5000; return 1; }
  done
}

check '[ "$(ask "$a")" = 200 ] && [ "$(ask "$b")" = 200 ]' "first requests are served"
tg budget set --user prop --limit 0 >/dev/null
limit_ms=$(until_both "$a" "$b" 402) || true
tg budget set --user prop --limit 1 >/dev/null
raise_ms=$(until_both "$a" "$b" 200) || true
tg key revoke --key "${key:0:12}" >/dev/null
revoke_ms=$(until_both "$a" "$b" 401) || true
echo "seen by both instances after: limit lowered ${limit_ms} ms, raised ${raise_ms} ms, key revoked ${revoke_ms} ms"
for ms in "$limit_ms" "$raise_ms" "$revoke_ms"; do
  # The caches hold entries for one second; allow for the requests themselves.
  check '[ "$ms" -le 1500 ]' "a change took ${ms} ms to reach every instance"
done
verdict
