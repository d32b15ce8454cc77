// Malformed requests on both ports of a real `tollgate serve` (run_bad_input_test.sh
// starts it): each is sent as raw bytes, the write side is then closed, and the answer
// must be a 4xx (413/414/431 where they fit) or a clean close, never a 5xx except the
// two the request parser documents (501: a Transfer-Encoding other than chunked; 505: an
// HTTP version other than 1.0/1.1); whatever is answered is valid UTF-8; and /healthz
// answers after each. The cases are generated: every place a caller's bytes go, times
// the kinds of bytes that have broken parsers.
// Env: TG_PROXY, TG_SIDE (http://host:port), KEY (a user's key), ADMIN (an admin's key),
// USER_ID (that user's id).
import net from 'node:net';

const proxy = new URL(process.env.TG_PROXY);
const side = new URL(process.env.TG_SIDE);
const { KEY, ADMIN, USER_ID } = process.env;

// Sends `chunks` (Buffers; with `gapMs` between them), closes the write side, and
// resolves with every byte answered until the server closes (or `timeoutMs` passes).
function exchange(url, chunks, { gapMs = 0, timeoutMs = 8000 } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(Number(url.port), url.hostname);
    const got = [];
    let settled = false;
    const done = (how) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ bytes: Buffer.concat(got), how });
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.on('data', (d) => got.push(d));
    socket.on('end', () => done('closed'));
    socket.on('close', () => done('closed'));
    socket.on('error', (e) => done(e.code === 'ECONNRESET' ? 'reset' : `error ${e.code}`));
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        socket.write(c);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
      if (!socket.destroyed) socket.end();
    });
  });
}

const b = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'latin1'))));
const crlf = '\r\n';
// A request as raw bytes; `head` and `body` may hold any byte (latin1 strings or Buffers).
function request(method, target, headers = [], body = null) {
  const lines = [b(method, ' ', target, ' HTTP/1.1', crlf)];
  lines.push(b('Host: t', crlf, 'Connection: close', crlf));
  for (const h of headers) lines.push(b(h, crlf));
  if (body !== null && !headers.some((h) => /^(content-length|transfer-encoding):/i.test(h.toString('latin1'))))
    lines.push(b(`Content-Length: ${Buffer.byteLength(b(body))}`, crlf));
  lines.push(b(crlf));
  if (body !== null) lines.push(b(body));
  return b(...lines);
}
const bearer = (k) => `Authorization: Bearer ${k}`;
const json = 'Content-Type: application/json';

const cases = [];
// add(name, port, bytes, opts): opts.want = a status, or a list; opts.allow adds statuses
// to "any 4xx or a clean close"; opts.chunks/gapMs send in pieces.
const add = (name, port, bytes, opts = {}) => cases.push({ name, port, bytes, ...opts });

// 1. Bytes that are not UTF-8, in every place a caller's bytes go.
const badBytes = {
  'ff': '\xff', 'fe ff': '\xfe\xff', 'lone lead byte': '\xc3', 'surrogate': '\xed\xa0\x80',
  'overlong slash': '\xc0\xaf', 'continuation': '\x80', 'nul': '\x00',
};
const chatBody = (over) => JSON.stringify({ model: 'mistral-small-latest', max_tokens: 5,
  messages: [{ role: 'user', content: 'hi' }], ...over });
