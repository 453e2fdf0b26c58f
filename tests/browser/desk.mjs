// Clerk desk scenario against a running gateway (real peers), driven by the pytest wrapper
// tests/test_desk_browser.py.
//
// argv[2] (JSON): {base_url, username, password, out_dir, ticket_text, reply,
//                  expect_draft?, markup_text?, knowledge?, hand_back?, admin?: {username, password},
//                  approve?: {question, answer, service?}, timeout_ms?}
// Protocol on stdout: one line `READY` once the clerk is logged in and the queue is live over the websocket
// (the pytest side then makes a citizen hand off), and a last line `RESULT {...}` on success.
// Any failed check exits non-zero with a message naming the step.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, check, args } from './lib.mjs';

const a = args();
const base = a.base_url.replace(/\/$/, '');
const timeout = a.timeout_ms || 120000;
const out = a.out_dir || '.';
mkdirSync(out, { recursive: true });

const step = (s) => console.error(`[desk] ${s}`);
const problems = [];

// Script errors, CSP violations and unexpected API errors fail the scenario. The only expected failure is the
// 401 of GET /api/auth/me before logging in (the browser logs it as "Failed to load resource").
function watch(p, name) {
  p.on('pageerror', (e) => problems.push(`${name}page error: ${e.message}`));
  p.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push(`${name}console error: ${m.text()}`);
    }
  });
  p.on('response', (r) => {
    const path = new URL(r.url()).pathname;
    if (r.status() >= 400 && !(r.status() === 401 && path === '/api/auth/me')) {
      problems.push(`${name}HTTP ${r.status()} for ${r.request().method()} ${path}`);
    }
  });
}

