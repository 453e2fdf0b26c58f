// govbot portal widget. Served as /widget.js inside a closure that also holds `io` (the vendored Socket.IO
// client), GOVBOT_DEFAULTS and GOVBOT_CSS (see connectors/web/__init__.py: widget_script). Plain ES2017, no build.
//
// Embed:  <script src="https://GATEWAY/widget.js" data-title="…" data-region="北京" async></script>
// Options (data-*): title, subtitle, region, greeting, open ("true"), elder ("true"), position ("left"),
//                   server (gateway base URL when the script is served from elsewhere).
// API:    window.GovBot.open() / close() / ask(text) / setElder(bool) / isElder() / status() / connected()
//
// Security: everything a citizen or a clerk wrote, and every knowledge-base string, is put into the page with
// textContent / attributes only — never innerHTML. Links are shown only for http(s) URLs.

'use strict';

if (window.GovBot && window.GovBot.version) return; // included twice: keep the first

var VERSION = '1.0';
var script = document.currentScript || (function () {
  var all = document.querySelectorAll('script[src*="widget.js"]');
  return all[all.length - 1] || null;
})();
var data = (script && script.dataset) || {};
var scriptSrc = (script && script.src) || location.href;
var base = new URL(data.server ? data.server.replace(/\/?$/, '/') : scriptSrc.replace(/widget\.js(\?.*)?$/, ''),
  location.href);
var cfg = {
  title: data.title || '政务智能客服',
  subtitle: data.subtitle || '7×24 小时在线 · 工作时间可转人工',
  region: data.region || '',
  greeting: data.greeting || '您好！我是政务智能客服，可以为您解答办事需要的材料、流程、费用、时限、地点等问题。请直接输入您的问题，例如“身份证丢了怎么补办”。',
  open: data.open === 'true',
  elder: data.elder === 'true',
  left: data.position === 'left',
  maxChars: GOVBOT_DEFAULTS.maxChars,
  scores: GOVBOT_DEFAULTS.scores,
};
var KEY = 'govbot:' + base.host + base.pathname; // one conversation per gateway, per browser profile
var TYPING_DELAY_MS = 500;
var SEND_TIMEOUT_MS = 45000;

// -- storage (private browsing may refuse it: then the session lasts as long as the page) ---------------------
var memory = {};
function load(name) {
  try { return window.localStorage.getItem(KEY + ':' + name); } catch (e) { return memory[name] || null; }
}
function save(name, value) {
  try {
    if (value === null) window.localStorage.removeItem(KEY + ':' + name);
    else window.localStorage.setItem(KEY + ':' + name, value);
  } catch (e) { memory[name] = value; }
}

// -- DOM helpers: text only ----------------------------------------------------------------------------------------
function h(tag, attrs, children) {
  var el = document.createElement(tag);
  if (attrs) {
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') el.textContent = v;
      else if (k === 'className') el.className = v;
      else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    });
  }
  (children || []).forEach(function (c) {
    if (c === null || c === undefined) return;
    el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  });
  return el;
}
var uid = 0;
function nextId(prefix) { uid += 1; return 'gb-' + prefix + '-' + uid; }
function safeUrl(value) {
  try {
    var u = new URL(String(value), location.href);
    return (u.protocol === 'http:' || u.protocol === 'https:') ? u.href : null;
  } catch (e) { return null; }
}
var SVG_NS = 'http://www.w3.org/2000/svg';
function icon() {
  var svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  var path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('fill', 'currentColor');
  path.setAttribute('d', 'M12 3C6.5 3 2 6.6 2 11c0 2.4 1.3 4.6 3.5 6.1L4.8 21l4.2-2.3c1 .2 2 .3 3 .3 5.5 0 10-3.6 10-8s-4.5-8-10-8zm-4 9.3a1.3 1.3 0 110-2.6 1.3 1.3 0 010 2.6zm4 0a1.3 1.3 0 110-2.6 1.3 1.3 0 010 2.6zm4 0a1.3 1.3 0 110-2.6 1.3 1.3 0 010 2.6z');
  svg.appendChild(path);
  return svg;
}

// -- skeleton ---------------------------------------------------------------------------------------------------
var host = h('div', { id: 'govbot-widget', 'data-govbot': VERSION });
var root = host.attachShadow ? host.attachShadow({ mode: 'open' }) : host;
var style = h('style', { text: GOVBOT_CSS });