for (const [label, x] of Object.entries(badBytes)) {
  const raw = (s) => s.replaceAll('@', x);  // '@' marks where the bytes go
  add(`proxy path (${label})`, proxy, request('GET', raw('/mistral/v1/@/models')));
  add(`proxy provider (${label})`, proxy, request('POST', raw('/@mistral/v1/chat/completions'), [json], '{}'));
  add(`proxy query (${label})`, proxy, request('POST', raw('/mistral/v1/chat/completions?a=@'), [json], chatBody()));
  add(`proxy header name (${label})`, proxy, request('GET', '/mistral/v1/models', [raw('X-@: 1'), bearer(KEY)]));
  add(`proxy header value (${label})`, proxy, request('POST', '/mistral/v1/chat/completions', [raw('X-A: @'), json], chatBody()));
  add(`proxy authorization (${label})`, proxy, request('POST', '/mistral/v1/chat/completions', [raw('Authorization: Bearer tg-@'), json], chatBody()));
  add(`proxy x-api-key (${label})`, proxy, request('POST', '/anthropic/v1/messages', [raw('x-api-key: tg-@'), json], '{}'));
  add(`proxy end user header (${label})`, proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), raw('X-Tollgate-User: @'), json], chatBody()));
  add(`proxy model (${label})`, proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), json], raw(chatBody({ model: 'mistral-@' }))));
  add(`proxy content (${label})`, proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), json], raw(chatBody({ messages: [{ role: 'user', content: 'a@b' }] }))));
  add(`proxy user field (${label})`, proxy, request('POST', '/deepseek/chat/completions', [bearer(KEY), json], raw(chatBody({ model: 'deepseek-chat', user: '@' }))));
  add(`proxy json key (${label})`, proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), json], raw('{"model":"mistral-small-latest","@":1,"messages":[]}')));
  add(`anthropic metadata (${label})`, proxy, request('POST', '/anthropic/v1/messages', [`x-api-key: ${KEY}`, json], raw('{"model":"claude-3-5-haiku-latest","max_tokens":5,"metadata":{"user_id":"@"},"messages":[{"role":"user","content":"hi"}]}')));
  add(`ollama prompt (${label})`, proxy, request('POST', '/ollama/api/generate', [bearer(KEY), json], raw('{"model":"llama3.2","prompt":"@","stream":false}')));
  add(`side path (${label})`, side, request('GET', raw('/api/v1/budget/@')));
  add(`side query (${label})`, side, request('GET', raw('/api/v1/budget/admin/list?search=@'), [bearer(ADMIN)]));
  add(`side header value (${label})`, side, request('GET', '/api/v1/budget/status', [raw('Authorization: Bearer @')]));
  add(`side limit (${label})`, side, request('PUT', '/api/v1/budget/admin/configure', [bearer(ADMIN), json], raw(`{"user_id":${USER_ID},"settings":{"limit_usd":"1@"}}`)));
  add(`side timezone (${label})`, side, request('PUT', '/api/v1/budget/admin/configure', [bearer(ADMIN), json], raw(`{"user_id":${USER_ID},"settings":{"timezone":"Europe/@"}}`)));
  add(`side reset reason (${label})`, side, request('POST', `/api/v1/budget/admin/reset/${USER_ID}`, [bearer(ADMIN), json], raw('{"reason":"@"}')));
  add(`side user name (${label})`, side, request('POST', '/api/v1/budget/admin/users', [bearer(ADMIN), json], raw('{"name":"n@"}')));
}

// 2. Long paths and many or long headers.
add('proxy target of 9 KiB', proxy, request('GET', '/mistral/' + 'a'.repeat(9000)), { want: 414 });
add('proxy target of 5,000 one-byte segments', proxy, request('GET', '/a'.repeat(5000)), { want: 414 });
add('proxy query of 9 KiB', proxy, request('GET', '/mistral/v1/models?q=' + 'x'.repeat(9000)), { want: 414 });
add('side target of 40,000 bytes', side, request('POST', '/api/v1/budget/admin/reset/' + 'A'.repeat(40000), [], ''), { want: 414 });
add('side target of 9 KiB', side, request('GET', '/api/v1/budget/status?x=' + '%ff'.repeat(3000)), { want: 414 });
add('proxy target just under the bound', proxy, request('GET', '/mistral/' + 'a'.repeat(8000)));
add('proxy 200 headers', proxy, request('GET', '/mistral/v1/models', Array.from({ length: 200 }, (_, i) => `X-H${i}: v`)), { want: 431 });
add('side 200 headers', side, request('GET', '/healthz', Array.from({ length: 200 }, (_, i) => `X-H${i}: v`)), { want: 431 });
add('proxy header of 70 KiB', proxy, request('GET', '/mistral/v1/models', ['X-Big: ' + 'v'.repeat(70000)]), { want: 431 });
add('side header of 70 KiB', side, request('GET', '/healthz', ['X-Big: ' + 'v'.repeat(70000)]), { want: 431 });
add('proxy authorization of 60 KiB', proxy, request('GET', '/mistral/v1/models', [bearer('tg-' + 'k'.repeat(60000))]));
add('proxy 100 headers of 700 bytes', proxy, request('GET', '/mistral/v1/models', Array.from({ length: 100 }, (_, i) => `X-H${i}: ${'v'.repeat(700)}`)), { want: 431 });
add('proxy header name of 10 KiB', proxy, request('GET', '/mistral/v1/models', ['X-' + 'n'.repeat(10000) + ': 1']));
add('proxy method of 10 KiB', proxy, request('G'.repeat(10000), '/mistral/v1/models'));

