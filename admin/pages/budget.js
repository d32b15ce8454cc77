// The user status page: the budget card, settings, breakdown and history, all from
// /api/v1/budget/*, refreshed every 30 s without reloading the page.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 30000;
  let timer = null;
  let pages = [0];  // history cursors: pages[i] is the "before" of page i (0 = newest)
  let page = 0;
  let settings = null;

  async function refresh() {
    try {
      const status = await TG.api('GET', '/api/v1/budget/status');
      $('app').hidden = false;
      TG.notice('');
      showStatus(status);
      await Promise.all([loadBreakdown(), loadHistory(), settings ? null : loadSettings()]);
      $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      handle(e);
    }
  }

  function handle(e) {
    if (e.status === 401) return TG.rejectKey('This key was not accepted: ' + e.message);
    if (e.code === 'budget_hidden') {
      $('app').hidden = true;
      return TG.notice('Your administrator has hidden this budget. It is still enforced; ask them for the figures.');
    }
    if (e.code === 'no_budget') {
      $('app').hidden = true;
      return TG.notice('This is the admin token; it has no budget of its own. Open the admin page instead.');
    }
    TG.notice(e.message, true);
  }

  function showStatus(s) {
    const pct = Number(s.percent);
    $('progress-fill').style.width = Math.min(pct, 100) + '%';
    $('progress-fill').className = 'fill level-' + s.alert_level;
    $('progress').setAttribute('aria-valuenow', String(Math.min(pct, 100)));
    $('progress').setAttribute('aria-valuetext', `${pct.toFixed(2)} %, ${s.alert_level}`);
    $('level').replaceChildren(TG.badge(s.alert_level));
    $('percent').textContent = pct.toFixed(2) + ' %';
    $('spend').textContent = TG.usd(s.spend_usd);
    $('limit').textContent = TG.usd(s.limit_usd);
    $('remaining').textContent = TG.usd(s.remaining_usd);
    $('reserved').textContent = TG.usd(s.reserved_usd);
    $('projected').textContent = TG.usd(s.projected_spend_usd);
    $('reset-in').textContent = TG.duration(new Date(s.next_reset) - new Date());
    $('reset-in').title = TG.when(s.next_reset);
    $('period').textContent = `${s.period} period from ${TG.when(s.window_start)} to ${TG.when(s.next_reset)} (${s.timezone}), enforcement: ${s.enforcement}`;
    $('reset-open').hidden = !s.can_reset;
    $('spend').dataset.nanos = s.spend_nanos;
  }

  async function loadBreakdown() {
    const b = await TG.api('GET', '/api/v1/budget/usage/breakdown');
    const chart = $('chart');
    if (!b.by_model.length) {
      chart.replaceChildren(TG.el('p', { class: 'meta' }, 'No spending in this period yet.'));
      return;
    }
    // Bar lengths compare nanos as integers; BigInt keeps them exact.
    const max = b.by_model.reduce((m, r) => (BigInt(r.cost_nanos) > m ? BigInt(r.cost_nanos) : m), 1n);
    chart.replaceChildren(...b.by_model.map((r) => {
      const width = Number((BigInt(r.cost_nanos) * 1000n) / max) / 10;
      const label = `${r.provider} / ${r.model}`;
      const fill = TG.el('span', { class: 'bar-fill' });
      fill.style.width = width + '%';
      return TG.el('div', { class: 'bar-row', role: 'listitem' },
        TG.el('span', { class: 'bar-label' }, label),
        TG.el('span', { class: 'bar-track', 'aria-hidden': 'true' }, fill),
        TG.el('span', { class: 'bar-value' }, `${TG.usd(r.cost_usd)} · ${TG.number(r.requests)} req`));
    }));
  }

  async function loadHistory() {
    const before = pages[page];
    const h = await TG.api('GET', '/api/v1/budget/usage/history?limit=10' + (before ? '&before=' + before : ''));
    const body = $('history').tBodies[0];
    if (!h.items.length) {
      body.replaceChildren(TG.el('tr', {}, TG.el('td', { colspan: '7' }, 'No requests yet.')));
    } else {
      body.replaceChildren(...h.items.map((r) => TG.el('tr', {},
        TG.el('td', {}, TG.when(r.time)),
        TG.el('td', {}, r.provider),
        TG.el('td', {}, r.model),
        TG.el('td', { class: 'num' }, TG.number(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens)),
        TG.el('td', { class: 'num' }, TG.number(r.output_tokens)),
        TG.el('td', { class: 'num' }, TG.usd(r.cost_usd)),
        TG.el('td', {}, String(r.status) + (r.streamed ? ' · stream' : '') + (r.estimated ? ' · estimated' : '')))));
    }
    pages[page + 1] = h.next_before || null;
    $('older').disabled = !h.next_before;
    $('newer').disabled = page === 0;
    $('page-no').textContent = 'Page ' + (page + 1);
  }

  async function loadSettings() {
    settings = await TG.api('GET', '/api/v1/budget/settings');
    const canLimit = settings.editable.includes('limit_usd');
    $('limit-input').value = TG.plainUsd(settings.limit_usd);
    $('limit-input').disabled = !canLimit;
    let reason = canLimit ? '' : settings.locked.limit_usd;
    if (canLimit && settings.max_self_limit_usd) reason = 'You may set up to ' + TG.usd(settings.max_self_limit_usd) + '.';
    $('limit-reason').textContent = reason;
    $('t-yellow').value = settings.thresholds.yellow;
    $('t-orange').value = settings.thresholds.orange;
    $('t-red').value = settings.thresholds.red;
    $('locked-note').textContent = 'Period, time zone and enforcement are set by your administrator.';
  }

  $('settings-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = e.target;
    TG.clearErrors(form);
    $('settings-saved').textContent = '';
    const change = {};
    if (!$('limit-input').disabled && $('limit-input').value.trim() !== TG.plainUsd(settings.limit_usd)) {
      change.limit_usd = $('limit-input').value.trim();
    }
    const t = {};
    for (const level of ['yellow', 'orange', 'red']) {
      const v = $('t-' + level).value.trim();
      if (String(settings.thresholds[level]) !== v) t[level] = /^\d+$/.test(v) ? Number(v) : v;
    }
    if (Object.keys(t).length) change.thresholds = t;
    if (!Object.keys(change).length) { $('settings-saved').textContent = 'Nothing to change.'; return; }
    try {
      settings = await TG.api('PUT', '/api/v1/budget/settings', change);
      await loadSettings();
      $('settings-saved').textContent = 'Saved.';
      await refresh();
    } catch (err) {
      if (err.status === 401) return TG.rejectKey(err.message);
      TG.showError(form, err);
    }
  });

  $('reset-open').addEventListener('click', () => {
    $('reset-form').reset();
    TG.clearErrors($('reset-form'));
    $('reset-dialog').showModal();
  });
  $('reset-dialog').addEventListener('close', async () => {
    if ($('reset-dialog').returnValue !== 'confirm') return;
    try {
      const reason = $('reset-reason').value.trim();
      await TG.api('POST', '/api/v1/budget/reset', reason ? { reason } : {});
      pages = [0]; page = 0;
      await refresh();  // clears old notices first, so the confirmation stays
      TG.notice('Your budget was reset. A new period starts now.');
    } catch (err) {
      TG.notice(err.message, true);
    }
  });

  $('older').addEventListener('click', () => { page += 1; loadHistory().catch(handle); });
  $('newer').addEventListener('click', () => { page = Math.max(0, page - 1); loadHistory().catch(handle); });
  $('refresh').addEventListener('click', () => refresh());

  TG.setupSignIn(() => {
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, REFRESH_MS);
  });
})();
