// Drives the audit page (/admin) in headless Chromium, as an investigator would, and asserts
// what it shows against the admin API. Run by tests/api/audit_page.rs, which starts the server
// and builds the user's history; it passes:
//   AUDIT_URL        the server, http://127.0.0.1:PORT
//   AUDIT_TOKEN      the admin token
//   AUDIT_USER       the username to search for; AUDIT_USER_ID its id
//   AUDIT_CLIENTS    JSON [[ip, userAgent], ...] the sessions were opened from
//   AUDIT_ATTACKER   JSON [ip, userAgent] that replayed an old refresh token
//   AUDIT_CHROMIUM   the browser (/usr/bin/chromium)
//   AUDIT_SCREENSHOT where to write the full-page screenshot
// Exits 0 when every check holds; otherwise prints what failed and exits 1.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const URL_BASE = env('AUDIT_URL');
const TOKEN = env('AUDIT_TOKEN');
const USER = env('AUDIT_USER');
const USER_ID = env('AUDIT_USER_ID');
const CLIENTS = JSON.parse(env('AUDIT_CLIENTS'));
const ATTACKER = JSON.parse(env('AUDIT_ATTACKER'));
const SCREENSHOT = env('AUDIT_SCREENSHOT');
const STEP_TIMEOUT = 15_000;

