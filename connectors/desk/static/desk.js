// govbot clerk desk (/desk) and the helpers the admin page (/admin) shares (window.Govbot).
// Plain JS, no build step. Every piece of citizen, bot or clerk text goes into the DOM through textContent
// (the el() helper below); nothing is ever assigned to innerHTML.
'use strict';

(function () {
  // ------------------------------------------------------------------------------------------------------
  // Shared helpers
  // ------------------------------------------------------------------------------------------------------
  const G = { csrf: null, clerk: null, onUnauthorized: null };

  const LABELS = {
    status: { pending: '待认领', open: '处理中', snoozed: '暂挂', resolved: '已办结', bot: '机器人' },
    reason: {
      requested: '市民要求人工', complaint: '投诉', out_of_scope: '超出服务范围', low_confidence: '机器人把握不足',
      still_unsure: '多次未能明确', no_candidates: '未找到相关事项', bot_unavailable: '系统繁忙',
    },
    channel: { web: '网页', wechat: '微信公众号', api: '接口' },
    role: { clerk: '坐席', admin: '管理员' },
    aspect: {
      materials: '申请材料', procedure: '办理流程', fee: '收费标准', time_limit: '办理时限', location: '办理地点',
      conditions: '受理条件', online: '网上办理', basis: '设定依据', policy: '政策', overview: '概况',
    },
    priority: { 0: '普通', 1: '较高', 2: '高', 3: '紧急' },
    field: {
      text: '内容', minutes: '分钟数', questions: '问题', answer: '答案', service: '事项', username: '用户名',
      password: '密码（至少 8 位）', role: '角色', department: '部门', priority: '优先级', clerk_id: '坐席',
      active: '状态', display_name: '显示名',
    },
  };
  G.LABELS = LABELS;
  G.label = (kind, value) => (value === null || value === undefined || value === '') ? '—'
    : (LABELS[kind] && LABELS[kind][value]) || String(value);

  class ApiError extends Error {
    constructor(status, detail) {
      super(errorText(status, detail));
      this.status = status;
      this.detail = detail;
    }
  }
  G.ApiError = ApiError;

  // "中文说明 / English" → the Chinese part; FastAPI validation lists → one Chinese line.
  function errorText(status, detail) {
    // The gateway's validation errors: "请求内容不正确 / invalid request: field: message；field: message".
    const invalid = typeof detail === 'string' && detail.match(/^(.*?)\s+\/\s+invalid request:\s*(.*)$/s);
    if (invalid) {
      const names = invalid[2].split('；').map((part) => {
        const field = part.split(':')[0].trim().split('.').pop();
        return LABELS.field[field] ? `${LABELS.field[field]}不符合要求` : '';
      }).filter(Boolean);
      return names.length ? `${invalid[1]}：${[...new Set(names)].join('；')}` : invalid[1];
    }
    if (typeof detail === 'string' && detail.trim()) {
      const m = detail.match(/^(.*[\u3400-\u9fff].*?)\s+\/\s+[\x20-\x7e]+$/s);
      return m ? m[1] : detail;
    }
    if (Array.isArray(detail) && detail.length) {
      const parts = detail.map((d) => {
        const loc = Array.isArray(d.loc) ? d.loc[d.loc.length - 1] : '';
        const name = LABELS.field[loc] || loc;
        return name ? `${name}不符合要求` : '输入不符合要求';
      });
      return `输入有误：${[...new Set(parts)].join('；')}`;
    }
    return {
      0: '网络连接失败，请检查网络后重试',
      400: '请求有误', 401: '未登录或登录已过期，请重新登录', 403: '没有权限，或页面已过期（请刷新页面）',
      404: '要找的内容不存在（可能已被删除或处理）', 409: '状态冲突：该工单已被他人处理或状态已变化，请刷新',
      413: '内容过长', 422: '输入有误', 429: '操作太频繁，请稍后再试',
    }[status] || (status >= 500 ? `服务器出错（${status}），请稍后重试` : `请求失败（${status}）`);
  }
  G.errorText = errorText;

  const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

  G.api = async function api(method, path, body, opts) {
    const o = opts || {};
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (UNSAFE.has(method) && G.csrf) headers['X-CSRF-Token'] = G.csrf;
    let res;
    try {
      res = await fetch(path, {
        method, headers, credentials: 'same-origin', cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, null);
    }
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!res.ok) {
      const err = new ApiError(res.status, data && data.detail);
      if (res.status === 401 && !o.quiet401 && G.onUnauthorized) G.onUnauthorized();
      throw err;
    }
    return data;
  };

  // el('p', {class: 'x', dataset: {id: 1}, onclick: fn}, 'text', child…): text children become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else if (k in node && typeof v !== 'string') node[k] = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  G.el = el;

  G.$ = (id) => document.getElementById(id);

  G.announce = function announce(message) {
    const a = G.$('announcer');
    if (!a) return;
    a.textContent = '';
    setTimeout(() => { a.textContent = message; }, 30);
  };

  G.toast = function toast(message, kind) {
    const box = G.$('toasts');
    if (!box) return;
    const t = el('div', { class: `toast ${kind || 'info'}`, role: kind === 'error' ? 'alert' : 'status' },
      el('span', { text: message }),
      el('button', { type: 'button', class: 'toast-close', 'aria-label': '关闭提示', text: '×',
        onclick: () => t.remove() }));
    box.append(t);
    setTimeout(() => t.remove(), kind === 'error' ? 9000 : 3500);
  };
  // GET /api/desk/services (guide id, name, department), loaded once per page.
  let services = null;
  G.services = async function loadServices() {
    if (services) return services;
    try {
      const r = await G.api('GET', '/api/desk/services');
      services = Array.isArray(r.services) ? r.services : [];
    } catch (e) {
      services = [];
    }
    return services;
  };

  G.showError = (e) => G.toast(e instanceof ApiError ? e.message : `出错了：${e && e.message ? e.message : e}`,
    'error');

  const pad = (n) => String(n).padStart(2, '0');
  G.fmtDuration = function fmtDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    if (s >= 86400) return `${Math.floor(s / 86400)}天${Math.floor((s % 86400) / 3600)}小时`;
    if (s >= 3600) return `${Math.floor(s / 3600)}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
    return `${pad(Math.floor(s / 60))}:${pad(s % 60)}`;
  };
  G.fmtTime = function fmtTime(iso, full) {
    if (!iso) return '';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const now = new Date();
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (full) return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}:${pad(d.getSeconds())}`;
    return d.toDateString() === now.toDateString() ? hm : `${d.getMonth() + 1}月${d.getDate()}日 ${hm}`;
  };
  // A clerk's name as people read it: 显示名（用户名）.
  G.clerkName = (c) => {
    if (!c) return '';
    if (typeof c === 'string') return c;
    return c.display_name && c.display_name !== c.username ? `${c.display_name}（${c.username}）` : (c.username || '');
  };
  G.pct = (x) => (typeof x === 'number' && Number.isFinite(x)) ? `${Math.round(x * 100)}%` : '—';

  // Dialog helpers: open modally, put focus back where it was on close.
  G.openDialog = function openDialog(dialog, focusEl) {
    const back = document.activeElement;
    dialog.addEventListener('close', () => { if (back && back.focus) back.focus(); }, { once: true });
    dialog.showModal();
    if (focusEl) focusEl.focus();
  };
  document.addEventListener('click', (e) => {
    const btn = e.target.closest && e.target.closest('[data-close]');
    if (btn) btn.closest('dialog').close();
  });

  // Login / session, shared by both pages. opts: {requireAdmin, onLogin(clerk), onLogout()}.
  G.startSession = function startSession(opts) {
    const loginView = G.$('login-view');
    const appView = G.$(opts.appViewId);
    const bar = G.$('session-bar');
    const form = G.$('login-form');
    const err = G.$('login-error');
    const note = G.$('login-note');
    let active = false;

    function showLogin(message) {
      if (active && opts.onLogout) opts.onLogout();
      active = false;
      G.csrf = null;
      G.clerk = null;
      appView.hidden = true;
      bar.hidden = true;
      loginView.hidden = false;
      note.textContent = message || '';
      err.textContent = '';
      G.$('login-password').value = '';
      G.$('login-username').focus();
    }

    function enter(data) {
      G.csrf = data.csrf;
      G.clerk = data.clerk;
      if (opts.requireAdmin && data.clerk.role !== 'admin') {
        showLogin('该页面需要管理员权限，请使用管理员账号登录。');
        return;
      }
      loginView.hidden = true;
      appView.hidden = false;
      bar.hidden = false;
      const c = data.clerk;
      G.$('who').textContent = [G.clerkName(c), G.label('role', c.role), c.department].filter(Boolean).join(' · ');
      const adminLink = G.$('admin-link');
      if (adminLink) adminLink.hidden = c.role !== 'admin';
      active = true;
      opts.onLogin(c);
    }

    G.onUnauthorized = () => { if (active) showLogin('登录已过期，请重新登录。'); };

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.textContent = '';
      const username = G.$('login-username').value.trim();
      const password = G.$('login-password').value;
      if (!username || !password) {
        err.textContent = '请输入用户名和密码。';
        return;
      }
      const btn = G.$('login-submit');
      btn.disabled = true;
      try {
        const data = await G.api('POST', '/api/auth/login', { username, password }, { quiet401: true });
        G.$('login-password').value = '';
        enter(data);
      } catch (ex) {
        err.textContent = ex.status === 401 && !ex.detail ? '用户名或密码错误。' : ex.message;
        G.$('login-password').select();
      } finally {
        btn.disabled = false;
      }
    });

    G.$('logout-btn').addEventListener('click', async () => {
      try { await G.api('POST', '/api/auth/logout', {}, { quiet401: true }); } catch (e) { /* gone anyway */ }
      showLogin('已退出登录。');
    });

    G.api('GET', '/api/auth/me', undefined, { quiet401: true })
      .then(enter)
      .catch((e) => showLogin(e.status === 401 ? '' : e.message));
  };

  window.Govbot = G;
  if (document.body && document.body.dataset.page === 'desk') {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', desk);
    else desk();
  }

  // ------------------------------------------------------------------------------------------------------
  // The desk
  // ------------------------------------------------------------------------------------------------------
  function desk() {
    const $ = G.$;
    const api = G.api;
    const LIVE = new Set(['pending', 'open', 'snoozed']);
    const POLL_MS = 5000;

    const S = {
      me: null,
      tickets: new Map(), // id → {view, base (performance.now() when view.waited_s was measured)}
      order: [],
      selectedId: null, // highlighted in the queue
      current: null, // {ticket, base, messages: [], ids: Set, canned: []}
      currentId: null,
      composer: new Map(), // ticket id → {reply, note} kept while switching tickets
      unread: new Set(),
      ws: null,
      wsAttempt: 0,
      wsTimer: null,
      pollTimer: null,
      tickTimer: null,
      openSeq: 0,
      running: false,
    };

    // ---- queue ------------------------------------------------------------------------------------------
    function filters() {
      const statuses = [...document.querySelectorAll('input[name=status]:checked')].map((i) => i.value);
      return { statuses, mine: $('filter-mine').checked, department: $('filter-dept').value };
    }

    function matches(t) {
      const f = filters();
      if (!f.statuses.includes(t.status)) return false;
      if (f.mine && !(t.assignee && S.me && t.assignee.id === S.me.id)) return false;
      if (f.department && t.department !== f.department) return false;
      return true;
    }

    function waited(entry) {
      const v = entry.view;
      const extra = LIVE.has(v.status) ? (performance.now() - entry.base) / 1000 : 0;
      return (v.waited_s || 0) + extra;
    }
    // The SLA covers the wait for a clerk (status pending); the server's `overdue` is authoritative when it
    // says so, the client tick makes a pending ticket turn overdue without a reload.
    function overdue(entry) {
      const v = entry.view;
      return Boolean(v.overdue) || (v.status === 'pending' && v.sla_s > 0 && waited(entry) > v.sla_s);
    }

    function sortQueue() {
      S.order = [...S.tickets.values()]
        .sort((a, b) => (b.view.priority || 0) - (a.view.priority || 0) || waited(b) - waited(a) || a.view.id - b.view.id)
        .map((e) => e.view.id);
    }

    async function loadQueue() {
      const f = filters();
      if (!f.statuses.length) {
        S.tickets.clear();
        renderQueue();
        return;
      }
      const q = new URLSearchParams({ status: f.statuses.join(','), mine: f.mine ? '1' : '0', department: f.department });
      try {
        const data = await api('GET', `/api/desk/queue?${q}`);
        const now = performance.now();
        S.tickets = new Map((data.tickets || []).map((t) => [t.id, { view: t, base: now }]));
        renderQueue();
      } catch (e) {
        if (e.status !== 401) G.showError(e);
      }
    }

    function upsertTicket(view, fromEvent) {
      const known = S.tickets.has(view.id);
      if (matches(view)) {
        S.tickets.set(view.id, { view, base: performance.now() });
        if (!known && fromEvent && view.status === 'pending') {
          G.announce(`新工单 #${view.id}：${view.service_name || '未识别事项'}，${G.label('reason', view.reason)}`);
          S.flash = view.id;
        }
      } else {
        S.tickets.delete(view.id);
      }
      renderQueue();
      if (S.current && S.current.ticket.id === view.id) {
        S.current.ticket = view;
        S.current.base = performance.now();
        renderTicketHead();
      }
    }

    function timerText(entry) {
      const v = entry.view;
      const w = G.fmtDuration(waited(entry));
      if (v.status === 'snoozed' && v.snoozed_until) return `暂挂至 ${G.fmtTime(v.snoozed_until)}`;
      if (v.status === 'open') return `已接入 · 历时 ${w}`;
      if (v.status === 'resolved') return '已办结';
      return v.sla_s ? `等待 ${w} / 时限 ${G.fmtDuration(v.sla_s)}` : `等待 ${w}`;
    }

    function queueItem(entry) {
      const v = entry.view;
      const od = overdue(entry);
      const mine = v.assignee && S.me && v.assignee.id === S.me.id;
      const li = el('li', {
        id: `q-${v.id}`, role: 'option', class: 'qitem', 'aria-selected': v.id === S.selectedId ? 'true' : 'false',
        dataset: { id: v.id, status: v.status, overdue: od ? '1' : '0' },
      },
      el('div', { class: 'qrow' },
        el('span', { class: 'qid', text: `#${v.id}` }),
        el('span', { class: 'qservice', text: v.service_name || v.service || '未识别事项' }),
        v.priority > 0 ? el('span', { class: `badge prio p${Math.min(3, v.priority)}`, text: G.label('priority', v.priority) }) : null,
        el('span', { class: `badge st-${v.status}`, text: G.label('status', v.status) }),
        S.unread.has(v.id) ? el('span', { class: 'badge unread', text: '新消息' }) : null),
      el('div', { class: 'qrow meta' },
        el('span', { text: G.label('reason', v.reason) }),
        el('span', { text: G.label('channel', v.channel) }),
        v.region ? el('span', { text: v.region }) : null,
        v.assignee ? el('span', { class: mine ? 'mine' : '', text: mine ? '我处理中' : `处理人 ${G.clerkName(v.assignee)}` })
          : null),
      v.last_message ? el('div', { class: 'qlast', text: v.last_message }) : null,
      el('div', { class: 'qrow' },
        el('span', { class: 'qtimer', dataset: { timer: v.id }, text: timerText(entry) }),
        od ? el('span', { class: 'badge overdue', text: '已超时' }) : null),
      slaBar(entry));
      if (v.id === S.currentId) li.classList.add('current');
      if (S.flash === v.id) li.classList.add('flash');
      li.addEventListener('click', () => { select(v.id); openTicket(v.id); });
      return li;
    }

    function slaBar(entry) {
      const v = entry.view;
      if (!v.sla_s || v.status !== 'pending') return null;
      const frac = Math.min(1, waited(entry) / v.sla_s);
      const bar = el('div', { class: 'sla', 'aria-hidden': 'true' }, el('span', {}));
      bar.firstChild.style.width = `${Math.round(frac * 100)}%`;
      bar.dataset.level = frac >= 1 ? 'over' : frac >= 0.7 ? 'warn' : 'ok';
      bar.dataset.bar = v.id;
      return bar;
    }

    function renderQueue() {
      sortQueue();
      const list = $('queue-list');
      if (S.selectedId !== null && !S.tickets.has(S.selectedId)) S.selectedId = null;
      list.replaceChildren(...S.order.map((id) => queueItem(S.tickets.get(id))));
      S.flash = null;
      list.setAttribute('aria-activedescendant', S.selectedId !== null ? `q-${S.selectedId}` : '');
      if (S.selectedId === null) list.removeAttribute('aria-activedescendant');
      $('queue-empty').hidden = S.order.length > 0;
      const pending = [...S.tickets.values()].filter((e) => e.view.status === 'pending').length;
      $('queue-count').textContent = `${S.order.length} 个，待认领 ${pending}`;
      document.title = `${pending ? `(${pending}) ` : ''}坐席工作台 · 政务智能问答`;
    }

    function select(id) {
      S.selectedId = id;
      const list = $('queue-list');
      for (const li of list.children) li.setAttribute('aria-selected', String(Number(li.dataset.id) === id));
      if (id === null) {
        list.removeAttribute('aria-activedescendant');
        return;
      }
      list.setAttribute('aria-activedescendant', `q-${id}`);
      const li = $(`q-${id}`);
      if (li) li.scrollIntoView({ block: 'nearest' });
    }

    function move(delta) {
      if (!S.order.length) return;
      let i = S.order.indexOf(S.selectedId);
      if (i < 0) i = delta > 0 ? 0 : S.order.length - 1;
      else i = Math.max(0, Math.min(S.order.length - 1, i + delta));
      select(S.order[i]);
      $('queue-list').focus({ preventScroll: true });
    }

    function tick() {
      let stale = false;
      for (const node of document.querySelectorAll('[data-timer]')) {
        const entry = S.tickets.get(Number(node.dataset.timer));
        if (entry) node.textContent = timerText(entry);
      }
      for (const bar of document.querySelectorAll('[data-bar]')) {
        const entry = S.tickets.get(Number(bar.dataset.bar));
        if (!entry || !entry.view.sla_s) continue;
        const frac = Math.min(1, waited(entry) / entry.view.sla_s);
        bar.firstChild.style.width = `${Math.round(frac * 100)}%`;
        bar.dataset.level = frac >= 1 ? 'over' : frac >= 0.7 ? 'warn' : 'ok';
        const li = bar.closest('li');
        if (li && frac >= 1 && li.dataset.overdue !== '1') stale = true;
      }
      if (stale) renderQueue();
      if (S.current) renderTimer();
    }

    // ---- the open ticket ----------------------------------------------------------------------------------
    function saveComposer() {
      if (S.currentId === null) return;
      S.composer.set(S.currentId, { reply: $('reply-text').value, note: $('note-text').value });
    }

    async function openTicket(id, opts) {
      const keep = Boolean(opts && opts.keep);
      const seq = ++S.openSeq;
      let data;
      try {
        data = await api('GET', `/api/desk/tickets/${id}`);
      } catch (e) {
        if (e.status !== 401) G.showError(e);
        return;
      }
      if (seq !== S.openSeq) return; // a later open won
      const switching = S.currentId !== id;
      if (switching) saveComposer();
      S.current = { ticket: data.ticket, base: performance.now(), messages: [], ids: new Set(), canned: data.canned || [],
        draft: data.draft || '', question: data.question || '' };
      S.currentId = id;
      S.unread.delete(id);
      $('ticket-placeholder').hidden = true;
      $('ticket-view').hidden = false;
      renderTicketHead();
      renderCandidates();
      renderCanned();
      const transcript = $('transcript');
      transcript.replaceChildren();
      for (const m of data.messages || []) addMessage(m, false);
      transcript.scrollTop = transcript.scrollHeight;
      if (switching || !keep) {
        const saved = S.composer.get(id);
        $('reply-text').value = saved ? saved.reply : (data.draft || '');
        $('note-text').value = saved ? saved.note : '';
        $('reply-hint').textContent = !saved && data.draft
          ? '已预填机器人草稿，请核对修改后发送。Ctrl+Enter 发送' : 'Ctrl+Enter 发送';
        $('reply-text').dataset.draft = data.draft ? '1' : '0';
      }
      for (const li of $('queue-list').children) li.classList.toggle('current', Number(li.dataset.id) === id);
      if (switching && !(opts && opts.quiet)) {
        G.announce(`已打开工单 #${id}`);
        $('ticket-title').focus({ preventScroll: true });
      }
    }

    function renderTimer() {
      const t = S.current.ticket;
      const entry = { view: t, base: S.current.base };
      const node = $('ticket-timer');
      node.textContent = t.status === 'resolved' ? '' : timerText(entry);
      node.classList.toggle('overdue', t.status !== 'resolved' && overdue(entry));
      if (t.status !== 'resolved' && overdue(entry)) node.textContent += '（已超时）';
    }

    function renderTicketHead() {
      const t = S.current.ticket;
      $('ticket-title').textContent = `工单 #${t.id} · ${t.service_name || t.service || '未识别事项'}`;
      const st = $('ticket-status');
      st.textContent = G.label('status', t.status);
      st.className = `badge st-${t.status}`;
      renderTimer();
      const facts = [
        ['转人工原因', G.label('reason', t.reason)],
        ['咨询内容', G.label('aspect', t.aspect)],
        ['渠道', G.label('channel', t.channel)],
        ['地区', t.region || '—'],
        ['部门', t.department || '—'],
        ['处理人', t.assignee ? G.clerkName(t.assignee) : '未认领'],
        ['机器人置信度', G.pct(t.confidence)],
        ['开始时间', G.fmtTime(t.opened_at, true)],
      ];
      if (t.snoozed_until) facts.push(['暂挂至', G.fmtTime(t.snoozed_until, true)]);
      $('ticket-facts').replaceChildren(...facts.map(([k, v]) => el('div', { class: 'fact' },
        el('dt', { text: k }), el('dd', { text: v, title: v }))));
      const mine = t.assignee && S.me && t.assignee.id === S.me.id;
      const closed = t.status === 'resolved';
      const claim = $('act-claim');
      claim.disabled = closed || Boolean(mine);
      claim.firstChild.textContent = mine ? '已认领 ' : (t.assignee ? '接手 ' : '认领 ');
      for (const id of ['act-transfer', 'act-snooze', 'act-handback', 'act-resolve', 'reply-send', 'note-send']) {
        $(id).disabled = closed;
      }
      const prio = $('act-priority');
      const pv = String(t.priority || 0);
      if (![...prio.options].some((o) => o.value === pv)) prio.append(el('option', { value: pv, text: `优先级 ${pv}` }));
      prio.value = pv;
      prio.disabled = closed;
    }

    function renderCandidates() {
      const t = S.current.ticket;
      const cands = t.candidates || [];
      $('candidates-summary').textContent = cands.length
        ? `（${cands.length} 个，整体置信度 ${G.pct(t.confidence)}）` : '（无）';
      $('candidates-list').replaceChildren(...cands.map((c) => {
        const conf = typeof c.confidence === 'number' ? c.confidence : null;
        const meter = el('span', { class: 'conf-bar', 'aria-hidden': 'true' }, el('span', {}));
        meter.firstChild.style.width = `${Math.round((conf || 0) * 100)}%`;
        return el('li', { class: 'candidate' },
          el('span', { class: 'ctitle', text: c.title || c.id }),
          el('span', { class: 'cid muted', text: c.id }),
          meter,
          el('span', { class: 'cconf', 'aria-label': `置信度 ${G.pct(conf)}`, text: G.pct(conf) }));
      }));
    }

    function renderCanned() {
      const sel = $('canned-select');
      sel.replaceChildren(el('option', { value: '', text: S.current.canned.length ? '常用回复…' : '（无常用回复）' }),
        ...S.current.canned.map((c, i) => el('option', { value: String(i), text: c.title })));
    }

    function senderOf(m) {
      if (m.direction === 'internal') return 'note';
      if (m.direction === 'inbound') return 'citizen';
      return ['bot', 'clerk', 'system'].includes(m.sender_kind) ? m.sender_kind : 'system';
    }
    function clerkName(m) {
      if (!m.clerk) return '';
      return typeof m.clerk === 'string' ? m.clerk : (m.clerk.username || '');
    }

    function messageEl(m) {
      const kind = senderOf(m);
      const who = {
        citizen: '市民', bot: '机器人', system: '系统',
        clerk: `坐席${clerkName(m) ? ' ' + clerkName(m) : ''}`,
        note: `内部备注${clerkName(m) ? ' · ' + clerkName(m) : ''}`,
      }[kind];
      const custom = m.custom || {};
      const body = [];
      if (m.text) body.push(el('div', { class: 'mtext', text: m.text }));
      if (custom.card && typeof custom.card === 'object') {
        const c = custom.card;
        const src = c.source && typeof c.source === 'object'
          ? [c.source.title || c.source.name, c.source.section, c.source.updated].filter(Boolean).join(' · ')
          : c.source;
        const bits = [src ? `来源：${src}` : '', typeof c.confidence === 'number' ? `置信度 ${G.pct(c.confidence)}` : '']
          .filter(Boolean).join('　');
        if (bits) body.push(el('div', { class: 'mcard', text: bits }));
      }
      if (custom.handoff && typeof custom.handoff === 'object') {
        const h = custom.handoff;
        body.push(el('div', { class: 'mcard', text: `转人工：${G.label('reason', h.reason)}${
          typeof h.confidence === 'number' ? `，置信度 ${G.pct(h.confidence)}` : ''}` }));
      }
      if (custom.status && typeof custom.status === 'object' && !m.text) {
        body.push(el('div', { class: 'mtext', text: `状态：${G.label('status', custom.status.state)}` }));
      }
      if (Array.isArray(m.buttons) && m.buttons.length) {
        body.push(el('ul', { class: 'mbuttons', 'aria-label': '提供给市民的按钮' },
          ...m.buttons.map((b) => el('li', { text: b.title || b.payload || '' }))));
      }
      return el('article', { class: `msg ${kind}`, dataset: { id: m.id, kind }, 'aria-label': `${who}的消息` },
        el('header', { class: 'mhead' },
          el('span', { class: 'mwho', text: who }),
          el('time', { datetime: m.created_at || '', title: G.fmtTime(m.created_at, true), text: G.fmtTime(m.created_at) })),
        ...body);
    }

    function addMessage(m, live) {
      if (!S.current || !m || S.current.ids.has(m.id)) return;
      S.current.ids.add(m.id);
      S.current.messages.push(m);
      const tr = $('transcript');
      const nearBottom = tr.scrollHeight - tr.scrollTop - tr.clientHeight < 80;
      const node = messageEl(m);
      // Keep transcript order by id even if a push overtakes a fetch.
      const after = [...tr.children].find((c) => Number(c.dataset.id) > m.id);
      tr.insertBefore(node, after || null);
      if (live && (nearBottom || senderOf(m) !== 'citizen')) tr.scrollTop = tr.scrollHeight;
    }

    // ---- actions ------------------------------------------------------------------------------------------
    async function act(path, body, done) {
      if (!S.current) return null;
      const id = S.current.ticket.id;
      try {
        const r = await api('POST', `/api/desk/tickets/${id}/${path}`, body === undefined ? {} : body);
        if (r && r.ticket && r.ticket.id === id) upsertTicket(r.ticket);
        if (r && r.message) addMessage(r.message, true);
        if (done) {
          G.toast(done, 'ok');
          G.announce(done);
        }
        await openTicket(id, { keep: true, quiet: true });
        if (!S.ws) loadQueue();
        return r || {};
      } catch (e) {
        if (e.status !== 401) G.showError(e);
        if (e.status === 409 || e.status === 404) {
          openTicket(id, { keep: true, quiet: true });
          loadQueue();
        }
        return null;
      }
    }

    const claim = () => S.current && !$('act-claim').disabled && act('claim', {}, `已认领工单 #${S.current.ticket.id}`);

    async function sendReply(e) {
      if (e) e.preventDefault();
      const box = $('reply-text');
      const text = box.value.trim();
      if (!S.current || $('reply-send').disabled) return;
      if (!text) {
        G.toast('回复内容不能为空。', 'error');
        box.focus();
        return;
      }
      $('reply-send').disabled = true;
      const r = await act('reply', { text }, '回复已发送');
      $('reply-send').disabled = S.current.ticket.status === 'resolved';
      if (r) {
        box.value = '';
        S.composer.delete(S.current.ticket.id);
        $('reply-hint').textContent = 'Ctrl+Enter 发送';
        box.focus();
      }
    }

    async function sendNote(e) {
      if (e) e.preventDefault();
      const box = $('note-text');
      const text = box.value.trim();
      if (!S.current || $('note-send').disabled) return;
      if (!text) {
        G.toast('备注内容不能为空。', 'error');
        box.focus();
        return;
      }
      $('note-send').disabled = true;
      const r = await act('note', { text }, '已添加内部备注');
      $('note-send').disabled = S.current.ticket.status === 'resolved';
      if (r) box.value = '';
    }

    function insertCanned() {
      const i = $('canned-select').value;
      if (i === '' || !S.current) return;
      const text = S.current.canned[Number(i)].text;
      const box = $('reply-text');
      const start = box.selectionStart ?? box.value.length;
      const end = box.selectionEnd ?? box.value.length;
      box.setRangeText(text, start, end, 'end');
      box.focus();
      $('canned-select').value = '';
    }

    async function openTransfer() {
      if (!S.current || $('act-transfer').disabled) return;
      $('transfer-error').textContent = '';
      try {
        const [cl, dp] = await Promise.all([api('GET', '/api/desk/clerks'), api('GET', '/api/desk/departments')]);
        const clerks = (cl.clerks || []).filter((c) => c.active !== false && (!S.me || c.id !== S.me.id));
        $('transfer-clerk').replaceChildren(...(clerks.length ? clerks.map((c) => el('option', {
          value: String(c.id), text: `${G.clerkName(c)}${c.department ? ' · ' + c.department : ''}` }))
          : [el('option', { value: '', text: '（没有其他坐席）' })]));
        const depts = dp.departments || [];
        $('transfer-dept').replaceChildren(...(depts.length ? depts.map((d) => el('option', { value: d, text: d }))
          : [el('option', { value: '', text: '（没有部门）' })]));
      } catch (e) {
        if (e.status !== 401) G.showError(e);
        return;
      }
      G.openDialog($('transfer-dialog'), document.querySelector('#transfer-form input[name=target]:checked'));
    }

    async function submitTransfer(e) {
      e.preventDefault();
      const target = document.querySelector('#transfer-form input[name=target]:checked').value;
      const value = $(target === 'clerk' ? 'transfer-clerk' : 'transfer-dept').value;
      if (!value) {
        $('transfer-error').textContent = '请选择转交对象。';
        return;
      }
      const body = target === 'clerk' ? { clerk_id: Number(value) } : { department: value };
      const name = $(target === 'clerk' ? 'transfer-clerk' : 'transfer-dept').selectedOptions[0].textContent;
      const r = await act('transfer', body, `已转交给 ${name}`);
      if (r) $('transfer-dialog').close();
    }

    function openSnooze() {
      if (!S.current || $('act-snooze').disabled) return;
      $('snooze-error').textContent = '';
      G.openDialog($('snooze-dialog'), $('snooze-minutes'));
    }

    async function submitSnooze(e) {
      e.preventDefault();
      const minutes = Number($('snooze-minutes').value);
      if (!Number.isInteger(minutes) || minutes < 1) {
        $('snooze-error').textContent = '请输入正整数分钟数。';
        return;
      }
      const r = await act('snooze', { minutes }, `已暂挂 ${minutes} 分钟`);
      if (r) $('snooze-dialog').close();
    }

    function resolve() {
      if (!S.current || $('act-resolve').disabled) return;
      if (!window.confirm(`确定办结工单 #${S.current.ticket.id}？`)) return;
      act('resolve', {}, `工单 #${S.current.ticket.id} 已办结`);
    }

    function handBack() {
      if (!S.current || $('act-handback').disabled) return;
      if (!window.confirm('确定把对话交还给机器人？市民之后的消息将由机器人回答。')) return;
      act('hand-back', {}, '已交回机器人');
    }

    function setPriority() {
      if (!S.current) return;
      const priority = Number($('act-priority').value);
      act('priority', { priority }, `优先级已改为「${G.label('priority', priority)}」`);
    }

    // The citizen's question for 「存为知识」: the last question the citizen asked before the handoff (skipping
    // button payloads and bare requests for a human); failing that, the last one before the last clerk reply.
    function citizenQuestion(msgs) {
      const lastIndex = (pred) => msgs.reduce((found, m, i) => (pred(m) ? i : found), -1);
      const handoff = lastIndex((m) => Boolean(m.custom && m.custom.handoff));
      const clerk = lastIndex((m) => senderOf(m) === 'clerk');
      const asked = (m) => senderOf(m) === 'citizen' && m.text && !m.text.startsWith('/');
      const real = (m) => !(m.text.length <= 12 && /人工|客服|真人/.test(m.text));
      const windows = [msgs.slice(0, Math.max(0, handoff)), clerk >= 0 ? msgs.slice(0, clerk) : msgs, msgs];
      for (const w of windows) {
        const found = w.filter(asked).filter(real);
        if (found.length) return found[found.length - 1].text.trim();
      }
      const any = msgs.filter(asked);
      return any.length ? any[any.length - 1].text.trim() : (S.current.question || '');
    }


    async function openKnowledge() {
      if (!S.current) return;
      const all = await G.services();
      const msgs = S.current.messages;
      const t = S.current.ticket;
      $('kn-questions').value = citizenQuestion(msgs);
      const clerkReplies = msgs.filter((m) => senderOf(m) === 'clerk' && m.text);
      $('kn-answer').value = clerkReplies.length ? clerkReplies[clerkReplies.length - 1].text : '';
      const opts = [el('option', { value: '', text: '（不指定事项）' })];
      const seen = new Set(['']);
      const addOpt = (id, title) => {
        if (!id || seen.has(id)) return;
        seen.add(id);
        opts.push(el('option', { value: id, text: title && title !== id ? `${title}（${id}）` : id }));
      };
      addOpt(t.service, t.service_name);
      for (const c of t.candidates || []) addOpt(c.id, c.title);
      const rest = all.filter((x) => !seen.has(x.id)).sort((x, y) => String(x.name).localeCompare(String(y.name), 'zh'));
      if (rest.length) {
        const group = el('optgroup', { label: '其他事项' });
        for (const x of rest) {
          seen.add(x.id);
          group.append(el('option', { value: x.id, text: `${x.name}（${x.id}）` }));
        }
        opts.push(group);
      }
      $('kn-service').replaceChildren(...opts);
      $('kn-service').value = t.service || '';
      $('knowledge-error').textContent = '';
      G.openDialog($('knowledge-dialog'), $('kn-questions'));
    }

    async function submitKnowledge(e) {
      e.preventDefault();
      const questions = [...new Set($('kn-questions').value.split('\n').map((q) => q.trim()).filter(Boolean))];
      const answer = $('kn-answer').value.trim();
      if (!questions.length || !answer) {
        $('knowledge-error').textContent = '请至少填写一个问题和答案。';
        return;
      }
      const body = { questions, answer };
      if ($('kn-service').value) body.service = $('kn-service').value;
      try {
        const r = await api('POST', `/api/desk/tickets/${S.current.ticket.id}/knowledge`, body);
        $('knowledge-dialog').close();
        const cid = r && (r.id || (r.candidate && r.candidate.id));
        const msg = `已存为知识候选${cid ? ' #' + cid : ''}，等待管理员审核。`;
        G.toast(msg, 'ok');
        G.announce(msg);
      } catch (ex) {
        if (ex.status !== 401) $('knowledge-error').textContent = ex.message;
      }
    }

    // ---- live updates: websocket with backoff, polling while it is down -----------------------------------
    function setConn(state) {
      const c = $('conn');
      c.dataset.state = state;
      c.textContent = { live: '● 实时', connecting: '○ 连接中…', polling: '◐ 连接中断，每 5 秒刷新', off: '' }[state];
    }

    function connect() {
      if (!S.running) return;
      clearTimeout(S.wsTimer);
      const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/desk/ws`;
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        reconnectLater();
        return;
      }
      S.ws = null;
      if (S.wsAttempt === 0) setConn('connecting');
      ws.onopen = () => {
        if (!S.running) { ws.close(); return; }
        S.ws = ws;
        S.wsAttempt = 0;
        setConn('live');
        stopPolling();
        // Catch up on whatever happened while disconnected.
        loadQueue();
        if (S.currentId !== null) openTicket(S.currentId, { keep: true, quiet: true });
      };
      ws.onmessage = (ev) => {
        let data;
        try { data = JSON.parse(ev.data); } catch (e) { return; }
        handleEvent(data);
      };
      ws.onclose = () => {
        if (S.ws === ws) S.ws = null;
        if (!S.running) return;
        setConn('polling');
        startPolling();
        // A closed socket may mean the session expired: /me answers 401 then and the login form shows.
        api('GET', '/api/auth/me').then((me) => { G.csrf = me.csrf || G.csrf; }).catch(() => {});
        reconnectLater();
      };
    }

    function reconnectLater() {
      const delay = Math.min(30000, 1000 * 2 ** S.wsAttempt) * (0.75 + Math.random() * 0.5);
      S.wsAttempt = Math.min(S.wsAttempt + 1, 10);
      clearTimeout(S.wsTimer);
      S.wsTimer = setTimeout(connect, delay);
    }

    function startPolling() {
      if (S.pollTimer) return;
      S.pollTimer = setInterval(() => {
        if (S.ws) return;
        loadQueue();
        if (S.currentId !== null) openTicket(S.currentId, { keep: true, quiet: true });
      }, POLL_MS);
    }
    function stopPolling() {
      clearInterval(S.pollTimer);
      S.pollTimer = null;
    }

    function handleEvent(ev) {
      if (!ev || typeof ev !== 'object') return;
      if (ev.type === 'ticket' && ev.ticket) {
        upsertTicket(ev.ticket, true);
      } else if (ev.type === 'message' && ev.message) {
        if (S.current && ev.conversation_id === S.current.ticket.conversation_id) {
          addMessage(ev.message, true);
          if (senderOf(ev.message) === 'citizen') G.announce(`市民新消息：${ev.message.text || ''}`);
        } else if (ev.ticket_id && S.tickets.has(ev.ticket_id) && senderOf(ev.message) === 'citizen') {
          S.unread.add(ev.ticket_id);
          renderQueue();
        }
      }
    }

    // ---- keyboard -----------------------------------------------------------------------------------------
    function typing(target) {
      return target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
    }

    document.addEventListener('keydown', (e) => {
      if (!S.running || document.querySelector('dialog[open]')) return;
      if (typing(e.target)) {
        if (e.key === 'Escape') {
          e.target.blur();
          $('queue-list').focus();
        }
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const key = e.key;
      const handlers = {
        j: () => move(1), ArrowDown: () => e.target === $('queue-list') && move(1),
        k: () => move(-1), ArrowUp: () => e.target === $('queue-list') && move(-1),
        Enter: () => {
          if (e.target !== $('queue-list') && e.target !== document.body) return false;
          if (S.selectedId !== null) openTicket(S.selectedId);
          return true;
        },
        c: () => claim(),
        r: () => S.current && $('reply-text').focus(),
        n: () => S.current && $('note-text').focus(),
        t: () => openTransfer(),
        s: () => openSnooze(),
        e: () => resolve(),
        b: () => handBack(),
        p: () => S.current && $('act-priority').focus(),
        K: () => openKnowledge(),
        g: () => loadQueue(),
        '?': () => G.openDialog($('help-dialog'), $('help-dialog').querySelector('[data-close]')),
      };
      const h = handlers[key];
      if (!h) return;
      if (h() === false) return;
      e.preventDefault();
    });

    function ctrlEnter(textarea, fn) {
      textarea.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          fn();
        }
      });
    }

    // ---- wiring -------------------------------------------------------------------------------------------
    $('reply-form').addEventListener('submit', sendReply);
    $('note-form').addEventListener('submit', sendNote);
    ctrlEnter($('reply-text'), sendReply);
    ctrlEnter($('note-text'), sendNote);
    $('canned-insert').addEventListener('click', insertCanned);
    $('act-claim').addEventListener('click', claim);
    $('act-transfer').addEventListener('click', openTransfer);
    $('act-snooze').addEventListener('click', openSnooze);
    $('act-resolve').addEventListener('click', resolve);
    $('act-handback').addEventListener('click', handBack);
    $('act-knowledge').addEventListener('click', openKnowledge);
    $('act-priority').addEventListener('change', setPriority);
    $('transfer-form').addEventListener('submit', submitTransfer);
    $('transfer-clerk').addEventListener('change', () => { document.querySelector('input[name=target][value=clerk]').checked = true; });
    $('transfer-dept').addEventListener('change', () => { document.querySelector('input[name=target][value=department]').checked = true; });
    $('snooze-form').addEventListener('submit', submitSnooze);
    for (const b of document.querySelectorAll('[data-minutes]')) {
      b.addEventListener('click', () => { $('snooze-minutes').value = b.dataset.minutes; });
    }
    $('knowledge-form').addEventListener('submit', submitKnowledge);
    $('help-btn').addEventListener('click', () => G.openDialog($('help-dialog'), $('help-dialog').querySelector('[data-close]')));
    $('refresh-btn').addEventListener('click', loadQueue);
    for (const input of document.querySelectorAll('.filters input, .filters select')) {
      input.addEventListener('change', loadQueue);
    }

    async function loadDepartments() {
      try {
        const dp = await api('GET', '/api/desk/departments');
        const sel = $('filter-dept');
        const current = sel.value;
        sel.replaceChildren(el('option', { value: '', text: '全部' }),
          ...(dp.departments || []).map((d) => el('option', { value: d, text: d })));
        sel.value = current;
      } catch (e) { /* the filter just stays at 全部 */ }
    }

    G.startSession({
      appViewId: 'desk-view',
      onLogin(clerk) {
        S.me = clerk;
        S.running = true;
        S.wsAttempt = 0;
        loadDepartments();
        loadQueue();
        connect();
        clearInterval(S.tickTimer);
        S.tickTimer = setInterval(tick, 1000);
        $('queue-list').focus();
      },
      onLogout() {
        S.running = false;
        clearTimeout(S.wsTimer);
        clearInterval(S.tickTimer);
        stopPolling();
        if (S.ws) S.ws.close();
        S.ws = null;
        S.tickets.clear();
        S.current = null;
        S.currentId = null;
        S.composer.clear();
        $('queue-list').replaceChildren();
        $('transcript').replaceChildren();
        $('ticket-view').hidden = true;
        $('ticket-placeholder').hidden = false;
        setConn('off');
      },
    });
  }
})();