// 3. Numbers past every bound, in every numeric field.
// Past int64 or a double, negative, fractional, or not a number at all.
const huge = ['1e999', '-1e999', '99999999999999999999', '9223372036854775808', '18446744073709551616',
  '-1', '-9223372036854775809', '1.5', '"12"', '1e308', 'true'];
const overflowing = (n) => /e999|\d{19}/.test(n);  // past any integer or double
for (const n of huge) {
  for (const field of ['max_tokens', 'max_completion_tokens'])
    add(`mistral ${field} ${n}`, proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), json],
      `{"model":"mistral-small-latest","${field}":${n},"messages":[{"role":"user","content":"hi"}]}`));
  add(`anthropic max_tokens ${n}`, proxy, request('POST', '/anthropic/v1/messages', [`x-api-key: ${KEY}`, json],
    `{"model":"claude-3-5-haiku-latest","max_tokens":${n},"messages":[{"role":"user","content":"hi"}]}`));
  // num_predict -1 is Ollama's "unbounded" (the model's default cap is reserved): answered.
  add(`ollama num_predict ${n}`, proxy, request('POST', '/ollama/api/chat', [bearer(KEY), json],
    `{"model":"llama3.2","stream":false,"options":{"num_predict":${n}},"messages":[{"role":"user","content":"hi"}]}`),
  n === '-1' ? { want: 200 } : {});
  const configure = (settings) => request('PUT', '/api/v1/budget/admin/configure', [bearer(ADMIN), json],
    `{"user_id":${USER_ID},"settings":${settings}}`);
  if (n !== '"12"') add(`limit_usd ${n}`, side, configure(`{"limit_usd":${n}}`));  // "12" is a limit
  if (overflowing(n)) add(`limit_usd "${n}"`, side, configure(`{"limit_usd":"${n}"}`));
  add(`yellow ${n}`, side, configure(`{"thresholds":{"yellow":${n}}}`));
  add(`custom_period_days ${n}`, side, configure(`{"period":"custom","custom_period_days":${n}}`));
  add(`configure user_id ${n}`, side, request('PUT', '/api/v1/budget/admin/configure', [bearer(ADMIN), json],
    `{"user_id":${n},"settings":{"limit_usd":"1"}}`));
  if (!overflowing(n) && n !== '-1' && n !== '1.5') continue;  // the rest are valid in a query
  const q = encodeURIComponent(n);
  add(`history limit=${n}`, side, request('GET', `/api/v1/budget/usage/history?limit=${q}`, [bearer(KEY)]));
  add(`list offset=${n}`, side, request('GET', `/api/v1/budget/admin/list?offset=${q}&limit=${q}`, [bearer(ADMIN)]));
  add(`reset/${n}`, side, request('POST', `/api/v1/budget/admin/reset/${q}`, [bearer(ADMIN), json], '{"reason":"r"}'));
}

// 4. Broken framing.
const post = (headers, body) => b('POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n',
  ...headers.map((h) => h + crlf), crlf, body);
