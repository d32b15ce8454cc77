// Shared by the tollgate pages: the key in sessionStorage (never in a URL), calls to
// the REST API on this port, money and time as text, and field errors beside fields.
'use strict';
const TG = (() => {
  const STORE = 'tollgate-key';

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  const key = () => sessionStorage.getItem(STORE) || '';
  const signIn = (k) => sessionStorage.setItem(STORE, k.trim());
  const signOut = () => sessionStorage.removeItem(STORE);

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + key() };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'tollgate is not reachable; try again in a moment');
    }
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const e = (json && json.error) || {};
      throw new ApiError(res.status, e.code || 'error', e.message || 'HTTP ' + res.status, e.field);
    }
    return json;
  }

  // "12.340000000" -> "$12.34", "0.000129740" -> "$0.00012974": trailing zeros go,
  // nothing else, so every figure is exact to the nano-dollar. Text in, text out:
  // money is never a float here either.
  function usd(text) {
    if (text === null || text === undefined) return '—';
    let s = String(text);
    const negative = s.startsWith('-');
    if (negative) s = s.slice(1);
    let [whole, frac = ''] = s.split('.');
    frac = frac.replace(/0+$/, '');
    if (frac.length < 2) frac = frac.padEnd(2, '0');
    whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return (negative ? '-$' : '$') + whole + '.' + frac;
  }

  // A decimal string for an input: "30.000000000" -> "30", "12.500000000" -> "12.5".
  function plainUsd(text) {
    if (text === null || text === undefined) return '';
    const [whole, frac = ''] = String(text).split('.');
    const f = frac.replace(/0+$/, '');
    return f ? whole + '.' + f : whole;
  }

  function duration(ms) {
    if (ms <= 0) return 'now';
    const min = Math.floor(ms / 60000), h = Math.floor(min / 60), d = Math.floor(h / 24);
    if (d > 0) return `${d} d ${h % 24} h`;
    if (h > 0) return `${h} h ${min % 60} min`;
    return `${Math.max(min, 1)} min`;
  }

  const when = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const number = (n) => Number(n).toLocaleString('en-US');

  const LEVELS = { GREEN: 'On track', YELLOW: 'Notice', ORANGE: 'Warning', RED: 'Critical', EXCEEDED: 'Exceeded' };

  // el('td', {class: 'num'}, 'text', child...): text only ever goes in as text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k === 'class') node.className = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function badge(level) {
    return el('span', { class: 'badge level-' + level }, `${level} · ${LEVELS[level] || level}`);
  }

  // Clears a form's messages, then shows an API error beside its field (elements
  // with data-error-for="field"), or in the form's .form-error.
  function clearErrors(form) {
    form.querySelectorAll('.field-error, .form-error').forEach((n) => { n.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((n) => n.removeAttribute('aria-invalid'));
  }
  function showError(form, err) {
    clearErrors(form);
    const field = err.field || '';
    const root = field.split('.')[0];
    const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`) ||
                 form.querySelector(`[data-error-for="${CSS.escape(root)}"]`);
    (slot || form.querySelector('.form-error')).textContent = err.message;
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`) || form.querySelector(`[name="${CSS.escape(root)}"]`);
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
  }

  // The sign-in form (built here for both pages, labelled by the section's
  // data-key-label): shown until a key is stored, then onReady() runs.
  function setupSignIn(onReady) {
    const section = document.getElementById('signin');
    const form = el('form', { id: 'signin-form' },
      el('label', { for: 'key' }, section.dataset.keyLabel),
      el('div', { class: 'row' },
        el('input', { id: 'key', name: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true }),
        el('button', { type: 'submit' }, 'Sign in')),
      el('p', { class: 'form-error', id: 'signin-error', role: 'alert' }));
    section.replaceChildren(el('h2', { id: 'signin-title' }, 'Sign in'), form,
      el('p', { class: 'hint' }, 'The key stays in this browser tab only and is sent in request headers, never in a URL.'));
    const out = document.getElementById('signout');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const input = form.querySelector('input[name="key"]');
      if (!input.value.trim()) return;
      signIn(input.value);
      input.value = '';
      start();
    });
    out.addEventListener('click', () => { signOut(); location.replace(location.pathname); });
    function start() {
      const signedIn = key() !== '';
      section.hidden = signedIn;
      out.hidden = !signedIn;
      if (signedIn) onReady();
    }
    start();
  }

  // A sign-in that failed: back to the form with the reason.
  function rejectKey(message) {
    signOut();
    document.getElementById('app').hidden = true;
    document.getElementById('signin').hidden = false;
    document.getElementById('signout').hidden = true;
    document.getElementById('signin-error').textContent = message;
  }

  function notice(text, isError) {
    const n = document.getElementById('notice');
    n.textContent = text || '';
    n.hidden = !text;
    n.classList.toggle('error', !!isError);
  }

  return { api, usd, plainUsd, duration, when, number, el, badge, showError, clearErrors, setupSignIn, rejectKey, notice, LEVELS };
})();
