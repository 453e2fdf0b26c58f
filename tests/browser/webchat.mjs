// The unmodified rasa-webchat 1.0.1 bundle (lib/index.js, fetched by tests/test_widget.py with `npm pack`) holds a
// conversation against the gateway's Rasa socket.io endpoint — embedded on a page of another origin (a small HTTP
// server on another loopback port), so cross-origin socket.io is exercised as on a real portal.
// Run:  node webchat.mjs '{"base_url": …, "bundle": "/path/to/lib/index.js", "out_dir": …}'  → prints `RESULT {…}`.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { args, check, launch } from './lib.mjs';

const a = args();
const TIMEOUT = a.timeout_ms || 60000;
const log = (...m) => console.error('[webchat]', ...m);

const page_html = `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>第三方门户 · rasa-webchat</title><link rel="icon" href="data:,"></head>
<body style="font-family: sans-serif; margin: 2rem">
<h1>某区政务服务门户（rasa-webchat 接入演示）</h1>
<p>本页使用未经修改的 rasa-webchat 1.0.1，连接 govbot 网关的 Rasa socket.io 接口。</p>
<script src="/rasa-webchat.js"></script>
<script>
  WebChat.default({
    socketUrl: ${JSON.stringify(a.base_url)},
    socketPath: '/socket.io/',
    initPayload: '/greet',
    customData: { language: 'zh', region: '北京' },
    title: '政务智能客服',
    subtitle: 'rasa-webchat',
    inputTextFieldHint: '请输入您的问题',
    params: { storage: 'local' },
  }, null);
</script>
</body></html>`;

// The third-party portal: another origin on loopback (Chromium's private-network rules allow loopback → loopback).
const portal = createServer((req, res) => {
  if (req.url === '/rasa-webchat.js') {
    res.writeHead(200, { 'content-type': 'application/javascript; charset=utf-8' });
    res.end(readFileSync(a.bundle));
  } else {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page_html);
  }
});
await new Promise((resolve) => portal.listen(0, '127.0.0.1', resolve));
const PORTAL = `http://127.0.0.1:${portal.address().port}`;

const browser = await launch();
const result = {};
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 860 }, locale: 'zh-CN' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${PORTAL}/`);

  await page.locator('.rw-launcher').click({ timeout: 20000 });
  const responses = page.locator('.rw-response .rw-message-text'); // (.rw-response alone also holds the typing dots)
  // initPayload /greet → the bot's greeting
  await responses.first().waitFor({ timeout: TIMEOUT });
  result.greeting = (await responses.first().textContent()).trim();
  check(result.greeting.length > 0, 'the bot greets after the init payload');

  const session = await page.evaluate(() => JSON.parse(window.localStorage.getItem('chat_session') || '{}').session_id);
  check(typeof session === 'string' && session.length >= 16, `rasa-webchat keeps the server's session id: ${session}`);
  result.session_id = session;

  async function ask(text, expect) {
    const n = await responses.count();
    await page.locator('.rw-new-message').fill(text);
    await page.locator('.rw-new-message').press('Enter');
    const deadline = Date.now() + TIMEOUT;
    while (Date.now() < deadline) {
      const all = await responses.allTextContents();
      const fresh = all.slice(n).join('\n');
      const hit = all.slice(n).find((t) => expect.test(t));
      if (hit) return hit;
      // a question with buttons (e.g. which 情形): answer with the first reply button
      const replies = page.locator('.rw-replies .rw-reply');
      if (await replies.count() && !expect.test(fresh)) {
        log('choosing quick reply', await replies.first().textContent());
        await replies.first().click();
      }
      await page.waitForTimeout(200);
    }
    throw new Error(`check failed: no reply matching ${expect} to ${text}: ${(await responses.allTextContents()).slice(n)}`);
  }

  result.answer = (await ask('身份证丢了怎么补办', /居民身份证补领/)).slice(0, 200);
  check(/来源：/.test(result.answer), 'the answer text carries its citation');
  result.fee = (await ask('那要多少钱', /】收费标准/)).slice(0, 200);
  check(result.fee.includes('居民身份证补领'), 'the follow-up keeps the service');
  await page.screenshot({ path: `${a.out_dir}/webchat.png` });

  // after a reload the same session continues (rasa-webchat resends the stored session_id)
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('.rw-response').length > 0, null, { timeout: 20000 })
    .catch(() => {});
  const again = await page.evaluate(() => JSON.parse(window.localStorage.getItem('chat_session') || '{}').session_id);
  check(again === session, `the session survives a reload (${again} vs ${session})`);

  check(errors.length === 0, `no page errors: ${errors.join(' | ')}`);
  console.log(`RESULT ${JSON.stringify(result)}`);
} finally {
  await browser.close();
  portal.close();
}