var badge = h('span', { className: 'gb-badge', hidden: true, 'aria-hidden': 'true' });
var launcher = h('button', {
  type: 'button', className: 'gb-launcher', 'aria-haspopup': 'dialog', 'aria-expanded': 'false',
  'aria-controls': 'gb-panel', 'aria-label': '打开' + cfg.title,
}, [icon(), h('span', { text: '智能客服' }), badge]);

var elderBtn = h('button', {
  type: 'button', className: 'gb-tool gb-elder-toggle', 'aria-pressed': 'false',
  title: '长辈版：大字号、高对比度', 'aria-label': '长辈版（大字号、高对比度）',
}, ['长辈版']);
var humanBtn = h('button', { type: 'button', className: 'gb-tool gb-human', 'aria-label': '转人工客服' }, ['转人工']);
var closeBtn = h('button', { type: 'button', className: 'gb-tool gb-close', 'aria-label': '关闭对话窗口' }, ['×']);
var banner = h('div', { className: 'gb-banner', role: 'status', 'aria-live': 'polite', hidden: true });
var log = h('div', {
  className: 'gb-log', id: 'gb-log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions',
  'aria-label': '对话记录', tabindex: '0',
});
var typing = h('div', { className: 'gb-typing', role: 'status', 'aria-live': 'polite', hidden: true }, [
  h('span', { className: 'gb-dots', 'aria-hidden': 'true' }, [h('i'), h('i'), h('i')]),
  h('span', { text: '智能客服正在输入…' }),
]);
var suggestList = h('ul', { className: 'gb-suggest', id: 'gb-suggest', role: 'listbox', 'aria-label': '输入联想', hidden: true });
var input = h('input', {
  type: 'text', className: 'gb-input', id: 'gb-input', role: 'combobox', 'aria-autocomplete': 'list',
  'aria-controls': 'gb-suggest', 'aria-expanded': 'false', 'aria-describedby': 'gb-hint', autocomplete: 'off',
  enterkeyhint: 'send', maxlength: String(cfg.maxChars), placeholder: '请输入您的问题，如：身份证丢了怎么补办',
});
var hintMsg = h('span', { className: 'gb-hint-msg', role: 'alert' });
var counter = h('span', { className: 'gb-count', 'aria-hidden': 'true' });
var hint = h('div', { className: 'gb-hint', id: 'gb-hint' }, [hintMsg, counter]);
var sendBtn = h('button', { type: 'submit', className: 'gb-send', 'aria-label': '发送消息' }, ['发送']);
var form = h('form', { className: 'gb-form', 'aria-label': '发送消息', novalidate: true }, [
  suggestList,
  h('label', { className: 'gb-sr', for: 'gb-input', text: '输入您要咨询的问题，按回车发送' }),
  h('div', { className: 'gb-row' }, [input, sendBtn]),
  hint,
]);
var panel = h('section', {
  className: 'gb-panel', id: 'gb-panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'gb-title',
  'aria-describedby': 'gb-subtitle', hidden: true,
}, [
  h('header', { className: 'gb-header' }, [
    h('div', { className: 'gb-titles' }, [
      h('h2', { id: 'gb-title', text: cfg.title }),
      h('p', { id: 'gb-subtitle', text: cfg.subtitle }),
    ]),
    h('div', { className: 'gb-tools' }, [elderBtn, humanBtn, closeBtn]),
  ]),
  banner, log, typing, form,
]);
var shell = h('div', { className: 'gb' + (cfg.left ? ' gb-left' : '') }, [launcher, panel]);
root.appendChild(style);
root.appendChild(shell);

// -- state ----------------------------------------------------------------------------------------------------------
var sessionId = load('session');
var socket = null;
var confirmed = false;
var outbox = []; // messages typed before the session was confirmed
var rendered = {}; // message_id → {el, bubble, card, text}
var loadedHistory = false;
var pendingTurns = 0;
var typingTimer = null;
var unread = 0;
var status = { state: 'bot' };
var clerkName = null;

function scrollDown() { log.scrollTop = log.scrollHeight; }
function append(el) { log.appendChild(el); scrollDown(); return el; }

