// Turns bench/run's raw figures (stdin) into the Markdown tables of RESULTS.md.
//   node table.mjs rps      lines "name rps p50_ms p99_ms errors"
//   node table.mjs streams  JSON lines {via, n, round?, rss_kb?, cpu_s?, sim_cpu_s?,
//                           r: {streams, completed, errors, ttfb_p50_ms, ttfb_p99_ms}}
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
  // One line per (via, n, round); each row of the table is the median over the rounds,
  // "added" the median of the rounds' differences (tollgate minus direct, same round).
  const rows = lines.map((l) => JSON.parse(l));
  const median = (xs) => {
    const s = xs.map(Number).sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const sum = (xs) => xs.reduce((a, b) => a + Number(b), 0);
  const counts = [...new Set(rows.map((x) => x.n))];
  const rounds = new Set(rows.map((x) => x.round ?? 1)).size;
  const of = (via, n) => rows.filter((x) => x.via === via && x.n === n);
  const added = (n, field) => of('tollgate', n).map((t) => {
    const d = of('direct', n).find((x) => (x.round ?? 1) === (t.round ?? 1));
    return d ? t.r[field] - d.r[field] : NaN;
  }).filter((x) => !Number.isNaN(x));
  const summary = {};
  out.push('', '## Concurrent slow streams (20 tokens, 100 ms apart, DeepSeek format)', '',
    `Rounds: ${rounds}; in each, N streams direct and N through tollgate at once, one in two each way from one client; ` +
      `completed and errors are totals over the rounds, times the rounds' medians.`, '',
    '| streams | via | completed | errors | TTFB p50 ms | TTFB p99 ms | added p50 ms | added p99 ms | tollgate peak RSS | CPU s tollgate / sim (both ways) |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const n of counts) {
    for (const via of ['direct', 'tollgate']) {
      const xs = of(via, n);
      if (!xs.length) continue;
      const s = {
        completed: sum(xs.map((x) => x.r.completed)), errors: sum(xs.map((x) => x.r.errors)), runs: xs.length,
        p50: median(xs.map((x) => x.r.ttfb_p50_ms)), p99: median(xs.map((x) => x.r.ttfb_p99_ms)),
        rss: Math.max(...xs.map((x) => x.rss_kb ?? 0)),
      };
      const t = via === 'tollgate';
      const add = t ? [median(added(n, 'ttfb_p50_ms')).toFixed(1), median(added(n, 'ttfb_p99_ms')).toFixed(1)] : ['', ''];
      const cpu = t ? `${median(xs.map((x) => x.cpu_s)).toFixed(2)} / ${median(xs.map((x) => x.sim_cpu_s)).toFixed(2)}` : '';
      if (t) summary[n] = { ...s, added99: median(added(n, 'ttfb_p99_ms')), each: added(n, 'ttfb_p99_ms') };
      out.push(`| ${fmt(n)} | ${via} | ${fmt(s.completed)} | ${fmt(s.errors)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${add[0]} | ${add[1]} | ${t ? fmt(s.rss / 1024) + ' MB' : ''} | ${cpu} |`);
    }
  }
  const t = summary[2000];
  if (t) {
    out.push('', `Added TTFB p99 at 2,000 streams, round by round: ${t.each.map((x) => x.toFixed(1)).join(', ')} ms.`,
      '', '| target (2,000 streams) | result |', '|---|---|',
      `| no errors | ${fmt(t.errors)} errors — ${ok(t.errors === 0 && t.completed === 2000 * t.runs)} |`,
      `| added TTFB p99 < 2 ms | ${t.added99.toFixed(1)} ms — ${ok(t.added99 < 2)} |`,
      `| tollgate RSS < 300 MB | ${fmt(t.rss / 1024)} MB — ${ok(t.rss < 300 * 1024)} |`);
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
