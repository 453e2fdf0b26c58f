// The portal widget holds a conversation on the demo page (/) against a real gateway (real Rasa + action server).
// Run by tests/test_widget.py:  node widget.mjs '{"base_url": …, "out_dir": …}'
// Talks to pytest over stdout: prints `HANDOFF {"ticket_id", …}` once the citizen waits for a clerk, then waits
// until the clerk's reply (sent by pytest through the desk API) shows up live; ends with `RESULT {…}`.
import { createServer } from 'node:http';
import { args, check, launch } from './lib.mjs';

const a = args();
const BASE = a.base_url;
const OUT = a.out_dir;
const TIMEOUT = a.timeout_ms || 60000;
const CLERK_REPLY = a.clerk_reply;
const log = (...m) => console.error('[widget]', ...m);
const say = (tag, obj) => console.log(`${tag} ${JSON.stringify(obj)}`);

// Everything of the widget lives in its open shadow root; playwright's CSS locators pierce it.
const inShadow = (page, fn, arg) => page.evaluate(
  ([body, x]) => new Function('root', 'x', body)(document.getElementById('govbot-widget').shadowRoot, x),
  [`return (${fn.toString()})(root, x);`, arg]);

// The log scrolls smoothly: wait until it reached the newest message (before a screenshot).
async function settled(page) {
  await page.waitForFunction(() => {
    const log = document.getElementById('govbot-widget').shadowRoot.getElementById('gb-log');
    return log.scrollTop + log.clientHeight >= log.scrollHeight - 2;
  }, null, { timeout: 5000 }).catch(() => {});
  await page.waitForTimeout(200);
}

async function cardsCount(page) {
  return page.locator('.gb-card').count();
}

async function sendByKeyboard(page, text) {
  const input = page.locator('#gb-input');
  await input.focus();
  await input.fill('');
  await page.keyboard.type(text, { delay: 5 });
  await page.keyboard.press('Enter'); // with no suggestion chosen, Enter sends what was typed
  check(await input.inputValue() === '' || text.length > a.max_chars, 'the input is cleared once sent');
}

// Waits for a new bot answer: either cards (answer) or quick replies (a question such as the 情形); answers it.
async function answerCards(page, before, pickFirstChoice = true) {
  const deadline = Date.now() + TIMEOUT;
  while (Date.now() < deadline) {
    if (await cardsCount(page) > before) return;
    const chips = page.locator('.gb-msg:last-child .gb-chips:not(.gb-hot) button:not([disabled])');
    if (pickFirstChoice && await chips.count() > 0) {
      log('the bot asks with buttons; choosing', await chips.first().textContent());
      await chips.first().focus();
      await page.keyboard.press('Enter');
      pickFirstChoice = false;
    }
    await page.waitForTimeout(150);
  }
  throw new Error('check failed: no answer card within the timeout');
}