// -- open / close / 长辈版 ------------------------------------------------------------------------------------------
function setUnread(n) {
  unread = n;
  badge.textContent = String(n);
  badge.hidden = n === 0;
  launcher.setAttribute('aria-label', '打开' + cfg.title + (n ? '（' + n + ' 条新消息）' : ''));
}
function isOpen() { return !panel.hidden; }
function open(noFocus) {
  if (isOpen()) { if (!noFocus) input.focus(); return; }
  panel.hidden = false;
  shell.classList.add('gb-open');
  launcher.setAttribute('aria-expanded', 'true');
  setUnread(0);
  save('open', '1');
  connect();
  scrollDown();
  if (!noFocus) input.focus();
}
function close() {
  if (!isOpen()) return;
  hideSuggestions();
  panel.hidden = true;
  shell.classList.remove('gb-open');
  launcher.setAttribute('aria-expanded', 'false');
  save('open', null);
  launcher.focus();
}
function setElder(on) {
  on = !!on;
  if (host.classList) host.classList.toggle('gb-elder', on);
  elderBtn.setAttribute('aria-pressed', on ? 'true' : 'false');
  elderBtn.textContent = on ? '标准版' : '长辈版';
  elderBtn.setAttribute('aria-label', on ? '切换到标准版' : '长辈版（大字号、高对比度）');
  save('elder', on ? '1' : null);
  scrollDown(); // larger text: keep the newest message in view
}
launcher.addEventListener('click', function () { if (isOpen()) close(); else open(); });
closeBtn.addEventListener('click', close);
elderBtn.addEventListener('click', function () { setElder(!host.classList.contains('gb-elder')); });
humanBtn.addEventListener('click', function () { send('/request_human', '我要转人工'); });
panel.addEventListener('keydown', function (e) {
  if (e.key === 'Escape' && !e.defaultPrevented) { e.preventDefault(); close(); }
});

// -- rendering messages -------------------------------------------------------------------------------------------
function whoLabel(sender) {
  if (sender === 'clerk') return clerkName ? '人工客服 ' + clerkName : '人工客服';
  if (sender === 'system') return '系统消息';
  return '智能客服';
}
function botShell(sender, quiet) {
  var kind = sender === 'clerk' ? 'gb-clerk' : sender === 'system' ? 'gb-system' : 'gb-bot';
  var bubble = h('div', { className: 'gb-bubble' });
  var el = h('div', { className: 'gb-msg ' + kind }, [
    h('div', { className: 'gb-who' + (sender === 'system' ? ' gb-sr' : ''), text: whoLabel(sender) }),
    bubble,
  ]);
  append(el);
  if (!quiet && !isOpen()) setUnread(unread + 1);
  return { el: el, bubble: bubble, sender: sender };
}
function userBubble(text) {
  var el = h('div', { className: 'gb-msg gb-user' }, [
    h('div', { className: 'gb-who gb-sr', text: '我' }),
    h('div', { className: 'gb-bubble', text: text }),
  ]);
  return append(el);
}
function notice(text) {
  return append(h('div', { className: 'gb-notice', role: 'alert', text: text }));
}

