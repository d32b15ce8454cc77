// Traffic for the money-chaos test (run_chaos_test.sh): concurrent clients send
// streaming and non-streaming requests of 50 users through all four providers of
// tollgate-sim, spread over the live instances, while an admin resets budgets and
// changes limits at random. Everything random comes from SEED.
// Usage: node chaos.mjs SEED SECONDS USERS.json INSTANCES_FILE OUT_DIR
// USERS.json: [{id, key, limit_usd}]. INSTANCES_FILE: one "proxy side" pair per line,
// re-read as instances come and go. Writes OUT_DIR/answered.txt (request ids of
// answers received whole), OUT_DIR/limits.txt ("user_id limit_nanos", every limit a
// user had), and a summary on stdout.
import { readFileSync, writeFileSync } from 'node:fs';

const [seedArg, secondsArg, usersFile, instancesFile, outDir] = process.argv.slice(2);
let seed = Number(seedArg) >>> 0;
const random = () => {  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (list) => list[Math.floor(random() * list.length)];
const users = JSON.parse(readFileSync(usersFile, 'utf8'));
const adminToken = process.env.TOLLGATE_ADMIN_TOKEN;
const instances = () => readFileSync(instancesFile, 'utf8').trim().split('\n')
  .filter(Boolean).map((l) => { const [proxy, side] = l.split(' '); return { proxy, side }; });

const text = (n) => 'word '.repeat(n);
// One request of each kind, in the provider's native shape; max_tokens is always given
// (so a reservation covers the real cost: the input estimate is an upper bound).
const kinds = [
  (stream, maxTokens) => ({ path: '/mistral/v1/chat/completions', auth: 'bearer',
    body: { model: 'mistral-small-latest', max_tokens: maxTokens, stream,
      messages: [{ role: 'user', content: text(80) }] } }),
  (stream, maxTokens) => ({ path: '/anthropic/v1/messages', auth: 'x-api-key',
    body: { model: 'claude-haiku-4-5', max_tokens: maxTokens, stream,
      messages: [{ role: 'user', content: text(80) }] } }),
  (stream, maxTokens) => ({ path: '/deepseek/chat/completions', auth: 'bearer',
    body: { model: 'deepseek-chat', max_tokens: maxTokens, stream,
      messages: [{ role: 'user', content: text(80) }] } }),
  (stream, maxTokens) => ({ path: '/ollama/api/chat', auth: 'bearer',
    body: { model: 'llama3.2', stream, options: { num_predict: maxTokens },
      messages: [{ role: 'user', content: text(80) }] } }),
];

const answered = [];
const limits = users.map((u) => `${u.id} ${u.limit_nanos}`);
const tally = {};
const count = (what) => { tally[what] = (tally[what] || 0) + 1; };
const deadline = Date.now() + Number(secondsArg) * 1000;

async function client() {
  while (Date.now() < deadline) {
    const live = instances();
    if (live.length === 0) { await new Promise((r) => setTimeout(r, 50)); continue; }
    const { proxy } = pick(live);
    const user = pick(users);
    const stream = random() < 0.4;
    const maxTokens = 20 + Math.floor(random() * 200);
    const { path, auth, body } = pick(kinds)(stream, maxTokens);
    const headers = { 'content-type': 'application/json', 'x-sim-output-tokens': String(maxTokens) };
    if (stream) headers['x-sim-token-delay-ms'] = '5';
    if (auth === 'bearer') headers.authorization = `Bearer ${user.key}`;
    else headers['x-api-key'] = user.key;
    try {
      const r = await fetch(proxy + path, { method: 'POST', headers, body: JSON.stringify(body),
        signal: AbortSignal.timeout(30000) });
      await r.arrayBuffer();  // whole, or it throws
      count(`status ${r.status}`);
      const id = r.headers.get('x-tollgate-request-id');
      if (r.status === 200 && id) answered.push(id);
    } catch {
      count('cut or refused');
    }
  }
}

// Every ~2 s: a reset of a random user, or a new limit for one (between half and twice
// what it had, so some go below what they have spent).
async function admin() {
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000 + random() * 2000));
    const live = instances();
    if (live.length === 0) continue;
    const { side } = pick(live);
    const user = pick(users);
    const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    try {
      if (random() < 0.5) {
        const r = await fetch(`${side}/api/v1/budget/admin/reset/${user.id}`, { method: 'POST',
          headers, body: JSON.stringify({ reason: 'chaos' }) });
        count(`reset ${r.status}`);
      } else {
        const nanos = Math.max(1_000_000, Math.round(user.limit_nanos * (0.5 + random() * 1.5)));
        const usd = (nanos / 1e9).toFixed(6);
        const r = await fetch(`${side}/api/v1/budget/admin/configure`, { method: 'PUT', headers,
          body: JSON.stringify({ user_id: user.id, settings: { limit_usd: usd } }) });
        count(`configure ${r.status}`);
        // The limit counts for I1 as soon as it may be in force (even if the answer was lost).
        user.limit_nanos = Math.round(Number(usd) * 1e9);
        limits.push(`${user.id} ${user.limit_nanos}`);
      }
    } catch {
      count('admin call failed');
    }
  }
}

await Promise.all([...Array.from({ length: 24 }, client), admin()]);
writeFileSync(`${outDir}/answered.txt`, answered.join('\n') + '\n');
writeFileSync(`${outDir}/limits.txt`, limits.join('\n') + '\n');
console.log(JSON.stringify({ answered: answered.length, ...tally }));
