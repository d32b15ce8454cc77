#!/usr/bin/env bash
# The official SDKs against a real tollgate (ctest runs this as e2e_sdks).
source "$(dirname "$0")/harness.sh"
# Frames paced 2 ms apart, as real providers send them: @mistralai/mistralai 1.9.18
# drops events that arrive in the same read as others (lib/event-streams.js), with or
# without a proxy in between.
start_stack 1 --token-delay-ms 2
start_instance
tg user create --name sdk-user >/dev/null
tg user create --name broke --limit 0 >/dev/null
export TG_PROXY TG_SIDE TG_SIM
export TG_KEY=$(new_key --user sdk-user)
export TG_BROKE_KEY=$(new_key --user broke)
cd "$(dirname "$0")"
[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null
node --test --test-concurrency=1 sdk.test.mjs
