// N requests from one user, spread over the tollgate instances given, from CLIENTS
// concurrent clients each asking in turn (CLIENTS = N: all at once).
// Prints one JSON line per request: {status, retry, body}.
const [key, n, clients, ...proxies] = process.argv.slice(2);
const body = JSON.stringify({ model: 'deepseek-flash', max_tokens: 100,
  messages: [{ role: 'user', content: 'hello world!' }] });
const results = [];
let next = 0;
await Promise.all(Array.from({ length: Number(clients) }, async () => {
  for (let i = next++; i < Number(n); i = next++) {
    const r = await fetch(`${proxies[i % proxies.length]}/deepseek/chat/completions`, {
      method: 'POST', body,
      headers: { Authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-sim-output-tokens': '100' },
    });
    results.push({ status: r.status, retry: r.headers.get('x-should-retry'), body: await r.text() });
  }
}));
for (const r of results) console.log(JSON.stringify(r));