// A checklist line of retrieval.answers._material_line: 名称（原件，1份，非必需，仅限…情形）：备注 — the tag group is the
// parenthesised group that ends the line or comes right before the note; groups nest (情形 names have brackets).
function parseMaterial(line) {
  var depth = 0;
  var start = -1;
  for (var i = 0; i < line.length; i++) {
    var c = line.charAt(i);
    if (c === '（') { if (depth === 0) start = i; depth += 1; } else if (c === '）' && depth > 0) {
      depth -= 1;
      if (depth === 0 && start > 0 && (i === line.length - 1 || line.charAt(i + 1) === '：')) {
        return { name: line.slice(0, start), tags: splitTop(line.slice(start + 1, i)), note: line.slice(i + 2) };
      }
    }
  }
  return null;
}
function splitTop(text) {
  var out = [];
  var depth = 0;
  var cur = '';
  for (var i = 0; i < text.length; i++) {
    var c = text.charAt(i);
    if (c === '（') depth += 1;
    if (c === '）') depth -= 1;
    if (c === '，' && depth === 0) { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out.filter(Boolean);
}
var STEP_RE = /^(\d+)\.\s*([^：]+)：([\s\S]*)$/;
function tagClass(tag) {
  if (tag === '原件') return 'gb-tag gb-orig';
  if (tag.indexOf('复印件') >= 0) return 'gb-tag gb-copy';
  if (tag === '非必需') return 'gb-tag gb-opt';
  if (tag.indexOf('仅限') === 0) return 'gb-tag gb-only';
  return 'gb-tag';
}
function renderItems(card) {
  var items = card.items || [];
  var aspect = card.aspect;
  if (aspect === 'materials') {
    var list = h('ul', { className: 'gb-check', 'aria-label': '材料清单（可勾选已准备好的材料）' });
    items.forEach(function (line) {
      var m = parseMaterial(line);
      var id = nextId('mat');
      var tags = m ? m.tags : [];
      list.appendChild(h('li', null, [
        h('input', { type: 'checkbox', id: id }),
        h('label', { for: id }, [
          h('span', { className: 'gb-name', text: m ? m.name : line }),
          tags.length ? h('span', { className: 'gb-tags' }, tags.map(function (t) {
            return h('span', { className: tagClass(t), text: t });
          })) : null,
          m && m.note ? h('span', { className: 'gb-note', text: m.note }) : null,
        ]),
      ]));
    });
    return list;
  }
  if (aspect === 'procedure') {
    return h('ol', { className: 'gb-steps' }, items.map(function (line) {
      var m = STEP_RE.exec(line);
      return h('li', null, m ? [h('strong', { text: m[2] }), h('span', { text: m[3] })] : [line]);
    }));
  }
  if (aspect === 'time_limit' || aspect === 'overview') {
    var kv = items.filter(function (l) { return /^[^：]{2,8}：/.test(l); });
    var rest = items.filter(function (l) { return !/^[^：]{2,8}：/.test(l); });
    var dl = h('dl', { className: 'gb-kv' });
    kv.forEach(function (l) {
      var i = l.indexOf('：');
      dl.appendChild(h('dt', { text: l.slice(0, i) }));
      dl.appendChild(h('dd', { text: l.slice(i + 1) }));
    });
    return h('div', null, [kv.length ? dl : null].concat(rest.map(function (l) {
      return h('p', { className: 'gb-text', text: l });
    })));
  }
  if (aspect === 'fee' && items.length === 1 && items[0] === '不收费') {
    return h('p', { className: 'gb-free', text: '不收费' });
  }
  if (aspect === 'online') {
    return h('ul', { className: 'gb-lines' }, items.map(function (line) {
      var m = /^(可网上办理)：(\S+)$/.exec(line);
      var url = m && safeUrl(m[2]);
      if (!url) return h('li', { text: line });
      return h('li', null, [m[1] + '：', h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: m[2] })]);
    }));
  }
  if (items.length === 1) return h('p', { className: 'gb-text', text: items[0] });
  return h('ul', { className: 'gb-lines' }, items.map(function (line) { return h('li', { text: line }); }));
}
function renderCard(card) {
  var title = card.service_name || '';
  var label = card.aspect_label || '';
  var src = card.source || {};
  var tags = [h('span', { className: 'gb-tag', text: label })];
  if (card.situation) tags.push(h('span', { className: 'gb-tag gb-only', text: '情形：' + card.situation }));
  var cite = h('div', { className: 'gb-cite' }, [
    h('p', null, ['来源：' + [src.title, src.field].filter(Boolean).join(' · ') +
      (src.updated ? ' · 更新于 ' + src.updated : '')]),
    src.basis ? h('p', { text: '依据：' + src.basis }) : null,
    safeUrl(src.source) && /^https?:/i.test(String(src.source)) ? h('p', null, [
      h('a', { href: safeUrl(src.source), target: '_blank', rel: 'noopener noreferrer', text: '查看办事指南原文' }),
    ]) : null,
  ]);
  return h('article', { className: 'gb-card', 'aria-label': title + ' · ' + label }, [
    h('h3', { text: '【' + title + '】' }),
    h('div', { className: 'gb-tags' }, tags),
    renderItems(card),
    cite,
  ]);
}

