// N concurrent slow streams: time to first byte p50/p99, completed streams, errors.
// Usage: node bench/streams.mjs URLS KEYS N [TOKENS] [DELAY_MS] [RAMP_MS]
// URLS and KEYS may list several, comma-separated: stream i goes to URLS[i % count] with
// KEYS[i % count], so the targets share one client's stalls and one machine's load; one
// JSON line per target, with its index as "target" when there are several.
// RAMP_MS spreads the connects (thousands of simultaneous SYNs overflow a listen queue
// and clients back off for seconds).
// (tollgate-sim paces tokens via the x-sim-* headers, which tollgate forwards).
import http from 'node:http';

const [urlsText, keysText, nText, tokensText = '20', delayText = '100', rampText = '0'] =
  process.argv.slice(2);
const n = Number(nText);
const urls = urlsText.split(',');
const keys = keysText.split(',');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const body = JSON.stringify({ model: 'deepseek-flash', stream: true, max_tokens: Number(tokensText),
  messages: [{ role: 'user', content: 'hello world!' }] });

function one(url, key) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(url, { method: 'POST', agent, headers: { Authorization: `Bearer ${key}`,
      'content-type': 'application/json', 'x-sim-output-tokens': tokensText, 'x-sim-token-delay-ms': delayText } },
    (res) => {
      let first = null;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { first ??= performance.now() - t0; text += d; });
      res.on('end', () => (res.statusCode === 200 && text.includes('[DONE]') ? resolve(first)
        : reject(new Error(`status ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const started = performance.now();
const ramp = Number(rampText);
const results = await Promise.allSettled(Array.from({ length: n }, (_, i) =>
  new Promise((r) => setTimeout(r, (ramp * i) / n))
    .then(() => one(urls[i % urls.length], keys[i % keys.length]))));
const wall = ((performance.now() - started) / 1000).toFixed(2);
for (let t = 0; t < urls.length; ++t) {
  const mine = results.filter((_, i) => i % urls.length === t);
  const ttfb = mine.filter((r) => r.status === 'fulfilled').map((r) => r.value).sort((a, b) => a - b);
  const pct = (p) => (ttfb.length ? ttfb[Math.min(ttfb.length - 1, Math.floor((p / 100) * ttfb.length))].toFixed(2) : 'n/a');
  const errors = mine.filter((r) => r.status === 'rejected');
  console.log(JSON.stringify({ ...(urls.length > 1 ? { target: t } : {}), streams: mine.length,
    completed: ttfb.length, errors: errors.length, first_error: errors[0]?.reason?.message,
    ttfb_p50_ms: pct(50), ttfb_p99_ms: pct(99), wall_s: wall }));
}