// A hung browser must not hang the test run.
setTimeout(() => {
  console.error('audit_page.mjs: gave up after 120 s');
  process.exit(1);
}, 120_000).unref();

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok - ${message}`);
}

async function aliveFromApi(at) {
  const response = await fetch(
    `${URL_BASE}/api/admin/users/${USER_ID}/sessions?at=${encodeURIComponent(at)}`,
    { headers: { Authorization: `Bearer ${TOKEN}` } },
  );
  if (!response.ok) throw new Error(`the API answered ${response.status} for ?at=${at}`);
  const body = await response.json();
  return body.data.map((s) => s.id).sort();
}

const browser = await chromium.launch({
  executablePath: process.env.AUDIT_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
page.setDefaultTimeout(STEP_TIMEOUT);
const problems = [];
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => {
  // CSP violations and failed requests show up here as errors.
  if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
});

let failed = false;
try {
  await page.goto(`${URL_BASE}/admin`);
  check(await page.locator('#token-input').isVisible(), 'the page asks for the admin token');

  await page.fill('#token-input', TOKEN);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#workspace:not([hidden])');
  check(
    await page.evaluate(() => sessionStorage.getItem('tokenledger.adminToken')) === TOKEN &&
      await page.evaluate(() => localStorage.length) === 0,
    'the token is kept in sessionStorage only',
  );

  // The picker: search by name, pick the user.
  await page.fill('#user-search', USER.slice(0, 3));
  const pick = page.locator(`#user-results button[data-user-id="${USER_ID}"]`);
  await pick.waitFor();
  check((await pick.innerText()).includes(USER), `the picker finds ${USER}`);
  await pick.click();

  await page.waitForSelector('#timeline svg [data-kind="session"]');
  await page.waitForSelector('#alive[data-at]:not([aria-busy])');
  const count = (selector) => page.locator(`#timeline svg ${selector}`).count();
  const bars = await count('[data-kind="session"]');
  check(bars >= 2, `session bars are drawn (${bars})`);
  const rotations = await count('[data-kind="rotation"]');
  check(rotations >= 3, `rotation ticks are drawn (${rotations})`);
  const revocations = await count('[data-kind="revocation"]');
  check(revocations >= 1, `revocation marks are drawn (${revocations})`);
  const clears = await count('[data-kind="clear"]');
  check(clears >= 1, `clear marks are drawn (${clears})`);
  const expiries = await count('[data-kind="expiry"]');
  check(expiries >= 1, `expiry marks are drawn (${expiries})`);
  const reuses = await count('[data-kind="reuse"]');
  check(reuses >= 1, `reuse marks are drawn (${reuses})`);
  check(await page.locator('#legend li').count() >= 6, 'a legend explains the marks');
  const resets = await count('[data-kind="reset-requested"]');
  check(resets === 1, `the reset request is marked (${resets})`);
  await page.locator('#timeline svg [data-kind="reset-requested"]').hover();
  const resetTip = await page.locator('#tooltip').innerText();
  check(resetTip.includes('Password reset asked for') && resetTip.includes('Code digest'),
    'hovering the reset mark names it and its code digest');

  // Hovering shows where each session came from.
  const tips = [];
  for (const bar of await page.locator('#timeline svg [data-kind="session"]').all()) {
    await bar.hover({ position: { x: 2, y: 7 } });
    await page.waitForSelector('#tooltip:not([hidden])');
    tips.push(await page.locator('#tooltip').innerText());
  }
  for (const [ip, agent] of CLIENTS) {
    check(
      tips.some((tip) => tip.includes(ip) && tip.includes(agent)),
      `hovering a session shows ${ip} and "${agent}"`,
    );
  }
  await page.locator('#timeline svg [data-kind="reuse"]').first().hover();
  const reuseTip = await page.locator('#tooltip').innerText();
  check(
    reuseTip.includes('reuse') && reuseTip.includes(ATTACKER[0]) && reuseTip.includes(ATTACKER[1]),
    'hovering the reuse mark shows who presented the old token',
  );
  await page.locator('#timeline svg [data-kind="rotation"]').first().hover();
  const rotationTip = await page.locator('#tooltip').innerText();
  check(/Rotation to generation \d+/.test(rotationTip), 'hovering a tick names the rotation');

  // The slider: each position's alive sessions are the API's, and they change as it moves.
  const slider = page.locator('#at-slider');
  const box = await slider.boundingBox();
  const seen = new Map();
  const moveTo = async (fraction) => {
    await page.mouse.click(box.x + 8 + fraction * (box.width - 16), box.y + box.height / 2);
    await page.waitForFunction(() => {
      const alive = document.getElementById('alive');
      return !alive.hasAttribute('aria-busy') &&
        alive.getAttribute('data-at') === document.getElementById('at-slider').getAttribute('data-at');
    });
    const at = await page.locator('#alive').getAttribute('data-at');
    const shown = (await page.locator('#alive-list tr').evaluateAll(
      (rows) => rows.map((row) => row.getAttribute('data-session-id')),
    )).sort();
    const counted = Number(await page.locator('#alive-count').innerText());
    const highlighted = (await page.locator('#timeline svg .bar.is-alive-at').evaluateAll(
      (nodes) => nodes.map((node) => node.getAttribute('data-session-id')),
    )).sort();
    const expected = await aliveFromApi(at);
    check(
      JSON.stringify(shown) === JSON.stringify(expected) && counted === expected.length,
      `at ${at} the page lists the API's ${expected.length} alive session(s)`,
    );
    check(
      JSON.stringify(highlighted) === JSON.stringify(expected),
      `at ${at} the timeline highlights those sessions`,
    );
    seen.set(fraction, expected);
    return expected.length;
  };
  for (const fraction of [0.01, 0.25, 0.45, 0.6, 0.8, 0.99]) await moveTo(fraction);
  const distinct = new Set([...seen.values()].map((ids) => ids.join(',')));
  check(distinct.size >= 3, `moving the slider changes the alive sessions (${distinct.size} sets)`);

  // For the picture: the moment with the most sessions alive, and the reuse incident's tooltip.
  const [busiest] = [...seen.entries()].sort((a, b) => b[1].length - a[1].length)[0];
  await moveTo(busiest);
  await page.locator('#timeline svg [data-kind="reuse"]').first().hover();
  await page.waitForSelector('#tooltip:not([hidden])');

  check(problems.length === 0, `no page or console errors${problems.length ? ':\n  ' + problems.join('\n  ') : ''}`);
} catch (error) {
  failed = true;
  console.error(error.stack || String(error));
  if (problems.length) console.error(problems.join('\n'));
} finally {
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true }).catch((e) => console.error(e.message));
  console.log(`screenshot: ${SCREENSHOT}`);
  await browser.close();
}
process.exit(failed ? 1 : 0);