// The plain-text rendering of a card (retrieval.answers.render_card_text): Rasa sends an answer as that text
// (for clients without cards) followed by the card; the widget shows the card in place of the text.
function cardText(card) {
  var src = card.source || {};
  var head = '【' + card.service_name + '】' + card.aspect_label + (card.situation ? '（' + card.situation + '）' : '');
  var foot = '来源：' + src.title + ' · ' + src.field + ' · 更新于 ' + src.updated + (src.basis ? '\n依据：' + src.basis : '');
  return [head].concat(card.items || [], [foot]).join('\n').trim();
}
var lastText = null; // {entry, text}: the newest bot message that is text only
function addText(entry, text) {
  if (entry.card) return; // the card already shows everything the text says
  entry.bubble.appendChild(h('p', { text: text }));
  entry.text = entry.text ? entry.text + '\n\n' + text : text;
  lastText = { entry: entry, text: entry.text.trim() };
}
function addReplies(entry, replies, enabled) {
  if (!replies || !replies.length) return;
  var group = h('div', { className: 'gb-chips', role: 'group', 'aria-label': '请选择' });
  replies.forEach(function (r) {
    var title = String(r.title || r.payload || '');
    var payload = String(r.payload || r.title || '');
    var b = h('button', { type: 'button', className: 'gb-chip', text: title, disabled: !enabled });
    b.addEventListener('click', function () {
      Array.prototype.forEach.call(group.querySelectorAll('button'), function (x) { x.disabled = true; });
      b.setAttribute('aria-pressed', 'true');
      send(payload, title);
    });
    group.appendChild(b);
  });
  entry.el.appendChild(group);
}
var ratingRow = null;
function addRating(entry, messageId) {
  if (ratingRow && ratingRow.parentNode && !ratingRow.dataset.done) ratingRow.parentNode.removeChild(ratingRow);
  var row = h('div', { className: 'gb-rate', role: 'group', 'aria-label': '请对这条回答进行评价' },
    [h('p', { text: '这条回答对您有帮助吗？请评价：' })]);
  [5, 4, 3, 2, 1].forEach(function (score) {
    var label = cfg.scores[String(score)];
    var b = h('button', { type: 'button', className: 'gb-chip', text: label, 'data-score': score, 'aria-label': '评价：' + label });
    b.addEventListener('click', function () { rate(row, messageId, score, label); });
    row.appendChild(b);
  });
  entry.el.appendChild(row);
  ratingRow = row;
}
function rate(row, messageId, score, label) {
  var buttons = row.querySelectorAll('button');
  Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
  if (!socket) return;
  socket.timeout(15000).emit('govbot_rate', { session_id: sessionId, score: score, message_id: messageId },
    function (err, res) {
      if (err || !res || !res.ok) {
        Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
        if (err) notice('评价没有提交成功，请稍后再试。');
        return;
      }
      row.dataset.done = '1';
      while (row.firstChild) row.removeChild(row.firstChild);
      row.appendChild(h('p', { className: 'gb-rated', role: 'status', text: '感谢您的评价！（' + label + '）' }));
    });
}

function updateStatus(s) {
  if (!s || typeof s !== 'object') return;
  status = s;
  if (s.clerk) clerkName = String(s.clerk);
  var text = '';
  var cls = 'gb-banner';
  if (s.state === 'pending') {
    text = '正在为您转接人工…';
    if (s.expected) text += ' 现在是非工作时间，工作人员将于' + s.expected + '起回复您。';
    else if (s.queue_position) text += ' 当前排队第 ' + s.queue_position + ' 位。';
  } else if (s.state === 'open') {
    text = '人工客服' + (s.clerk ? ' ' + s.clerk + ' ' : '') + '正在为您服务。';
    cls += ' gb-live';
  } else if (s.state === 'snoozed') {
    text = '工作人员正在等待您补充信息，请直接回复。';
  }
  banner.className = cls;
  banner.textContent = text;
  banner.hidden = !text;
  humanBtn.hidden = s.state === 'pending' || s.state === 'open' || s.state === 'snoozed';
}