const browser = await launch();
const result = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('dialog', (d) => { errors.push(`unexpected dialog: ${d.message()}`); d.dismiss(); });

  await page.goto(`${BASE}/`);
  check((await page.title()).includes('政务服务网'), 'the demo portal page is served at /');
  await page.waitForFunction(() => window.GovBot && window.GovBot.version, null, { timeout: 10000 });
  check(await page.evaluate(() => window.io === undefined), 'the vendored socket.io client stays out of the page globals');

  // -- keyboard: open the window from the bubble ------------------------------------------------------------------------
  const launcher = page.getByRole('button', { name: '打开政务智能客服' });
  await launcher.waitFor({ timeout: 10000 });
  check(await launcher.getAttribute('aria-expanded') === 'false', 'the bubble says the window is closed');
  await launcher.focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: '政务智能客服' });
  await dialog.waitFor({ timeout: 5000 });
  check(await launcher.getAttribute('aria-expanded') === 'true', 'the bubble says the window is open');
  check(await inShadow(page, (root) => root.activeElement && root.activeElement.id) === 'gb-input',
    'opening the window puts the focus into the input');
  const logRole = page.locator('[role="log"]');
  check(await logRole.getAttribute('aria-live') === 'polite', 'the conversation is a live log');

  // -- 猜你想问 --------------------------------------------------------------------------------------------------------
  const hot = page.locator('.gb-hot button');
  await hot.first().waitFor({ timeout: 10000 });
  result.hot = await hot.allTextContents();
  check(result.hot.length >= 3 && result.hot.includes('身份证丢了怎么补办'), `猜你想问 offers questions: ${result.hot}`);

  // -- input suggestions, keyboard only ---------------------------------------------------------------------------------
  await page.locator('#gb-input').focus();
  await page.keyboard.type('护照', { delay: 30 });
  const options = page.locator('#gb-suggest [role="option"]');
  await options.first().waitFor({ timeout: 5000 });
  result.suggestions = await options.locator('span').allTextContents();
  check(result.suggestions.some((s) => s.includes('护照')), `suggestions for 护照: ${result.suggestions}`);
  check(await page.locator('#gb-input').getAttribute('aria-expanded') === 'true', 'the combobox says it is expanded');
  await page.keyboard.press('ArrowDown');
  const activeId = await page.locator('#gb-input').getAttribute('aria-activedescendant');
  check(activeId && await page.locator(`#${activeId}`).getAttribute('aria-selected') === 'true',
    'ArrowDown selects the first suggestion (aria-activedescendant)');
  await page.keyboard.press('Escape');
  check(await page.locator('#gb-suggest').isHidden(), 'Escape closes the suggestion list');
  check(await dialog.isVisible(), '… and not the window');
  await page.locator('#gb-input').fill('');

  // -- the question → the answer card ------------------------------------------------------------------------------------
  let before = await cardsCount(page);
  await sendByKeyboard(page, '身份证丢了怎么补办');
  await answerCards(page, before);
  await page.waitForTimeout(500); // the second card of the answer (materials + procedure)
  const card = page.locator('.gb-card').first();
  const cardText = await card.textContent();
  check(cardText.includes('居民身份证补领'), `the card names the service: ${cardText.slice(0, 80)}`);
  check(/来源：.*更新于 \d{4}-\d{2}-\d{2}/.test(cardText), 'the card cites its source with the date');
  const materials = page.locator('.gb-card .gb-check li');
  if (await materials.count()) {
    result.material_tags = await page.locator('.gb-card .gb-check .gb-tag').allTextContents();
    check(result.material_tags.some((t) => t === '原件' || t.includes('复印件')), `materials show 原件/复印件: ${result.material_tags}`);
    check(result.material_tags.some((t) => /\d+份/.test(t)), 'materials show the number of copies');
    check(result.material_tags.some((t) => t.startsWith('仅限')), 'materials show the 情形 they apply to');
    check(await page.locator('.gb-card .gb-check .gb-name').first().textContent() !== '', 'materials have names');
    // the checklist can be ticked with the keyboard
    await materials.first().locator('input').focus();
    await page.keyboard.press('Space');
    check(await materials.first().locator('input').isChecked(), 'a checklist item is ticked with Space');
  }
  result.card_labels = await page.locator('.gb-card > .gb-tags > .gb-tag:first-child').allTextContents();
  check(result.card_labels.some((l) => l === '申请材料' || l === '办理流程'), `answer cards: ${result.card_labels}`);
  if (result.card_labels.includes('办理流程')) {
    check(await page.locator('.gb-card .gb-steps li').count() >= 2, 'the procedure is a numbered list of steps');
  }
  // the plain-text twin of each card is not shown twice
  const bubbleTexts = await page.locator('.gb-bot .gb-bubble > p').allTextContents();
  check(!bubbleTexts.some((t) => t.startsWith('【居民身份证补领】')), 'the card replaces its plain-text rendering');

  await page.locator('.gb-card').first().scrollIntoViewIfNeeded();
  await page.waitForTimeout(400);
  await page.screenshot({ path: `${OUT}/widget-answer.png` });

  // -- 好差评 with the keyboard --------------------------------------------------------------------------------------------
  const rate = page.getByRole('group', { name: '请对这条回答进行评价' }).last();
  const rateButtons = await rate.locator('button').allTextContents();
  check(JSON.stringify(rateButtons) === JSON.stringify(['非常满意', '满意', '基本满意', '不满意', '非常不满意']),
    `five rating levels: ${rateButtons}`);
  await rate.getByRole('button', { name: '评价：满意', exact: true }).focus();
  await page.keyboard.press('Enter');
  await page.getByText('感谢您的评价！（满意）').waitFor({ timeout: 10000 });
  result.rated = '满意';

  // -- follow-up: 那要多少钱 ----------------------------------------------------------------------------------------------
  before = await cardsCount(page);
  await sendByKeyboard(page, '那要多少钱');
  await answerCards(page, before, false);
  const feeCard = page.locator('.gb-card').last();
  const feeText = await feeCard.textContent();
  check(feeText.includes('收费标准') && feeText.includes('居民身份证补领'), `the follow-up keeps the service: ${feeText.slice(0, 120)}`);
  result.fee = feeText.slice(0, 200);

  // -- screenshots: normal and 长辈版 ---------------------------------------------------------------------------------------
  await page.waitForTimeout(300); // the rating row under the newest card
  await settled(page);
  await page.screenshot({ path: `${OUT}/widget.png` });
  const elder = page.getByRole('button', { name: '长辈版（大字号、高对比度）' });
  await elder.focus();
  await page.keyboard.press('Enter');
  check(await page.locator('.gb-elder-toggle').getAttribute('aria-pressed') === 'true', '长辈版 is on (aria-pressed)');
  const fontPx = await inShadow(page, (root) => parseFloat(getComputedStyle(root.querySelector('.gb-bubble')).fontSize));
  check(fontPx >= 20, `长辈版 text is large (${fontPx}px)`);
  await settled(page);
  await page.screenshot({ path: `${OUT}/widget-elder.png` });
  await page.getByRole('button', { name: '切换到标准版' }).click();
  result.elder_font_px = fontPx;

  // -- every button has a name --------------------------------------------------------------------------------------------
  const unnamed = await inShadow(page, (root) => Array.from(root.querySelectorAll('button'))
    .filter((b) => !(b.getAttribute('aria-label') || b.textContent.trim())).length);
  check(unnamed === 0, `${unnamed} buttons without an accessible name`);

  // -- bad input: empty and oversize --------------------------------------------------------------------------------------
  await page.locator('#gb-input').fill('   ');
  await page.locator('#gb-input').press('Enter');
  check((await page.locator('.gb-hint-msg').textContent()).includes('请输入'), 'an empty message is refused with a hint');
  const tooLong = '很'.repeat(a.max_chars + 5);
  await page.locator('#gb-input').evaluate((el, v) => { el.value = v; }, tooLong); // past maxlength, as a paste could
  await page.locator('#gb-input').press('Enter');
  await page.locator('.gb-notice', { hasText: '消息太长' }).waitFor({ timeout: 10000 });
  await page.waitForFunction(() => {
    const el = document.getElementById('govbot-widget').shadowRoot.getElementById('gb-input');
    return el.value.length > 0;
  }, null, { timeout: 5000 });
  check(await page.locator('#gb-input').inputValue() === tooLong, 'the refused text is back in the input box (nothing lost)');
  await page.locator('#gb-input').fill('');

  // -- a second tab of the same session -----------------------------------------------------------------------------------
  const tab2 = await context.newPage();
  await tab2.goto(`${BASE}/`);
  await tab2.waitForFunction(() => window.GovBot && window.GovBot.connected(), null, { timeout: 15000 });

  // -- handoff ------------------------------------------------------------------------------------------------------------
  await sendByKeyboard(page, '我要人工');
  const banner = page.locator('.gb-banner');
  await banner.filter({ hasText: '正在为您转接人工' }).waitFor({ timeout: TIMEOUT });
  const status = await page.evaluate(() => window.GovBot.status());
  check(status.state === 'pending' && status.ticket_id, `the widget knows the ticket: ${JSON.stringify(status)}`);
  check(status.queue_position >= 1 && (await banner.textContent()).includes(`排队第 ${status.queue_position} 位`),
    `the queue position is shown: ${await banner.textContent()}`);
  check(await page.locator('.gb-human').isHidden(), 'the 转人工 button hides while waiting for a clerk');
  result.ticket_id = status.ticket_id;
  say('HANDOFF', { ticket_id: status.ticket_id });

  // -- the clerk's reply arrives live (in both tabs), shown as text ------------------------------------------------------
  const clerk = page.locator('.gb-clerk .gb-bubble', { hasText: CLERK_REPLY.slice(0, 8) });
  await clerk.waitFor({ timeout: TIMEOUT });
  check(await clerk.textContent() === CLERK_REPLY, 'the clerk reply is shown verbatim, as text');
  check(await clerk.locator('img, b, script').count() === 0, 'markup in a clerk reply is not interpreted');
  await banner.filter({ hasText: '正在为您服务' }).waitFor({ timeout: 10000 });
  result.clerk_label = await page.locator('.gb-clerk .gb-who').last().textContent();
  await tab2.locator('.gb-clerk .gb-bubble', { hasText: CLERK_REPLY.slice(0, 8) }).waitFor({ timeout: 10000 });
  check(await tab2.locator('.gb-user .gb-bubble', { hasText: '我要人工' }).count() >= 1,
    'the other tab shows the citizen message too');
  await tab2.close();

  // the citizen writes markup to the clerk: shown as text
  const markup = '<img src=x onerror="window.__xss=1">谢谢';
  await sendByKeyboard(page, markup);
  await page.locator('.gb-user .gb-bubble', { hasText: '谢谢' }).last().waitFor();
  check(await page.locator('.gb-user .gb-bubble').last().textContent() === markup, 'citizen text shown verbatim');
  check(await page.locator('.gb-user img').count() === 0, 'citizen markup is not interpreted');
  await page.waitForTimeout(500);
  check(await page.evaluate(() => window.__xss === undefined), 'no script ran');

  // -- reload: the conversation comes back ----------------------------------------------------------------------------------
  await page.reload();
  await page.waitForFunction(() => window.GovBot && window.GovBot.connected(), null, { timeout: 15000 });
  await page.locator('#gb-panel').waitFor({ state: 'visible', timeout: 5000 }); // it was open: it stays open
  await page.locator('.gb-clerk .gb-bubble', { hasText: CLERK_REPLY.slice(0, 8) }).waitFor({ timeout: 10000 });
  const restoredUser = await page.locator('.gb-user .gb-bubble').allTextContents();
  check(restoredUser.includes('身份证丢了怎么补办') && restoredUser.includes('那要多少钱') && restoredUser.includes(markup),
    `history restored after reload: ${restoredUser}`);
  check(await page.locator('.gb-card').count() >= 2, 'the answer cards come back after reload');
  check((await banner.textContent()).includes('正在为您服务'), 'the handoff status comes back after reload');
  result.history_user_messages = restoredUser.length;

  // -- Escape closes the window, the focus goes back to the bubble -----------------------------------------------------------
  await page.locator('#gb-input').focus();
  await page.keyboard.press('Escape');
  check(await page.locator('#gb-panel').isHidden(), 'Escape closes the window');
  check(await inShadow(page, (root) => root.activeElement && root.activeElement.className) === 'gb-launcher',
    'the focus returns to the bubble');

  check(errors.length === 0, `no page errors: ${errors.join(' | ')}`);
  await context.close();

  // -- another site embeds the widget (cross-origin, data-title / data-region), on a phone ------------------------------------
  const embed = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><link rel="icon" href="data:,">
      <meta name="viewport" content="width=device-width, initial-scale=1"><title>某区政务服务</title></head>
      <body><h1>某区政务服务</h1><p>第三方页面，只加了一行 script。</p>
      <script src="${BASE}/widget.js" data-title="某区政务客服" data-region="北京" async></script></body></html>`);
  });
  await new Promise((resolve) => embed.listen(0, '127.0.0.1', resolve));
  try {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: 'zh-CN' });
    const mobile = await phone.newPage();
    const mobileErrors = [];
    mobile.on('pageerror', (e) => mobileErrors.push(String(e)));
    await mobile.goto(`http://127.0.0.1:${embed.address().port}/`);
    await mobile.getByRole('button', { name: '打开某区政务客服' }).tap();
    check(await mobile.getByRole('dialog', { name: '某区政务客服' }).isVisible(), 'data-title names the window');
    const box = await mobile.locator('#gb-panel').boundingBox();
    check(box && box.width >= 389 && box.height >= 800, `full-screen window on a phone: ${JSON.stringify(box)}`);
    await mobile.locator('.gb-hot button').first().waitFor({ timeout: 10000 }); // cross-origin JSON API
    // a question the bot answers with buttons: tap one
    await mobile.locator('#gb-input').fill('身份证');
    await mobile.locator('.gb-send').tap();
    const choice = mobile.locator('.gb-chips:not(.gb-hot) button', { hasText: '居民身份证补领' });
    await choice.waitFor({ timeout: TIMEOUT });
    await settled(mobile);
    await mobile.screenshot({ path: `${OUT}/widget-mobile-choices.png` });
    await choice.tap();
    check(await choice.getAttribute('aria-pressed') === 'true', 'the chosen button is marked');
    await mobile.locator('.gb-user .gb-bubble', { hasText: '居民身份证补领' }).waitFor({ timeout: 5000 });
    await mobile.locator('.gb-card').first().waitFor({ timeout: TIMEOUT });
    await mobile.locator('.gb-card').first().scrollIntoViewIfNeeded();
    await mobile.screenshot({ path: `${OUT}/widget-mobile.png` });
    result.embed_session = await mobile.evaluate(() => {
      const key = Object.keys(localStorage).find((k) => k.startsWith('govbot:') && k.endsWith(':session'));
      return key && localStorage.getItem(key);
    });
    check(mobileErrors.length === 0, `no page errors on the embedding page: ${mobileErrors.join(' | ')}`);
    await phone.close();
  } finally {
    embed.close();
  }

  // -- the typing indicator, with the gateway's frames delayed by 1.2 s ---------------------------------------------------------
  const slow = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
  const slowPage = await slow.newPage();
  await slowPage.routeWebSocket(/\/socket\.io\//, (ws) => {
    const server = ws.connectToServer();
    server.onMessage((m) => { setTimeout(() => ws.send(m), m.startsWith('42["bot_uttered"') || m.startsWith('43') ? 1200 : 0); });
  });
  await slowPage.goto(`${BASE}/`);
  await slowPage.evaluate(() => window.GovBot.ask('办护照要多少钱'));
  const typing = slowPage.locator('.gb-typing');
  await typing.waitFor({ state: 'visible', timeout: 5000 });
  check((await typing.textContent()).includes('正在输入'), 'the typing indicator shows while the answer is slow');
  await slowPage.locator('.gb-card').first().waitFor({ timeout: TIMEOUT });
  await typing.waitFor({ state: 'hidden', timeout: 5000 });
  result.typing = true;
  await slow.close();

  say('RESULT', result);
} finally {
  await browser.close();
}
