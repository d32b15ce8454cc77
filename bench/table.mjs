// Turns bench/run's raw figures (stdin) into the Markdown tables of RESULTS.md.
//   node table.mjs rps      lines "name rps p50_ms p99_ms errors"
//   node table.mjs streams  JSON lines {via, n, rss_kb?, r: {streams, completed, errors, ttfb_p50_ms, ttfb_p99_ms}}
//   node table.mjs scale    lines "empty rps p50 p99 errors", "full ...", "meta users rows load_s size"
import { readFileSync } from 'node:fs';

const mode = process.argv[2];
const lines = readFileSync(0, 'utf8').split('\n').filter((l) => l.trim());
const fmt = (x, d = 0) => Number(x).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const out = [];
const ok = (cond) => (cond ? '**met**' : '**not met**');

if (mode === 'rps') {
  const r = {};
  for (const l of lines) {
    const [name, rps, p50, p99, errors] = l.split(/\s+/);
    r[name] = { rps: Number(rps), p50: Number(p50), p99: Number(p99), errors };
  }
  const names = { direct: 'direct to the upstream', nginx: 'nginx reverse proxy (the floor)',
    'gate-on': 'tollgate, gate on', 'gate-off': 'tollgate, gate off', portkey: 'Portkey gateway' };
  out.push('## Requests per second (non-streaming)', '',
    '| contender | requests/s | p50 ms | p99 ms | errors | × nginx | × Portkey |',
    '|---|---:|---:|---:|---:|---:|---:|');
  for (const k of Object.keys(names)) {
    const x = r[k];
    if (!x) continue;
    const vsN = r.nginx?.rps ? (x.rps / r.nginx.rps).toFixed(2) : 'n/a';
    const vsP = r.portkey?.rps ? (x.rps / r.portkey.rps).toFixed(1) : 'n/a';
    out.push(`| ${names[k]} | ${fmt(x.rps)} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} | ${x.errors} | ${vsN} | ${vsP} |`);
  }
  if (r['paced-direct'] && r['paced-gate']) {
    const added = r['paced-gate'].p99 - r['paced-direct'].p99;
    out.push('', `At half of tollgate's top rate (about ${fmt(r['gate-on'].rps / 2)} requests/s, paced), ` +
      `p99 direct ${r['paced-direct'].p99.toFixed(2)} ms, through tollgate ${r['paced-gate'].p99.toFixed(2)} ms: ` +
      `**${added.toFixed(2)} ms added** (p50 ${(r['paced-gate'].p50 - r['paced-direct'].p50).toFixed(2)} ms added).` +
      (r['paced-nginx'] ? ` The nginx floor at the same rate: p99 ${r['paced-nginx'].p99.toFixed(2)} ms, ` +
        `${(r['paced-nginx'].p99 - r['paced-direct'].p99).toFixed(2)} ms added ` +
        `(p50 ${(r['paced-nginx'].p50 - r['paced-direct'].p50).toFixed(2)} ms added).` : ''));
    out.push('', '| target | result |', '|---|---|',
      `| gate on ≥ 0.5 × nginx | ${(r['gate-on'].rps / r.nginx.rps).toFixed(2)} × — ${ok(r['gate-on'].rps >= 0.5 * r.nginx.rps)} |`,
      `| p99 added over direct < 2 ms at 50 % load | ${added.toFixed(2)} ms — ${ok(added < 2)} |`,
      `| gate on ≥ 20 × Portkey | ${r.portkey?.rps ? (r['gate-on'].rps / r.portkey.rps).toFixed(1) + ' ×' : 'n/a'} — ${ok(r.portkey?.rps && r['gate-on'].rps >= 20 * r.portkey.rps)} |`);
  }
} else if (mode === 'streams') {
  const rows = lines.map((l) => JSON.parse(l));
  out.push('', '## Concurrent slow streams (20 tokens, 100 ms apart, DeepSeek format)', '',
    '| streams | via | completed | errors | TTFB p50 ms | TTFB p99 ms | added p50 ms | added p99 ms | tollgate peak RSS | CPU s tollgate / sim |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of rows.filter((x) => x.via === 'tollgate')) {
    const d = rows.find((x) => x.via === 'direct' && x.n === t.n);
    for (const x of [d, t].filter(Boolean)) {
      const add = x === t && d ? [(t.r.ttfb_p50_ms - d.r.ttfb_p50_ms).toFixed(1), (t.r.ttfb_p99_ms - d.r.ttfb_p99_ms).toFixed(1)] : ['', ''];
      const cpu = x.cpu_s !== undefined ? `${x.cpu_s.toFixed(2)} / ${x.sim_cpu_s.toFixed(2)}` : '';
      out.push(`| ${fmt(x.n)} | ${x.via} | ${fmt(x.r.completed)} | ${fmt(x.r.errors)} | ${x.r.ttfb_p50_ms} | ${x.r.ttfb_p99_ms} | ${add[0]} | ${add[1]} | ${x.rss_kb ? fmt(x.rss_kb / 1024) + ' MB' : ''} | ${cpu} |`);
    }
  }
  const t = rows.find((x) => x.via === 'tollgate' && x.n === 2000);
  const d = rows.find((x) => x.via === 'direct' && x.n === 2000);
  if (t && d) {
    const added = t.r.ttfb_p99_ms - d.r.ttfb_p99_ms;
    out.push('', '| target (2,000 streams) | result |', '|---|---|',
      `| no errors | ${fmt(t.r.errors)} errors — ${ok(t.r.errors === 0 && t.r.completed === 2000)} |`,
      `| added TTFB p99 < 2 ms | ${added.toFixed(1)} ms — ${ok(added < 2)} |`,
      `| tollgate RSS < 300 MB | ${fmt(t.rss_kb / 1024)} MB — ${ok(t.rss_kb < 300 * 1024)} |`);
  }
} else if (mode === 'scale') {
  const r = {};
  for (const l of lines) { const [k, ...v] = l.split(/\s+/); r[k] = v; }
  const [users, rows, loadS, ...size] = r.meta;
  const ratio = Number(r.full[0]) / Number(r.empty[0]);
  out.push('', '## Scale: the hot path with a full database', '',
    `Loaded ${fmt(users)} users and ${fmt(rows)} ledger rows with COPY in ${loadS} s (database ${size.join(' ')}).`, '',
    '| database | requests/s | p50 ms | p99 ms | errors |', '|---|---:|---:|---:|---:|',
    `| empty | ${fmt(r.empty[0])} | ${r.empty[1]} | ${r.empty[2]} | ${r.empty[3]} |`,
    `| ${fmt(users)} users, ${fmt(rows)} rows | ${fmt(r.full[0])} | ${r.full[1]} | ${r.full[2]} | ${r.full[3]} |`,
    '', `Full / empty: ${ratio.toFixed(3)} — target within 10 %: ${ok(ratio >= 0.9)}.`);
}
console.log(out.join('\n'));