const ok = chatBody();
for (const [port, p] of [['proxy', proxy], ['side', side]]) {
  const frame = (name, bytes, opts) => add(`${port}: ${name}`, p, bytes, opts);
  frame('Content-Length: abc', post(['Content-Length: abc'], ok), { want: 400 });
  frame('Content-Length: -1', post(['Content-Length: -1'], ok), { want: 400 });
  frame('Content-Length: 1e3', post(['Content-Length: 1e3'], ok), { want: 400 });
  frame('Content-Length: 0x10', post(['Content-Length: 0x10'], ok), { want: 400 });
  frame('Content-Length of 20 digits', post(['Content-Length: 99999999999999999999'], ok), { want: [400, 413] });
  frame('Content-Length past the body bound', post(['Content-Length: 20971520'], ok), { want: 413 });
  frame('two differing Content-Lengths', post([`Content-Length: ${ok.length}`, 'Content-Length: 3'], ok), { want: 400 });
  frame('Content-Length list', post([`Content-Length: ${ok.length}, ${ok.length}`], ok), { want: 400 });
  frame('Transfer-Encoding and Content-Length', post(['Transfer-Encoding: chunked', 'Content-Length: 5'], '0\r\n\r\n'), { want: 400 });
  frame('Transfer-Encoding: gzip', post(['Transfer-Encoding: gzip'], ok), { want: 501, allow: [501] });
  frame('Transfer-Encoding: gzip, chunked', post(['Transfer-Encoding: gzip, chunked'], '0\r\n\r\n'), { want: 501, allow: [501] });
  frame('two Transfer-Encodings', post(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], '0\r\n\r\n'), { want: 501, allow: [501] });
  frame('chunk size not hex', post(['Transfer-Encoding: chunked'], 'zz\r\nabc\r\n0\r\n\r\n'), { want: 400 });
  frame('chunk size of 16 hex digits', post(['Transfer-Encoding: chunked'], 'ffffffffffffffff\r\nabc\r\n0\r\n\r\n'), { want: 400 });
  frame('chunk size past the body bound', post(['Transfer-Encoding: chunked'], 'a00001\r\nabc'), { want: 413 });
  frame('negative chunk size', post(['Transfer-Encoding: chunked'], '-5\r\nabc\r\n0\r\n\r\n'), { want: 400 });
  frame('chunk data without its CRLF', post(['Transfer-Encoding: chunked'], '3\r\nabcXY0\r\n\r\n'), { want: 400 });
  frame('chunk line of 2 KiB', post(['Transfer-Encoding: chunked'], '1;' + 'e'.repeat(2048) + '\r\na\r\n0\r\n\r\n'), { want: 400 });
  frame('body shorter than its length, then the end', post(['Content-Length: 500'], ok));
  frame('chunked body cut short', post(['Transfer-Encoding: chunked'], '10\r\nabc'));
  frame('folded header', post(['X-A: 1', ' folded'], ''), { want: 400 });
  frame('header without a colon', post(['NoColon'], ''), { want: 400 });
  frame('space before the colon', post(['Content-Length : 2'], '{}'), { want: 400 });
  frame('bare LF line ends', b('GET /healthz HTTP/1.1\nHost: t\nConnection: close\n\n'));
  frame('HTTP/2.0', b('GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n'), { want: 505, allow: [505] });
  frame('HTTP/1.1 with three spaces', b('GET  /healthz HTTP/1.1\r\nHost: t\r\n\r\n'), { want: 400 });
  frame('no version', b('GET /healthz\r\nHost: t\r\n\r\n'), { want: 400 });
  frame('absolute-form target', b('GET http://t/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'), { want: 400 });
  frame('asterisk target', b('OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'), { want: 400 });
  frame('only CRLFs', b('\r\n'.repeat(100)));
  frame('binary garbage', Buffer.from(Array.from({ length: 600 }, (_, i) => (i * 131 + 7) % 256)));
  frame('TLS hello on a plain port', Buffer.from('16030100a5010000a10303', 'hex'));
}

// 5. Slow heads (briefly: the head deadline is its own test), then whole or cut.
const slowHead = request('GET', '/mistral/v1/models', [bearer('tg-nope')]);
for (const [port, p] of [['proxy', proxy], ['side', side]]) {
  const pieces = (buf, n) => Array.from({ length: n }, (_, i) => buf.subarray(Math.floor(i * buf.length / n), Math.floor((i + 1) * buf.length / n)));
  add(`${port}: a head in 6 pieces over a second`, p, slowHead, { chunks: pieces(slowHead, 6), gapMs: 200 });
  add(`${port}: half a head, slowly, then the end`, p, slowHead, { chunks: pieces(slowHead.subarray(0, 20), 4), gapMs: 200 });
  add(`${port}: a body one byte at a time`, p, post([`Content-Length: 5`], '{}{}{'), { chunks: pieces(post([`Content-Length: 5`], '{}{}{'), 20), gapMs: 30 });
}

