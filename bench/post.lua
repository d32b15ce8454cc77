-- The request every contender gets in bench/run: a small chat completion with the
-- bench key, plus BENCH_EXTRA headers ("name: value" lines). With BENCH_RATE > 0 the
-- BENCH_THREADS threads send that many requests a second between them.
wrk.method = "POST"
wrk.body = '{"model":"mistral-small-latest","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
for line in (os.getenv("BENCH_EXTRA") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
if rate > 0 then
  -- Paced on a schedule: this thread's requests are `gap` ms apart, whatever each one
  -- took, so every contender gets the same rate (a fixed wait after each answer gave a
  -- slower contender fewer requests). wrk waits whole milliseconds, so a request goes
  -- out up to 1 ms before its turn; the rate holds on average. A connection ready late
  -- catches up on at most 1 ms of missed turns.
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec* ts);
  ]]
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local gap = threads * 1000 / rate
  local turn = nil
  function delay()
    local now = now_ms()
    turn = math.max(turn and turn + gap or now, now - 1)
    return math.max(turn - now, 0)
  end
end