// One stored message arrives in parts (Rasa's shapes); parts of the same message_id share one bubble.
// A card right after the text it renders takes that text's place (same bubble).
function entryFor(m, sender, quiet) {
  var card = m.custom && typeof m.custom === 'object' && m.custom.card;
  if (card && typeof card === 'object' && lastText && !lastText.entry.card) {
    var text;
    try { text = cardText(card); } catch (e) { text = null; }
    if (text && text === lastText.text) { var e = lastText.entry; lastText = null; return e; }
  }
  return botShell(sender, quiet);
}
var seenParts = {}; // "message_id:part" shown live
var fromHistory = {}; // message_id shown from the history
function onBotUttered(m) {
  if (!m || typeof m !== 'object') return;
  var meta = m.metadata || {};
  var id = meta.message_id;
  var entry;
  if (id !== undefined && id !== null) {
    var key = id + ':' + meta.part;
    if (fromHistory[id] || seenParts[key]) return; // already on screen (history, or delivered twice)
    seenParts[key] = true;
    entry = rendered[id];
    if (!entry) { entry = entryFor(m, meta.sender || 'bot', false); rendered[id] = entry; }
  } else {
    entry = entryFor(m, 'bot', false);
  }
  renderPart(entry, m, id, true);
  scrollDown();
}
function renderPart(entry, m, id, live) {
  var custom = m.custom && typeof m.custom === 'object' ? m.custom : null;
  if (custom && custom.card && typeof custom.card === 'object') {
    while (entry.bubble.firstChild) entry.bubble.removeChild(entry.bubble.firstChild);
    entry.card = true;
    entry.bubble.className = 'gb-bubble gb-has-card';
    entry.bubble.appendChild(renderCard(custom.card));
    if (live && id !== undefined && id !== null) addRating(entry, id);
  }
  if (custom && custom.status) updateStatus(custom.status);
  if (typeof m.text === 'string' && m.text && m.text !== 'undefined') addText(entry, m.text);
  if (m.quick_replies || m.buttons) addReplies(entry, m.quick_replies || m.buttons, live);
  if (m.attachment && m.attachment.payload && safeUrl(m.attachment.payload.src)) {
    entry.bubble.appendChild(h('a', {
      href: safeUrl(m.attachment.payload.src), target: '_blank', rel: 'noopener noreferrer',
      text: m.attachment.payload.title || '查看附件',
    }));
  }
  if (!entry.bubble.firstChild) entry.el.hidden = !entry.el.querySelector('.gb-chips'); // e.g. {handoff} alone
  else entry.el.hidden = false;
}

// outboundOnly: after a reconnect — the citizen's own messages of this page are already on screen.
function renderHistory(messages, outboundOnly) {
  var last = messages.length - 1;
  messages.forEach(function (msg, i) {
    if (msg.id !== null && msg.id !== undefined && rendered['in' + msg.id]) return;
    if (msg.direction === 'inbound') {
      if (outboundOnly) return;
      if (msg.id !== null && msg.id !== undefined) rendered['in' + msg.id] = true;
      userBubble(msg.display || msg.text || '');
      return;
    }
    if (msg.id !== null && msg.id !== undefined && rendered[msg.id]) return;
    var entry = entryFor({ custom: msg.custom }, msg.sender || 'bot', !outboundOnly);
    if (msg.id !== null && msg.id !== undefined) { rendered[msg.id] = entry; fromHistory[msg.id] = true; }
    var text = (msg.text || '').trim();
    renderPart(entry, {
      text: text,
      custom: msg.custom,
      quick_replies: (msg.buttons || []).length ? msg.buttons : null,
    }, msg.id, false);
    if (i === last && (msg.buttons || []).length) { // the newest question is still open: make it answerable
      var chips = entry.el.querySelectorAll('.gb-chips button');
      Array.prototype.forEach.call(chips, function (b) { b.disabled = false; });
    }
  });
  scrollDown();
}

// -- welcome, 猜你想问 --------------------------------------------------------------------------------------------
function welcome() {
  var entry = botShell('bot', true);
  entry.bubble.appendChild(h('p', { text: cfg.greeting }));
  var hot = h('div', { className: 'gb-chips gb-hot', role: 'group', 'aria-labelledby': 'gb-hot-title' }, [
    h('h3', { id: 'gb-hot-title', text: '猜你想问' }),
  ]);
  entry.el.appendChild(hot);
  fetch(new URL('api/widget/hot', base).href, { credentials: 'omit' })
    .then(function (r) { return r.ok ? r.json() : { questions: [] }; })
    .then(function (d) {
      (d.questions || []).forEach(function (q) {
        var b = h('button', { type: 'button', className: 'gb-chip', text: q.text });
        b.addEventListener('click', function () { send(q.text); });
        hot.appendChild(b);
      });
    })
    .catch(function () { hot.hidden = true; });
}

