// N concurrent slow streams through one URL: time to first byte p50/p99, completed
// streams, errors. Usage: node bench/streams.mjs URL KEY N [TOKENS] [DELAY_MS] [RAMP_MS]
// RAMP_MS spreads the connects (cpp-httplib accepts on one thread; thousands of
// simultaneous SYNs overflow its queue and clients back off for seconds).
// (tollgate-sim paces tokens via the x-sim-* headers, which tollgate forwards).
import http from 'node:http';

const [url, key, nText, tokensText = '20', delayText = '100', rampText = '0'] = process.argv.slice(2);
const n = Number(nText);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const body = JSON.stringify({ model: 'deepseek-flash', stream: true, max_tokens: Number(tokensText),
  messages: [{ role: 'user', content: 'hello world!' }] });

function one() {
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
  new Promise((r) => setTimeout(r, (ramp * i) / n)).then(one)));
const ttfb = results.filter((r) => r.status === 'fulfilled').map((r) => r.value).sort((a, b) => a - b);
const pct = (p) => (ttfb.length ? ttfb[Math.min(ttfb.length - 1, Math.floor((p / 100) * ttfb.length))].toFixed(2) : 'n/a');
const errors = results.filter((r) => r.status === 'rejected');
console.log(JSON.stringify({ streams: n, completed: ttfb.length, errors: errors.length,
  first_error: errors[0]?.reason?.message, ttfb_p50_ms: pct(50), ttfb_p99_ms: pct(99),
  wall_s: ((performance.now() - started) / 1000).toFixed(2) }));
