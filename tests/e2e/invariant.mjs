// 300 concurrent requests from one user, spread over three tollgate instances.
// Prints one JSON line per request: {status, body}.
const [key, n, ...proxies] = process.argv.slice(2);
const body = JSON.stringify({ model: 'deepseek-flash', max_tokens: 100,
  messages: [{ role: 'user', content: 'hello world!' }] });
const results = await Promise.all(Array.from({ length: Number(n) }, async (_, i) => {
  const r = await fetch(`${proxies[i % proxies.length]}/deepseek/chat/completions`, {
    method: 'POST', body,
    headers: { Authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-sim-output-tokens': '100' },
  });
  return { status: r.status, retry: r.headers.get('x-should-retry'), body: await r.text() };
}));
for (const r of results) console.log(JSON.stringify(r));
