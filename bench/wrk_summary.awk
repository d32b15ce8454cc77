# wrk --latency output -> "requests_per_second p50_ms p99_ms errors" (errors = non-2xx
# answers plus socket errors).
function ms(text,   n) {
  n = text + 0
  if (text ~ /us$/) return n / 1000
  if (text ~ /ms$/) return n
  if (text ~ /s$/) return n * 1000
  return n
}
/Requests\/sec:/ { rps = $2 }
/^ +50%/ { p50 = ms($2) }
/^ +99%/ { p99 = ms($2) }
/Non-2xx or 3xx responses:/ { errors += $NF }
/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) errors += $i + 0 }
END { printf "%s %.3f %.3f %d\n", (rps == "" ? 0 : rps), p50, p99, errors }
