-- The request every contender gets in bench/run: a small chat completion with the
-- bench key, plus BENCH_EXTRA headers ("name: value" lines). With BENCH_RATE > 0 each
-- connection waits between requests so that all together send about that many a second.
wrk.method = "POST"
wrk.body = '{"model":"mistral-small-latest","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
for line in (os.getenv("BENCH_EXTRA") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local connections = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")
if rate > 0 then
  local gap_ms = connections * 1000 / rate
  function delay() return gap_ms end
end
