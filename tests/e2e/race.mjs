// N requests of one user at once (or from CLIENTS concurrent clients asking in turn),
// spread over the tollgate instances given, each billed 1,200 + 300 tokens of
// mistral-large-latest (1,050,000 nano-dollars) by tollgate-sim.
// Usage: node race.mjs KEY N CLIENTS PROXY...
// Prints one JSON line per request: {status, id}.
const [key, n, clients, ...proxies] = process.argv.slice(2);
const body = JSON.stringify({ model: 'mistral-large-latest', max_tokens: 300,
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
                   'x-sim-output-tokens': '300' },
      });
      await r.arrayBuffer();
      status = r.status;
      id = r.headers.get('x-tollgate-request-id');
    } catch { status = 0; }
    results.push({ status, id });
  }
}));
for (const r of results) console.log(JSON.stringify(r));