const browser = await launch();
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, locale: 'zh-CN' });
  page = await context.newPage();
  page.setDefaultTimeout(20000);
  watch(page, '');
  page.on('dialog', (d) => d.accept());

  // 1. Log in with the keyboard.
  step('login');
  await page.goto(`${base}/desk`);
  await page.locator('#login-view').waitFor({ state: 'visible' });
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'login-username',
    'the login form has focus on load');
  await page.keyboard.insertText(a.username);
  await page.keyboard.press('Tab');
  await page.keyboard.insertText(a.password);
  await page.keyboard.press('Enter');
  await page.locator('#desk-view').waitFor({ state: 'visible' });
  check((await page.locator('#who').textContent()).includes(a.username), 'the header names the clerk');

  // 2. The queue is live over the websocket.
  step('waiting for the websocket');
  await page.locator('#conn[data-state="live"]').waitFor({ timeout: 15000 });
  const before = new Set(await page.locator('#queue-list > li').evaluateAll((els) => els.map((e) => e.dataset.id)));
  console.log('READY');

  // 3. The citizen's ticket arrives without a reload.
  step('waiting for the ticket to arrive live');
  const handle = await page.waitForFunction((known) => {
    const li = [...document.querySelectorAll('#queue-list > li')].find((e) => !known.includes(e.dataset.id));
    return li ? li.dataset.id : null;
  }, [...before], { timeout, polling: 200 });
  const ticketId = await handle.jsonValue();
  check(await page.locator('#conn').getAttribute('data-state') === 'live', 'the ticket came over the websocket');
  const item = page.locator(`#q-${ticketId}`);
  check(await item.getAttribute('data-status') === 'pending', 'the new ticket is pending');
  const timer1 = await item.locator('.qtimer').textContent();
  check(/等待 \d\d:\d\d/.test(timer1), `the queue item shows a wait timer (${timer1})`);
  await page.waitForTimeout(2100);
  const timer2 = await item.locator('.qtimer').textContent();
  check(timer1 !== timer2, `the wait timer ticks (${timer1} → ${timer2})`);

  // 4. Open it with j/k + Enter.
  step(`opening ticket #${ticketId} with the keyboard`);
  await page.locator('#queue-list').focus();
  for (let i = 0; i < 50; i += 1) {
    if (await page.locator('#queue-list').getAttribute('aria-activedescendant') === `q-${ticketId}`) break;
    await page.keyboard.press('j');
  }
  check(await page.locator('#queue-list').getAttribute('aria-activedescendant') === `q-${ticketId}`,
    'j selects the new ticket');
  await page.keyboard.press('Enter');
  await page.locator('#ticket-title', { hasText: `#${ticketId}` }).waitFor();
  await page.locator('#transcript .msg.citizen', { hasText: a.ticket_text }).first().waitFor();

  if (a.markup_text) {
    await page.locator('#transcript .msg.citizen', { hasText: a.markup_text }).first().waitFor();
    const shown = await page.locator('#transcript .msg.citizen .mtext').allTextContents();
    check(shown.some((t) => t.includes(a.markup_text)), 'markup in a citizen message is shown as literal text');
    check(await page.locator('img, b, #transcript script').count() === 0,
      'no markup from a message became an element (transcript and queue)');
  }

  // 5. The bot's draft is pre-filled in the reply box.
  const detail = await page.evaluate(async (id) => (await fetch(`/api/desk/tickets/${id}`)).json(), Number(ticketId));
  const boxValue = await page.locator('#reply-text').inputValue();
  check(boxValue === (detail.draft || ''), 'the reply box holds the draft from the API');
  if (a.expect_draft) check(boxValue.trim().length > 0, 'the draft is not empty');
  check(await page.locator('#candidates-list > li').count() === (detail.ticket.candidates || []).length,
    'every bot candidate is listed');

  // 6. Claim with c.
  step('claim');
  await page.locator('#ticket-title').focus();
  await page.keyboard.press('c');
  await page.locator('#ticket-status', { hasText: '处理中' }).waitFor();
  check(await page.locator('#act-claim').isDisabled(), 'claim is disabled once the clerk holds the ticket');
  check(await page.locator('#reply-text').inputValue() === boxValue, 'claiming keeps the draft');

  // 7. r focuses the reply box; the clerk edits the draft into the answer and sends with Ctrl+Enter.
  step('reply');
  await page.keyboard.press('r');
  check(await page.evaluate(() => document.activeElement.id) === 'reply-text', 'r focuses the reply box');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(a.reply);
  await page.keyboard.press('Control+Enter');
  await page.locator('#transcript .msg.clerk', { hasText: a.reply }).waitFor();
  await page.waitForFunction(() => document.getElementById('reply-text').value === '', null, { timeout: 10000 })
    .catch(() => check(false, 'the reply box is cleared after sending'));

  // 8. An internal note looks different from a reply.
  step('note');
  await page.keyboard.press('Escape');
  await page.keyboard.press('n');
  await page.keyboard.insertText('内部备注：已电话确认');
  await page.keyboard.press('Control+Enter');
  await page.locator('#transcript .msg.note', { hasText: '已电话确认' }).waitFor();

  // 9. 存为知识: the form is pre-filled with the citizen's question and the clerk's reply.
  let candidate = null;
  let approved = null;
  if (a.knowledge) {
    step('存为知识');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Shift+K');
    await page.locator('#knowledge-dialog[open]').waitFor();
    const q = await page.locator('#kn-questions').inputValue();
    check(q.trim().length > 0, 'the question is pre-filled');
    check(await page.locator('#kn-answer').inputValue() === a.reply, 'the answer is pre-filled with the reply');
    await page.locator('#knowledge-form button[type=submit]').click();
    await page.locator('#knowledge-dialog').waitFor({ state: 'hidden' });
    await page.locator('.toast.ok', { hasText: '知识候选' }).waitFor();
    candidate = q.split('\n')[0].trim();
  }

  await page.screenshot({ path: join(out, 'desk.png') });

  // 10. Priority, snooze, then hand the conversation back to the bot.
  if (a.hand_back) {
    step('priority, snooze, hand back');
    await page.keyboard.press('Escape');
    await page.keyboard.press('p');
    check(await page.evaluate(() => document.activeElement.id) === 'act-priority', 'p focuses the priority');
    await page.locator('#act-priority').selectOption('3');
    await page.locator(`#q-${ticketId} .badge.prio`, { hasText: '紧急' }).waitFor();
    await page.keyboard.press('Escape');
    await page.keyboard.press('s');
    await page.locator('#snooze-dialog[open]').waitFor();
    await page.locator('#snooze-dialog [data-minutes="15"]').click();
    await page.locator('#snooze-minutes').press('Enter');
    await page.locator('#ticket-status', { hasText: '暂挂' }).waitFor();
    check(/暂挂至/.test(await page.locator('#ticket-facts').textContent()), 'the snooze end is shown');
    await page.locator('#ticket-title').focus();
    await page.keyboard.press('b'); // the confirm() is accepted by the dialog handler above
    await page.locator('#ticket-status', { hasText: '已办结' }).waitFor({ timeout: 60000 });
    check(await page.locator('#act-resolve').isDisabled(), 'a resolved ticket takes no more actions');
    await page.locator(`#q-${ticketId}`).waitFor({ state: 'detached' });
  }

  // 11. Admin: the candidate waits for review; statistics and the audit log load.
  if (a.admin) {
    step('admin page');
    const ctx2 = await browser.newContext({ viewport: { width: 1366, height: 860 }, locale: 'zh-CN' });
    const admin = await ctx2.newPage();
    watch(admin, 'admin ');
    await admin.goto(`${base}/admin`);
    await admin.locator('#login-username').fill(a.admin.username);
    await admin.locator('#login-password').fill(a.admin.password);
    await admin.locator('#login-password').press('Enter');
    await admin.locator('#admin-view').waitFor({ state: 'visible' });
    if (candidate) {
      // Throws (timeout) unless a draft candidate holds the question.
      await admin.waitForFunction((q) => [...document.querySelectorAll('#cand-list textarea')]
        .some((t) => t.value.includes(q)), candidate);
    }
    await admin.screenshot({ path: join(out, 'admin.png') });
    if (candidate && a.approve) {
      // Edit the candidate, approve it, and see that the index was rebuilt and reloaded.
      step('admin: edit and approve the candidate');
      const cid = await admin.evaluate((q) => [...document.querySelectorAll('#cand-list .cand')]
        .find((c) => c.querySelector('textarea').value.includes(q)).dataset.id, candidate);
      await admin.locator(`#cq-${cid}`).fill(a.approve.question);
      await admin.locator(`#ca-${cid}`).fill(a.approve.answer);
      if (a.approve.service !== undefined) await admin.locator(`#cs-${cid}`).fill(a.approve.service);
      const started = Date.now();
      await admin.locator(`.cand[data-id="${cid}"] button`, { hasText: '批准并发布' }).click();
      const result = admin.locator(`.cand[data-id="${cid}"] .cand-result`, { hasText: '已批准' });
      await result.waitFor({ timeout: a.approve_timeout_ms || 300000 });
      approved = { id: Number(cid), message: await result.textContent(), seconds: (Date.now() - started) / 1000 };
      check(approved.message.includes('索引'), `the page says what happened to the index (${approved.message})`);
      await admin.screenshot({ path: join(out, 'admin-approved.png') });
    }
    await admin.locator('#tab-stats').click();
    await admin.locator('#stats-cards .stat').first().waitFor();
    await admin.screenshot({ path: join(out, 'admin-stats.png') });
    await admin.keyboard.press('ArrowRight');
    await admin.locator('#panel-audit').waitFor({ state: 'visible' });
    await admin.locator('#audit-rows tr').first().waitFor();
    await ctx2.close();
  }

  check(problems.length === 0, `no script errors in the pages:\n${problems.join('\n')}`);
  console.log(`RESULT ${JSON.stringify({ ticket_id: Number(ticketId), conversation_id: detail.ticket.conversation_id,
    candidate, approved })}`);
} catch (e) {
  if (page) await page.screenshot({ path: join(out, 'desk-failure.png') }).catch(() => {});
  console.error(String(e && e.stack ? e.stack : e));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
