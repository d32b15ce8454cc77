// N requests of one user at once (or from CLIENTS concurrent clients asking in turn),
// spread over the tollgate instances given, each billed 1,200 + 300 tokens of
// mistral-large-latest (1,050,000 nano-dollars) by tollgate-sim.
// Usage: node race.mjs KEY N CLIENTS PROXY...
// With RACE_STREAM_MS set, each request streams, its 300 tokens spread over that long.
// Prints one JSON line per request: {status, id}.
const [key, n, clients, ...proxies] = process.argv.slice(2);
const streamMs = Number(process.env.RACE_STREAM_MS || 0);
const body = JSON.stringify({ model: 'mistral-large-latest', max_tokens: 300, stream: streamMs > 0,
  messages: [{ role: 'user', content: 'a'.repeat(4800) }] });
const results = [];
let next = 0;
await Promise.all(Array.from({ length: Number(clients) }, async () => {
  for (let i = next++; i < Number(n); i = next++) {
    let status = 0, id = null;
    try {
      const r = await fetch(`${proxies[i % proxies.length]}/mistral/v1/chat/completions`, {
        method: 'POST', body,
        headers: { Authorization: `Bearer ${key}`, 'content-type': 'application/json',
                   'x-sim-output-tokens': '300',
                   'x-sim-token-delay-ms': String(Math.floor(streamMs / 300)) },
      });
      await r.arrayBuffer();
      status = r.status;
      id = r.headers.get('x-tollgate-request-id');
    } catch { status = 0; }
    results.push({ status, id });
  }
}));
for (const r of results) console.log(JSON.stringify(r));
