#!/usr/bin/env bash
# One request never takes tollgate down (ctest: e2e_boundary). Against a real `tollgate
# serve`, each single request that ended the process on 9518d8c (bytes that are not
# UTF-8 in a path, a model or a chat body, the last on the event loop's path once the
# key is cached; 40,000 bytes of admin path on the side port), and paths with
# dot-segments (none of which goes upstream), get a 4xx whose body is valid UTF-8 JSON;
# after each the process is alive and /healthz answers.
source "$(dirname "$0")/harness.sh"
export LC_ALL=C  # lengths in bytes, and bytes past ASCII left as they are
start_stack 11
start_instance
pid=${E2E_PIDS[-1]}
tg user create --name edge >/dev/null
key=$(new_key --user edge)

# raw URL: sends stdin as it is (bytes no HTTP client writes) to URL's host and port and
# prints the answer; requests say Connection: close, so the server ends it. Stdin is read
# whole first, and a server that answers and closes before it has read everything (414
# on a long target) is no failure: the answer is what is checked.
raw() {
  local address=${1#http://}
  cat >"$WORK/request"
  exec 3<>"/dev/tcp/${address%:*}/${address##*:}"
  (trap '' PIPE; cat "$WORK/request" >&3 2>/dev/null) || true
  timeout 10 cat <&3 || true
  exec 3<&-
}
# expect WHAT STATUS ANSWER_FILE: the status line, a body that is valid UTF-8 JSON, and
# the process still serving.
expect() {
  local what=$1 want=$2 file=$3 status body
  status=$(head -1 "$file" | cut -d' ' -f2)
  body=$(sed '1,/^\r$/d' "$file")
  check '[ "$status" = "$want" ]' "$what: status $status, expected $want"
  check 'iconv -f UTF-8 -t UTF-8 "$file" >/dev/null 2>&1' "$what: the answer is not valid UTF-8"
  check 'printf %s "$body" | node -e "JSON.parse(require(\"fs\").readFileSync(0, \"utf8\"))" 2>/dev/null' \
    "$what: the body is not JSON: $body"
  check 'kill -0 "$pid" 2>/dev/null' "$what: tollgate is no longer running"
  check '[ "$(curl -s -o /dev/null -w "%{http_code}" "$TG_SIDE/healthz")" = 200 ]' \
    "$what: /healthz does not answer"
}
chat() { # chat BODY: a Mistral chat request with the key, as raw bytes
  printf 'POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' \
    "$key" "${#1}" "$1"
}
out=$WORK/answer

printf 'GET /\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' | raw "$TG_PROXY" >"$out"
expect "GET /\\xff (no key)" 404 "$out"
printf 'POST /mistral/\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}' |
  raw "$TG_PROXY" >"$out"
expect "POST /mistral/\\xff" 404 "$out"

# Twice each: the key's first request goes to a worker, the next ones to the loop.
good='{"model":"mistral-small-latest","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
bad_model=$(printf '{"model":"mistral-small-\xff","messages":[{"role":"user","content":"hi"}]}')
bad_content=$(printf '{"model":"mistral-small-latest","messages":[{"role":"user","content":"\xff\xfe"}]}')
for round in worker loop; do
  chat "$bad_model" | raw "$TG_PROXY" >"$out"
  expect "a model name with \\xff ($round)" 400 "$out"
  chat "$bad_content" | raw "$TG_PROXY" >"$out"
  expect "content \\xff\\xfe ($round)" 400 "$out"
  chat "$good" | raw "$TG_PROXY" >"$out"
  expect "a good request after them ($round)" 200 "$out"
done

for path in /mistral/v1/models/../files /mistral/v1/models/%2e%2e/files \
  /mistral/v1/models/%2E%2e/files /mistral/v1/models/.%2e/files /mistral/v1/models/a%2f..%2ffiles; do
  printf 'GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
    "$path" "$key" | raw "$TG_PROXY" >"$out"
  expect "GET $path" 400 "$out"
  # A request admitted for the upstream carries its ledger id; these never got one.
  check '! grep -qi "^x-tollgate-request-id" "$out"' "GET $path went upstream"
done

printf 'POST /api/v1/budget/admin/reset/%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' \
  "$(head -c 40000 /dev/zero | tr '\0' A)" | raw "$TG_SIDE" >"$out"
expect "40,000 bytes of admin path" 414 "$out"
printf 'GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' | raw "$TG_SIDE" >"$out"
expect "/metrics without a token" 401 "$out"
metrics=$(scrape "$TG_SIDE")  # whole, before grep: grep -q would cut curl off (pipefail)
check 'grep -q "^tollgate_internal_errors_total 0$" <<<"$metrics"' \
  "every bad request was refused as bad input, none failed as a bug"
verdict
