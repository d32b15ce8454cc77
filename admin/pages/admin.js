// The admin page: overview, the user list (search, filter, sort, paging), configure
// and reset dialogs, the reset log and the CSV export, all from /api/v1/budget/admin/*.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const A = '/api/v1/budget/admin';
  const PAGE = 20;
  let offset = 0;
  let target = null;  // the list item being configured or reset
  const names = new Map();  // user id -> name, for the reset log

  async function loadAll() {
    try {
      await loadOverview();
      $('app').hidden = false;
      TG.notice('');
      await Promise.all([loadUsers(), loadLog()]);
    } catch (e) {
      handle(e);
    }
  }

  function handle(e) {
    if (e.status === 401) return TG.rejectKey('This key was not accepted: ' + e.message);
    if (e.code === 'admin_only') {
      $('app').hidden = true;
      return TG.notice('This key belongs to a user, not an administrator, so the admin data stays closed. Users see their own budget at /dashboard/budget.', true);
    }
    TG.notice(e.message, true);
  }

  async function loadOverview() {
    const o = await TG.api('GET', A + '/overview');
    $('month-spend').textContent = TG.usd(o.periods.this_month.spend_usd);
    $('month-requests').textContent = TG.number(o.periods.this_month.requests) + ' requests, ' + TG.usd(o.reserved_usd) + ' in flight';
    $('week-spend').textContent = TG.usd(o.periods.this_week.spend_usd);
    $('today-spend').textContent = 'today ' + TG.usd(o.periods.today.spend_usd);
    $('levels').replaceChildren(...Object.keys(TG.LEVELS).map((l) =>
      TG.el('li', { 'data-level': l }, TG.badge(l), TG.el('strong', {}, String(o.users_per_alert_level[l])))));
    $('providers').replaceChildren(...(o.by_provider.length ? o.by_provider.map((p) =>
      TG.el('li', {}, TG.el('span', {}, p.provider), TG.el('strong', {}, TG.usd(p.spend_usd))))
      : [TG.el('li', {}, 'No spend yet')]));
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of ['search', 'level', 'role', 'sort']) {
      const v = $('filters').elements[name].value.trim();
      if (v) q.set(name, v);
    }
    q.set('limit', PAGE);
    q.set('offset', offset);
    return q.toString();
  }

  async function loadUsers() {
    const list = await TG.api('GET', A + '/list?' + query());
    $('filters-error').textContent = '';
    const body = $('users').tBodies[0];
    if (!list.items.length) {
      body.replaceChildren(TG.el('tr', {}, TG.el('td', { colspan: '8' }, 'No users match.')));
    }
    else {
      body.replaceChildren(...list.items.map((item) => {
        const u = item.user, s = item.status;
        names.set(u.id, u.name);
        const who = TG.el('td', {}, TG.el('strong', {}, u.name), TG.el('br'),
          TG.el('span', { class: 'meta' }, [u.email, u.external_id].filter(Boolean).join(' · ') || '—'));
        return TG.el('tr', { 'data-user': u.name },
          who,
          TG.el('td', {}, u.role + (u.disabled ? ' (disabled)' : '')),
          TG.el('td', {}, TG.badge(s.alert_level)),
          TG.el('td', { class: 'num' }, TG.usd(s.spend_usd)),
          TG.el('td', { class: 'num' }, TG.usd(s.limit_usd)),
          TG.el('td', { class: 'num' }, Number(s.percent).toFixed(2)),
          TG.el('td', {}, s.enforcement),
          TG.el('td', {},
            TG.el('button', { type: 'button', class: 'secondary', 'aria-label': 'Configure ' + u.name, onclick: () => openConfigure(item) }, 'Configure'),
            ' ',
            TG.el('button', { type: 'button', class: 'danger', 'aria-label': 'Reset ' + u.name, onclick: () => openReset(item) }, 'Reset')));
      }));
    }
    const last = Math.min(offset + PAGE, list.total);
    $('users-page').textContent = list.total ? `${offset + 1}–${last} of ${list.total}` : '0 users';
    $('prev').disabled = offset === 0;
    $('next').disabled = last >= list.total;
  }

  async function loadLog() {
    const log = await TG.api('GET', A + '/reset-log?limit=50');
    const body = $('reset-log').tBodies[0];
    if (!log.items.length) {
      body.replaceChildren(TG.el('tr', {}, TG.el('td', { colspan: '5' }, 'No resets yet.')));
      return;
    }
    body.replaceChildren(...log.items.map((r) => TG.el('tr', {},
      TG.el('td', {}, TG.when(r.reset_at)),
      TG.el('td', {}, names.get(r.user_id) || '#' + r.user_id),
      TG.el('td', {}, r.actor),
      TG.el('td', { class: 'num' }, TG.usd(r.spend_before_usd)),
      TG.el('td', {}, r.reason || '—'))));
  }

  function openConfigure(item) {
    target = item;
    const s = item.settings;
    const f = $('configure-form');
    TG.clearErrors(f);
    $('configure-title').textContent = 'Configure ' + item.user.name;
    $('c-limit').value = TG.plainUsd(s.limit_usd);
    $('c-period').value = s.period;
    $('c-days').value = s.custom_period_days;
    $('c-tz').value = s.timezone;
    $('c-enforcement').value = s.enforcement;
    $('c-yellow').value = s.thresholds.yellow;
    $('c-orange').value = s.thresholds.orange;
    $('c-red').value = s.thresholds.red;
    $('c-visible').checked = s.budget_visible;
    $('c-modify').checked = s.can_modify_limit;
    $('c-reset').checked = s.can_reset;
    $('c-max').value = TG.plainUsd(s.max_self_limit_usd);
    $('configure-dialog').showModal();
  }

  const asInt = (v) => (/^\d+$/.test(v.trim()) ? Number(v) : v.trim());

  $('configure-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    const settings = {
      limit_usd: $('c-limit').value.trim(),
      period: $('c-period').value,
      custom_period_days: asInt($('c-days').value),
      timezone: $('c-tz').value.trim(),
      enforcement: $('c-enforcement').value,
      thresholds: { yellow: asInt($('c-yellow').value), orange: asInt($('c-orange').value), red: asInt($('c-red').value) },
      budget_visible: $('c-visible').checked,
      can_modify_limit: $('c-modify').checked,
      can_reset: $('c-reset').checked,
      max_self_limit_usd: $('c-max').value.trim() || null,
    };
    try {
      await TG.api('PUT', A + '/configure', { user_id: target.user.id, settings });
      $('configure-dialog').close();
      await loadAll();  // clears old notices first, so the confirmation stays
      TG.notice('Saved the budget of ' + target.user.name + '.');
    } catch (err) {
      if (err.status === 401) { $('configure-dialog').close(); return TG.rejectKey(err.message); }
      TG.showError(f, err);
    }
  });
  $('configure-cancel').addEventListener('click', () => $('configure-dialog').close());

  function openReset(item) {
    target = item;
    $('reset-form').reset();
    TG.clearErrors($('reset-form'));
    $('admin-reset-title').textContent = 'Reset the budget of ' + item.user.name;
    $('reset-dialog').showModal();
  }
  $('reset-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await TG.api('POST', A + '/reset/' + target.user.id, { reason: $('r-reason').value });
      $('reset-dialog').close();
      await loadAll();  // clears old notices first, so the confirmation stays
      TG.notice('Reset the budget of ' + target.user.name + '.');
    } catch (err) {
      TG.showError(e.target, err);
    }
  });
  $('reset-cancel').addEventListener('click', () => $('reset-dialog').close());

  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    offset = 0;
    loadUsers().catch((err) => {
      if (err.status === 400) $('filters-error').textContent = err.message;
      else handle(err);
    });
  });
  $('prev').addEventListener('click', () => { offset = Math.max(0, offset - PAGE); loadUsers().catch(handle); });
  $('next').addEventListener('click', () => { offset += PAGE; loadUsers().catch(handle); });

  // The export needs the key in a header, so it is fetched and handed to the browser
  // as a file; the key never goes into a link.
  $('export').addEventListener('click', async () => {
    try {
      const res = await fetch(A + '/usage/export.csv', { headers: { Authorization: 'Bearer ' + sessionStorage.getItem('tollgate-key') } });
      if (!res.ok) throw new Error('export failed: HTTP ' + res.status);
      const url = URL.createObjectURL(await res.blob());
      const a = TG.el('a', { href: url, download: 'tollgate-usage.csv' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      TG.notice(err.message, true);
    }
  });

  TG.setupSignIn(loadAll);
})();