// -- input suggestions (combobox) ---------------------------------------------------------------------------------
var suggestTimer = null;
var suggestSeq = 0;
var active = -1;
var composing = false;
function hideSuggestions() {
  suggestList.hidden = true;
  input.setAttribute('aria-expanded', 'false');
  input.removeAttribute('aria-activedescendant');
  active = -1;
}
function highlight(text, query) {
  var i = query ? text.indexOf(query) : -1;
  if (i < 0) return [text];
  return [text.slice(0, i), h('mark', { text: text.slice(i, i + query.length) }), text.slice(i + query.length)];
}
function showSuggestions(items, query) {
  while (suggestList.firstChild) suggestList.removeChild(suggestList.firstChild);
  active = -1;
  if (!items.length) { hideSuggestions(); return; }
  items.forEach(function (s, i) {
    var li = h('li', { role: 'option', id: 'gb-opt-' + i, 'aria-selected': 'false', 'data-text': s.text }, [
      h('span', null, highlight(s.text, query)),
      h('small', { text: s.label || '' }),
    ]);
    li.addEventListener('mousedown', function (e) { e.preventDefault(); }); // keep focus in the input
    li.addEventListener('click', function () { pick(s.text); });
    suggestList.appendChild(li);
  });
  suggestList.hidden = false;
  input.setAttribute('aria-expanded', 'true');
}
function moveActive(delta) {
  var options = suggestList.querySelectorAll('[role="option"]');
  if (!options.length) return;
  if (active >= 0) options[active].setAttribute('aria-selected', 'false');
  active = (active + 1 + delta + options.length + 1) % (options.length + 1) - 1; // -1 = back in the text
  if (active >= 0) {
    options[active].setAttribute('aria-selected', 'true');
    input.setAttribute('aria-activedescendant', options[active].id);
    options[active].scrollIntoView({ block: 'nearest' });
  } else {
    input.removeAttribute('aria-activedescendant');
  }
}
function pick(text) {
  hideSuggestions();
  input.value = '';
  updateCounter();
  send(text);
}
function requestSuggestions() {
  var q = input.value.trim();
  if (!q || q.length > 30 || q.charAt(0) === '/') { hideSuggestions(); return; }
  var seq = ++suggestSeq;
  fetch(new URL('api/widget/suggest?limit=6&q=' + encodeURIComponent(q), base).href, { credentials: 'omit' })
    .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
    .then(function (d) {
      var focused = root.activeElement !== undefined ? root.activeElement : document.activeElement;
      if (seq !== suggestSeq || input.value.trim() !== q || focused !== input) return;
      showSuggestions(d.suggestions || [], q);
    })
    .catch(function () { hideSuggestions(); });
}
function updateCounter() {
  var n = input.value.length;
  counter.textContent = n > cfg.maxChars * 0.8 ? n + '/' + cfg.maxChars : '';
}
input.addEventListener('compositionstart', function () { composing = true; });
input.addEventListener('compositionend', function () { composing = false; input.dispatchEvent(new Event('input')); });
input.addEventListener('input', function () {
  hintMsg.textContent = '';
  updateCounter();
  save('draft', input.value || null);
  if (composing) return;
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(requestSuggestions, 150);
});
input.addEventListener('blur', function () { setTimeout(hideSuggestions, 150); });
input.addEventListener('keydown', function (e) {
  if (e.isComposing || e.keyCode === 229) return; // the IME is choosing characters: Enter is not "send"
  var listOpen = !suggestList.hidden;
  if (e.key === 'ArrowDown' && listOpen) { e.preventDefault(); moveActive(1); }
  else if (e.key === 'ArrowUp' && listOpen) { e.preventDefault(); moveActive(-1); }
  else if (e.key === 'Escape' && listOpen) { e.preventDefault(); hideSuggestions(); }
  else if (e.key === 'Enter' && listOpen && active >= 0) {
    e.preventDefault();
    pick(suggestList.querySelectorAll('[role="option"]')[active].getAttribute('data-text'));
  }
});
form.addEventListener('submit', function (e) {
  e.preventDefault();
  var text = input.value;
  if (!text.trim()) {
    hintMsg.textContent = '请输入您要咨询的问题。';
    hintMsg.className = 'gb-hint-msg gb-err';
    input.focus();
    return;
  }
  hideSuggestions();
  input.value = '';
  save('draft', null);
  updateCounter();
  send(text);
  input.focus();
});