// 6. Dot-segments and their encodings: refused, never forwarded.
for (const path of ['/mistral/v1/models/../files', '/mistral/v1/models/%2e%2e/files', '/mistral/v1/models/%2E%2E/files',
  '/mistral/v1/models/.%2e/files', '/mistral/v1/models/%2e./files', '/mistral/v1/./models', '/mistral/v1/%2e/models',
  '/mistral/v1/models/a%2f..%2ffiles', '/mistral/v1/models/a%2F..%2Ffiles', '/mistral/v1/models/..', '/mistral/..',
  '/mistral/v1/models/%2e%2e', '/mistral/v1/models/..%5cfiles', '/mistral/v1/models/a%5c..%5cfiles'])
  add(`dot-segments ${path}`, proxy, request('GET', path, [bearer(KEY)]), { want: 400, notForwarded: true });
for (const path of ['/api/v1/budget/../budget/status', '/api/v1/budget/%2e%2e/admin/list', '/dashboard/../api/v1/budget/status'])
  add(`side dot-segments ${path}`, side, request('GET', path, [bearer(KEY)]));

// 7. Odd methods and keys.
for (const m of ['G\xffT', 'get', 'CONNECT', 'TRACE', 'DELETE', 'PATCH', 'BREW'])
  for (const [port, p] of [['proxy', proxy], ['side', side]])
    add(`${port}: method ${m}`, p, request(m, '/mistral/v1/chat/completions', [bearer(KEY), json], '{}'));
add('empty bearer', proxy, request('GET', '/mistral/v1/models', ['Authorization: Bearer ']), { want: 401 });
add('bearer with a NUL', proxy, request('GET', '/mistral/v1/models', ['Authorization: Bearer tg-\x00x']), { want: 400 });
add('key of a user, admin path', side, request('GET', '/api/v1/budget/admin/list', [bearer(KEY)]), { want: 403 });
add('body not JSON', proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), json], '{"model":'), { want: 400 });
add('body 100,000 brackets', proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), json], '['.repeat(100000)), { want: 400 });
add('side body 100,000 brackets', side, request('PUT', '/api/v1/budget/admin/configure', [bearer(ADMIN), json], '['.repeat(100000)), { want: 400 });
add('side settings body 100,000 brackets', side, request('PUT', '/api/v1/budget/settings', [bearer(KEY), json], '{"thresholds":' + '['.repeat(100000)), { want: 400 });
add('body a number past a double', proxy, request('POST', '/mistral/v1/chat/completions', [bearer(KEY), json], chatBody().replace('"max_tokens":5', '"temperature":1e999,"max_tokens":5')), { want: 400 });

// Runs every case; one line per failure, then the totals.
function verdictOf(c, answer) {
  const text = answer.bytes.toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!m) {
    if (answer.bytes.length === 0 && (answer.how === 'closed' || answer.how === 'reset')) {
      return c.want === undefined ? null : `closed without an answer, expected ${c.want}`;
    }
    return `no status line (${answer.how}, ${answer.bytes.length} bytes)`;
  }
  const status = Number(m[1]);
  const wants = c.want === undefined ? null : [].concat(c.want);
  if (wants && !wants.includes(status)) return `status ${status}, expected ${wants.join(' or ')}`;
  if (!wants && !(status >= 400 && status < 500) && !(c.allow || []).includes(status))
    return `status ${status}, expected a 4xx or a clean close`;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(answer.bytes);
  } catch {
    return 'the answer is not valid UTF-8';
  }
  if (c.notForwarded && /^x-tollgate-request-id:/im.test(text)) return 'forwarded upstream';
  return null;
}

async function healthz() {
  const a = await exchange(side, [request('GET', '/healthz')], { timeoutMs: 5000 });
  return /^HTTP\/1\.1 200/.test(a.bytes.toString('latin1'));
}

let failed = 0;
for (const c of cases) {
  const answer = await exchange(c.port, c.chunks || [c.bytes], { gapMs: c.gapMs || 0 });
  const why = verdictOf(c, answer);
  if (why) {
    failed++;
    console.log(`FAILED: ${c.name}: ${why}`);
  }
  if (!(await healthz())) {
    failed++;
    console.log(`FAILED: ${c.name}: /healthz did not answer after it`);
    break;
  }
}
console.log(`${cases.length} malformed requests, ${cases.length - failed} as expected`);
process.exit(failed ? 1 : 0);
