// The two pages in Debian's chromium (playwright-core, no downloaded browser), run by
// run_pages_test.sh against a real stack. Tests run in order and share the stack:
// Alice already made four real requests through the proxy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const SIDE = process.env.TG_SIDE;
const { ALICE_KEY, BOB_KEY, ADMIN_KEY, ARTIFACTS } = process.env;
const LEDGER_NANOS = BigInt(process.env.LEDGER_NANOS);
const LEDGER_ROWS = Number(process.env.LEDGER_ROWS);
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 375, height: 740 };

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});
after(async () => { await browser?.close(); });

async function api(method, path, key, body) {
  const res = await fetch(SIDE + path, {
    method,
    headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

async function userId(name) {
  const r = await api('GET', '/api/v1/budget/admin/users?search=' + name, ADMIN_KEY);
  return r.json.items.find((u) => u.name === name).id;
}

// Opens a page and signs in with the keyboard only: Tab to the key field, type, Enter.
async function signIn(path, key, viewport = DESKTOP, { fakeClock = false, refused = false } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  if (fakeClock) await page.clock.install();
  await page.goto(SIDE + path);
  // A paused fake clock: the 30 s refresh happens only when a test moves time on.
  if (fakeClock) await page.clock.pauseAt(Date.now() + 1000);
  for (let i = 0; i < 5 && await page.evaluate(() => document.activeElement.id) !== 'key'; ++i) {
    await page.keyboard.press('Tab');
  }
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key', 'Tab reaches the key field');
  await page.keyboard.type(key);
  await page.keyboard.press('Enter');
  assert.ok(!page.url().includes(key) && !page.url().includes('tg-'), 'the key never goes into the URL');
  if (!refused) assert.equal(await page.evaluate(() => sessionStorage.getItem('tollgate-key')), key);
  return { page, context, errors };
}

// Every input and select has a label (a <label for>, a wrapping label or aria-label).
async function assertLabelled(page) {
  const unlabelled = await page.$$eval('input, select', (els) => els
    .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map((e) => e.id || e.name));
  assert.deepEqual(unlabelled, []);
}

async function assertFitsPhone(page) {
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= PHONE.width, `no sideways scrolling at 375 px (page is ${width} px wide)`);
}

async function shoot(page, name) {
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
}

function usd(nanos) { // the figure as the page writes it, computed here independently
  const n = BigInt(nanos);
  const whole = n / 1_000_000_000n;
  let frac = (n % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return '$' + whole.toLocaleString('en-US') + '.' + frac;
}

let alice; // Alice's status page stays open across tests, with a fake clock

test('a user signs in and sees the numbers of their real proxied requests', async () => {
  alice = await signIn('/dashboard/budget', ALICE_KEY, DESKTOP, { fakeClock: true });
  const { page } = alice;
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForFunction(() => document.querySelectorAll('#history tbody tr').length > 0);
  assert.equal(await page.getAttribute('#spend', 'data-nanos'), LEDGER_NANOS.toString());
  assert.equal(await page.textContent('#spend'), usd(LEDGER_NANOS));
  assert.equal(await page.textContent('#limit'), '$1.00');
  assert.equal(await page.textContent('#remaining'), usd(1_000_000_000n - LEDGER_NANOS));
  const percent = Number((LEDGER_NANOS * 10000n) / 1_000_000_000n) / 100;
  assert.equal(await page.textContent('#percent'), percent.toFixed(2) + ' %');
  assert.match(await page.textContent('#level'), /GREEN · On track/, 'the level is written, not only coloured');
  // The breakdown names both providers; the history lists every request.
  const chart = await page.textContent('#chart');
  assert.match(chart, /mistral \/ mistral-small-latest/);
  assert.match(chart, /deepseek \/ deepseek-chat/);
  assert.equal(await page.locator('#history tbody tr').count(), LEDGER_ROWS);
  // No permission yet: the limit is locked with the reason, and there is no reset button.
  assert.equal(await page.isDisabled('#limit-input'), true);
  assert.match(await page.textContent('#limit-reason'), /not allowed/);
  assert.equal(await page.isHidden('#reset-open'), true);
  await assertLabelled(page);
  assert.deepEqual(alice.errors, []);
  await shoot(page, 'status-desktop');
});

test('the status page reads well at 375 px', async () => {
  const { page, context } = await signIn('/dashboard/budget', ALICE_KEY, PHONE);
  await page.waitForFunction(() => document.querySelectorAll('#history tbody tr').length > 0);
  await assertFitsPhone(page);
  await shoot(page, 'status-phone');
  await context.close();
});

test('a user without the permission cannot change their limit', async () => {
  const { page, context } = await signIn('/dashboard/budget', BOB_KEY);
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForFunction(() => document.getElementById('limit-input').value !== '');
  assert.equal(await page.isDisabled('#limit-input'), true);
  // The API refuses too, whatever a page would send.
  const r = await api('PUT', '/api/v1/budget/settings', BOB_KEY, { limit_usd: '50' });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.field, 'limit_usd');
  await context.close();
});

test('an admin finds a user, configures them, resets with a reason and sees the log', async () => {
  const { page, context, errors } = await signIn('/dashboard/admin/budget', ADMIN_KEY);
  await page.waitForSelector('#app:not([hidden])');
  assert.equal(await page.textContent('#month-spend'), usd(LEDGER_NANOS));
  assert.match(await page.textContent('#levels'), /GREEN · On track\s*3/);
  await page.fill('#search', 'app-alice');
  await page.press('#search', 'Enter');
  await page.waitForFunction(() => document.querySelectorAll('#users tbody tr').length === 1);
  assert.equal(await page.getAttribute('#users tbody tr', 'data-user'), 'alice');
  await assertLabelled(page);
  await shoot(page, 'admin-desktop');

  await page.click('button[aria-label="Configure alice"]');
  await page.waitForSelector('#configure-dialog[open]');
  // A broken rule comes back from the API and shows beside its field.
  await page.fill('#c-yellow', '95');
  await page.click('#configure-save');
  const error = page.locator('#configure-form [data-error-for="thresholds"]');
  await error.waitFor();
  assert.match(await error.textContent(), /strictly increasing/);
  await page.fill('#c-yellow', '50');
  await page.fill('#c-limit', '2');
  await page.check('#c-modify');
  await page.check('#c-reset');
  await page.fill('#c-max', '5');
  await page.click('#configure-save');
  await page.waitForSelector('#configure-dialog', { state: 'hidden' });
  await page.waitForFunction(() => /Saved the budget of alice/.test(document.getElementById('notice').textContent));
  await page.waitForFunction(() => /\$2\.00/.test(document.querySelector('#users tbody').textContent));

  await page.click('button[aria-label="Reset alice"]');
  await page.waitForSelector('#reset-dialog[open]');
  await page.click('#reset-submit'); // no reason yet
  const reasonError = page.locator('#reset-form [data-error-for="reason"]');
  await reasonError.waitFor();
  assert.match(await reasonError.textContent(), /reason/);
  await page.fill('#r-reason', 'new quarter, new budget');
  await page.click('#reset-submit');
  await page.waitForSelector('#reset-dialog', { state: 'hidden' });
  await page.waitForFunction(() => /new quarter, new budget/.test(document.querySelector('#reset-log').textContent));
  const logRow = await page.textContent('#reset-log tbody tr');
  assert.match(logRow, /alice/);
  assert.match(logRow, new RegExp('admin:'));
  assert.match(logRow, new RegExp(usd(LEDGER_NANOS).replace(/[$.]/g, '\\$&')));
  // The two refused saves above are logged by the browser as 400s; nothing else failed.
  assert.deepEqual(errors.filter((e) => !/status of 400/.test(e)), []);
  await context.close();
});

test("the user's open page shows the change at its next 30 s refresh", async () => {
  const { page } = alice;
  assert.equal(await page.textContent('#limit'), '$1.00', 'not yet refreshed');
  await page.clock.fastForward(30_000);
  await page.waitForFunction(() => document.getElementById('limit').textContent === '$2.00');
  assert.equal(await page.getAttribute('#spend', 'data-nanos'), '0', 'the reset started a new period');
  assert.equal(await page.isHidden('#reset-open'), false, 'reset is allowed now');
});

test('a user changes their limit when allowed, up to the maximum', async () => {
  const { page } = alice;
  await page.reload(); // settings are read once per load
  await page.waitForFunction(() => !document.getElementById('limit-input').disabled);
  assert.match(await page.textContent('#limit-reason'), /up to \$5\.00/);
  await page.fill('#limit-input', '6');
  await page.click('#settings-save');
  const error = page.locator('#settings-form [data-error-for="limit_usd"]');
  await error.waitFor();
  assert.match(await error.textContent(), /5\.000000000/);
  await page.fill('#limit-input', '3.5');
  await page.click('#settings-save');
  await page.waitForFunction(() => document.getElementById('settings-saved').textContent === 'Saved.');
  await page.waitForFunction(() => document.getElementById('limit').textContent === '$3.50');
  const status = await api('GET', '/api/v1/budget/status', ALICE_KEY);
  assert.equal(status.json.limit_nanos, 3_500_000_000);
});

test('a user resets when allowed, after confirming', async () => {
  const { page } = alice;
  await page.click('#reset-open');
  await page.waitForSelector('#reset-dialog[open]');
  await page.click('#reset-dialog button[value="cancel"]');
  await page.waitForSelector('#reset-dialog', { state: 'hidden' });
  const id = await userId('alice');
  let log = await api('GET', `/api/v1/budget/admin/reset-log?user_id=${id}`, ADMIN_KEY);
  assert.equal(log.json.items.length, 1, 'cancel resets nothing');
  await page.click('#reset-open');
  await page.fill('#reset-reason', 'starting over');
  await page.click('#reset-confirm');
  await page.waitForFunction(() => /was reset/.test(document.getElementById('notice').textContent));
  log = await api('GET', `/api/v1/budget/admin/reset-log?user_id=${id}`, ADMIN_KEY);
  assert.equal(log.json.items.length, 2);
  assert.equal(log.json.items[0].actor, `user:${id}`);
  assert.equal(log.json.items[0].reason, 'starting over');
  await alice.context.close();
});

test('a user key cannot open the admin data, and the page says so', async () => {
  const r = await api('GET', '/api/v1/budget/admin/list', ALICE_KEY);
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'admin_only');
  const { page, context } = await signIn('/dashboard/admin/budget', ALICE_KEY);
  await page.waitForFunction(() => /not an administrator/.test(document.getElementById('notice').textContent));
  assert.equal(await page.isHidden('#app'), true);
  assert.equal(await page.locator('#users tbody tr').count(), 0);
  await context.close();
});

test('a hidden budget shows a clear message', async () => {
  const id = await userId('bob');
  const r = await api('PUT', '/api/v1/budget/admin/configure', ADMIN_KEY,
    { user_id: id, settings: { budget_visible: false } });
  assert.equal(r.status, 200);
  const { page, context } = await signIn('/dashboard/budget', BOB_KEY);
  await page.waitForFunction(() => /hidden this budget/.test(document.getElementById('notice').textContent));
  assert.equal(await page.isHidden('#app'), true);
  await context.close();
});

test('the admin page reads well at 375 px', async () => {
  const { page, context } = await signIn('/dashboard/admin/budget', ADMIN_KEY, PHONE);
  await page.waitForFunction(() => document.querySelectorAll('#users tbody tr').length >= 3);
  await assertFitsPhone(page);
  await shoot(page, 'admin-phone');
  await context.close();
});

test('a wrong key is sent back to the sign-in form with the reason', async () => {
  const { page, context } = await signIn('/dashboard/budget', 'tg-' + 'x'.repeat(43), DESKTOP, { refused: true });
  await page.waitForFunction(() => /not accepted/.test(document.getElementById('signin-error').textContent));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('tollgate-key')), null);
  await context.close();
});