// -- sending ----------------------------------------------------------------------------------------------------------
function customData() {
  var d = { page: (location.origin + location.pathname).slice(0, 300) }; // no query string: it may hold personal data
  if (cfg.region) d.region = cfg.region;
  return d;
}
function startTyping() {
  pendingTurns += 1;
  clearTimeout(typingTimer);
  typingTimer = setTimeout(function () {
    if (pendingTurns > 0) { typing.hidden = false; scrollDown(); }
  }, TYPING_DELAY_MS);
}
function stopTyping() {
  pendingTurns = Math.max(0, pendingTurns - 1);
  if (pendingTurns === 0) { clearTimeout(typingTimer); typing.hidden = true; }
}
function restore(text) {
  if (!input.value) { input.value = text; save('draft', text); updateCounter(); }
}
function send(text, display) {
  if (!text || !String(text).trim()) return;
  if (!isOpen()) open();
  var bubble = userBubble(display || text);
  var msg = { message: text, session_id: sessionId, customData: customData() };
  if (display) msg.display = display;
  msg.bubble = bubble;
  if (!confirmed) { outbox.push(msg); connect(); return; }
  emitMessage(msg);
}
function emitMessage(msg) {
  var bubble = msg.bubble;
  var payload = { message: msg.message, session_id: sessionId, customData: msg.customData };
  if (msg.display) payload.display = msg.display;
  startTyping();
  socket.timeout(SEND_TIMEOUT_MS).emit('user_uttered', payload, function (err, res) {
    stopTyping();
    if (!err && res && res.ok !== false) { save('draft', input.value || null); return; }
    bubble.classList.add('gb-failed');
    bubble.appendChild(h('div', { className: 'gb-fail', text: '未发送' }));
    if (!msg.display) restore(msg.message); // nothing typed is lost: the text goes back into the input box
    if (err) notice('网络不稳定，消息没有发送成功，已为您保留在输入框中，请稍后重试。');
  });
}

// -- the connection -------------------------------------------------------------------------------------------------
function connect() {
  if (socket) return;
  socket = io(base.origin, {
    path: base.pathname + 'socket.io/',
    transports: ['websocket', 'polling'],
    reconnectionDelayMax: 10000,
  });
  socket.on('connect', function () {
    socket.emit('session_request', { session_id: sessionId });
  });
  socket.on('session_confirm', function (value) {
    var id = value && typeof value === 'object' ? value.session_id : value;
    if (typeof id !== 'string' || !id) return;
    sessionId = id;
    save('session', id);
    confirmed = true;
    banner.classList.remove('gb-offline');
    if (banner.dataset.offline) { banner.dataset.offline = ''; banner.hidden = true; }
    syncHistory();
    var queued = outbox; outbox = [];
    queued.forEach(emitMessage);
  });
  socket.on('bot_uttered', onBotUttered);
  socket.on('govbot_echo', function (m) {
    if (m && typeof m.text === 'string') userBubble(m.display || m.text);
  });
  socket.on('govbot_error', function (e) {
    if (e && e.message) notice(String(e.message)); // role=alert, in the log
  });
  socket.on('disconnect', function () {
    confirmed = false;
    banner.className = 'gb-banner gb-offline';
    banner.dataset.offline = '1';
    banner.textContent = '连接已断开，正在重新连接…';
    banner.hidden = false;
  });
}
function syncHistory() {
  socket.timeout(15000).emit('govbot_history', { session_id: sessionId }, function (err, res) {
    if (err || !res || !res.ok) return;
    renderHistory(res.messages || [], loadedHistory);
    loadedHistory = true;
    updateStatus(res.status);
  });
}

// -- start --------------------------------------------------------------------------------------------------------
function start() {
  document.body.appendChild(host);
  if (cfg.elder || load('elder') === '1') setElder(true);
  welcome();
  var draft = load('draft');
  if (draft) { input.value = draft; updateCounter(); }
  if (cfg.open || load('open') === '1' || sessionId) {
    // a returning citizen: restore the conversation (and keep the window as it was)
    connect();
    if (cfg.open || load('open') === '1') open(true);
  }
}
window.GovBot = {
  version: VERSION,
  open: open,
  close: close,
  ask: function (text) { open(); send(String(text)); },
  setElder: setElder,
  isElder: function () { return host.classList.contains('gb-elder'); },
  status: function () { return JSON.parse(JSON.stringify(status)); }, // {state, ticket_id, queue_position, …}
  connected: function () { return confirmed; },
};
if (document.body) start();
else document.addEventListener('DOMContentLoaded', start);
