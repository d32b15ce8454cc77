// Steady load for fault tests: C loops of sequential requests for D ms. Prints one
// line per request: "<ms since start> <status>".
const [url, key, concurrency, durationMs] = process.argv.slice(2);
const body = JSON.stringify({ model: 'deepseek-flash', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
const start = performance.now();
const lines = [];
async function loop() {
  while (performance.now() - start < Number(durationMs)) {
    let status = 0;
    try {
      const r = await fetch(url, { method: 'POST', body,
        headers: { Authorization: `Bearer ${key}`, 'content-type': 'application/json' } });
      await r.arrayBuffer();
      status = r.status;
    } catch {
      status = 0;
    }
    lines.push(`${Math.round(performance.now() - start)} ${status}`);
  }
}
await Promise.all(Array.from({ length: Number(concurrency) }, loop));
console.log(lines.join('\n'));
