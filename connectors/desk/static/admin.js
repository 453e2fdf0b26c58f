// govbot admin page (/admin): knowledge candidate review, index reload, clerk accounts, statistics, audit log.
// Uses the shared helpers from desk.js (window.Govbot). Text goes into the DOM through textContent only.
'use strict';

(function () {
  const G = window.Govbot;
  const { $, el, api } = G;
  let loaded = {};

  // ---- tabs (WAI-ARIA tabs pattern: arrows move, Home/End jump) ---------------------------------------------
  const tabs = [...document.querySelectorAll('[role=tab]')];
  function activate(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    const name = tab.id.replace('tab-', '');
    if (!loaded[name]) {
      loaded[name] = true;
      LOADERS[name]();
    }
  }
  for (const t of tabs) {
    t.addEventListener('click', () => activate(t));
    t.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(t);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      activate(tabs[(next + tabs.length) % tabs.length], true);
    });
  }

  function listOf(r, ...keys) {
    if (Array.isArray(r)) return r;
    for (const k of keys) if (r && Array.isArray(r[k])) return r[k];
    return [];
  }

  // What an approve/reload answer says about the index, in Chinese.
  function describeReload(r) {
    if (!r || typeof r !== 'object') return '知识库已重新加载。';
    // POST /api/admin/reload → {index, built, reloaded}; approve → {candidate: {…, index, reloaded}}.
    const nested = [r.reload, r.candidate].find((x) => x && typeof x === 'object' && ('index' in x || 'reloaded' in x));
    const src = nested || r;
    let index = src.index ?? src.hash ?? src.version;
    if (index && typeof index === 'object') index = index.hash || index.version || '';
    const bits = [];
    if (src.built === true) bits.push('索引已重建');
    if (src.reloaded === false) bits.push(src.built ? '但未能加载新索引' : '索引未变化，无需重新加载');
    else bits.push('知识库索引已重新加载');
    if (index) bits.push(`版本 ${String(index).slice(0, 12)}`);
    if (typeof src.units === 'number') bits.push(`共 ${src.units} 条`);
    if (r.faq_file || r.path) bits.push(`已写入 ${r.faq_file || r.path}`);
    return bits.join('，') + '。';
  }

  // Guide id → name (GET /api/desk/services), for the statistics and the candidate service field.
  async function loadServices() {
    const services = await G.services();
    $('service-list').replaceChildren(...services.map((x) => el('option', { value: x.id, label: x.name })));
    return services;
  }
  async function serviceNames() {
    return Object.fromEntries((await loadServices()).map((x) => [x.id, x.name]));
  }

  // ---- reload -------------------------------------------------------------------------------------------
  $('reload-btn').addEventListener('click', async () => {
    const btn = $('reload-btn');
    btn.disabled = true;
    $('reload-result').textContent = '正在重新加载知识库…';
    try {
      const r = await api('POST', '/api/admin/reload', {});
      const msg = describeReload(r);
      $('reload-result').textContent = msg;
      G.toast(msg, 'ok');
    } catch (e) {
      $('reload-result').textContent = '';
      if (e.status !== 401) G.showError(e);
    } finally {
      btn.disabled = false;
    }
  });

  // ---- candidates ---------------------------------------------------------------------------------------
  async function loadCandidates() {
    const status = $('cand-status').value;
    const list = $('cand-list');
    list.setAttribute('aria-busy', 'true');
    loadServices();
    await loadClerkNames();
    try {
      const r = await api('GET', `/api/admin/candidates?status=${encodeURIComponent(status)}`);
      const items = listOf(r, 'candidates', 'items');
      list.replaceChildren(...items.map(candidateCard));
      $('cand-count').textContent = `共 ${items.length} 条`;
      if (!items.length) list.append(el('p', { class: 'empty', text: '没有符合条件的候选知识。' }));
    } catch (e) {
      if (e.status !== 401) G.showError(e);
    } finally {
      list.removeAttribute('aria-busy');
    }
  }

  function candidateCard(c) {
    const editable = (c.status || 'draft') === 'draft';
    const qid = `cq-${c.id}`;
    const aid = `ca-${c.id}`;
    const sid = `cs-${c.id}`;
    const questions = el('textarea', { id: qid, rows: 3, disabled: !editable });
    questions.value = (c.questions || []).join('\n');
    const answer = el('textarea', { id: aid, rows: 5, disabled: !editable });
    answer.value = c.answer || '';
    const service = el('input', { id: sid, disabled: !editable, maxlength: 128, list: 'service-list' });
    service.value = c.service || '';
    const result = el('p', { class: 'cand-result', role: 'status' });
    let dirty = false;
    for (const f of [questions, answer, service]) f.addEventListener('input', () => { dirty = true; });

    function body() {
      return {
        questions: [...new Set(questions.value.split('\n').map((q) => q.trim()).filter(Boolean))],
        answer: answer.value.trim(),
        service: service.value.trim() || null,
      };
    }
    function valid(b) {
      if (!b.questions.length || !b.answer) {
        result.textContent = '';
        G.toast('请至少填写一个问题和答案。', 'error');
        return false;
      }
      return true;
    }
    async function save(quiet) {
      const b = body();
      if (!valid(b)) return false;
      try {
        await api('PUT', `/api/admin/candidates/${c.id}`, b);
        dirty = false;
        if (!quiet) result.textContent = '已保存修改。';
        return true;
      } catch (e) {
        if (e.status !== 401) G.showError(e);
        return false;
      }
    }
    const buttons = [];
    const badge = el('span', {});
    const setBadge = (status) => {
      badge.className = `badge st-${status === 'approved' ? 'resolved' : status === 'rejected' ? 'snoozed' : 'pending'}`;
      badge.textContent = { draft: '待审核', approved: '已批准', rejected: '已驳回' }[status] || status;
    };
    setBadge(c.status || 'draft');
    const card = el('article', { class: 'card cand', dataset: { id: c.id }, 'aria-labelledby': `ch-${c.id}` },
      el('div', { class: 'cand-head' },
        el('strong', { id: `ch-${c.id}`, text: `候选 #${c.id}` }),
        badge,
        c.created_at ? el('span', { text: `提交于 ${G.fmtTime(c.created_at, true)}` }) : null,
        c.created_by ? el('span', { text: `提交人 ${clerkLabel(c.created_by)}` }) : null,
        c.ticket_id ? el('span', { text: `来自工单 #${c.ticket_id}` }) : null),
      el('label', { for: qid, text: '问题（每行一种问法）' }), questions,
      el('label', { for: aid, text: '答案' }), answer,
      el('label', { for: sid, text: '所属事项（事项 id，可留空）' }), service,
      el('div', { class: 'cand-actions' }, buttons), result);
    if (editable) {
      const saveBtn = el('button', { type: 'button', class: 'btn', text: '保存修改' });
      const approveBtn = el('button', { type: 'button', class: 'btn primary', text: '批准并发布' });
      const rejectBtn = el('button', { type: 'button', class: 'btn danger', text: '驳回' });
      const all = [saveBtn, approveBtn, rejectBtn];
      const busy = (on) => { for (const b of all) b.disabled = on; card.setAttribute('aria-busy', String(on)); };
      saveBtn.addEventListener('click', async () => { busy(true); await save(false); busy(false); });
      approveBtn.addEventListener('click', async () => {
        if (!valid(body())) return;
        busy(true);
        result.textContent = '正在批准并重建知识库索引，请稍候…';
        try {
          if (dirty && !(await save(true))) {
            result.textContent = '';
            busy(false);
            return;
          }
          const r = await api('POST', `/api/admin/candidates/${c.id}/approve`, {});
          const msg = `已批准并发布。${describeReload(r)}`;
          result.textContent = msg;
          G.toast(msg, 'ok');
          G.announce(msg);
          for (const f of [questions, answer, service]) f.disabled = true;
          for (const b of all) b.remove();
          setBadge('approved');
          card.setAttribute('aria-busy', 'false');
        } catch (e) {
          result.textContent = '';
          if (e.status !== 401) G.showError(e);
          busy(false);
        }
      });
      rejectBtn.addEventListener('click', async () => {
        if (!window.confirm(`确定驳回候选 #${c.id}？`)) return;
        busy(true);
        try {
          await api('POST', `/api/admin/candidates/${c.id}/reject`, {});
          result.textContent = '已驳回。';
          setBadge('rejected');
          G.announce(`候选 #${c.id} 已驳回`);
          for (const f of [questions, answer, service]) f.disabled = true;
          for (const b of all) b.remove();
        } catch (e) {
          if (e.status !== 401) G.showError(e);
          busy(false);
        }
      });
      buttons.push(saveBtn, approveBtn, rejectBtn);
      card.querySelector('.cand-actions').append(...buttons);
    }
    return card;
  }
  $('cand-status').addEventListener('change', loadCandidates);
  $('cand-refresh').addEventListener('click', loadCandidates);

  // ---- clerks -------------------------------------------------------------------------------------------
  // created_by is a clerk id (or a name/object); the clerks list, once loaded, turns ids into names.
  const clerkNames = {};
  function clerkLabel(x) {
    if (x && typeof x === 'object') return G.clerkName(x);
    return clerkNames[x] || (typeof x === 'number' ? `#${x}` : String(x));
  }

  async function loadClerkNames() {
    try {
      for (const c of listOf(await api('GET', '/api/admin/clerks'), 'clerks')) clerkNames[c.id] = G.clerkName(c);
    } catch (e) { /* ids stay ids */ }
  }

  function roleSelect(value, label) {
    const s = el('select', { 'aria-label': label },
      el('option', { value: 'clerk', text: '坐席' }), el('option', { value: 'admin', text: '管理员' }));
    s.value = value || 'clerk';
    return s;
  }

  async function loadClerks() {
    try {
      const [r, d] = await Promise.all([
        api('GET', '/api/admin/clerks'),
        api('GET', '/api/desk/departments').catch(() => ({ departments: [] })),
      ]);
      $('dept-list').replaceChildren(...(d.departments || []).map((x) => el('option', { value: x })));
      const list = listOf(r, 'clerks');
      for (const c of list) clerkNames[c.id] = G.clerkName(c);
      $('clerk-rows').replaceChildren(...list.map(clerkRow));
    } catch (e) {
      if (e.status !== 401) G.showError(e);
    }
  }

  function clerkRow(c) {
    const who = c.username;
    const role = roleSelect(c.role, `${who} 的角色`);
    const dept = el('input', { 'aria-label': `${who} 的部门`, maxlength: 128, list: 'dept-list' });
    dept.value = c.department || '';
    const display = el('input', { 'aria-label': `${who} 的显示名`, maxlength: 64, size: 8 });
    display.value = c.display_name || '';
    const active = el('input', { type: 'checkbox', 'aria-label': `${who} 已启用` });
    active.checked = c.active !== false;
    const pw = el('input', { type: 'password', 'aria-label': `${who} 的新密码`, placeholder: '留空则不修改',
      autocomplete: 'new-password' });
    const save = el('button', { type: 'button', class: 'btn small', text: '保存' });
    save.addEventListener('click', async () => {
      const body = { role: role.value, department: dept.value.trim() || null, active: active.checked,
        display_name: display.value.trim() || null };
      if (pw.value && pw.value.length < 8) {
        G.toast('新密码至少 8 位。', 'error');
        pw.focus();
        return;
      }
      if (pw.value) body.password = pw.value;
      if (G.clerk && c.id === G.clerk.id && (!body.active || body.role !== 'admin')
          && !window.confirm('这会取消您自己的管理员权限或停用自己的账号，确定继续？')) return;
      save.disabled = true;
      try {
        await api('PUT', `/api/admin/clerks/${c.id}`, body);
        pw.value = '';
        G.toast(`已保存账号 ${who}${body.password ? '（密码已重置）' : ''}`, 'ok');
      } catch (e) {
        if (e.status !== 401) G.showError(e);
      } finally {
        save.disabled = false;
      }
    });
    return el('tr', { dataset: { id: c.id } },
      el('td', { text: String(c.id) }), el('td', { text: who }), el('td', {}, display),
      el('td', {}, role), el('td', {}, dept), el('td', {}, active), el('td', {}, pw), el('td', {}, save));
  }

  $('clerk-create').addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('nc-error');
    err.textContent = '';
    const body = {
      username: $('nc-username').value.trim(), password: $('nc-password').value, role: $('nc-role').value,
      department: $('nc-department').value.trim() || null, display_name: $('nc-display').value.trim() || null,
    };
    if (!body.username || !body.password) {
      err.textContent = '请填写用户名和初始密码。';
      return;
    }
    if (body.password.length < 8) {
      err.textContent = '初始密码至少 8 位。';
      return;
    }
    try {
      await api('POST', '/api/admin/clerks', body);
      G.toast(`已创建账号 ${body.username}`, 'ok');
      $('clerk-create').reset();
      loadClerks();
    } catch (ex) {
      if (ex.status !== 401) err.textContent = ex.message;
    }
  });

  // ---- statistics ---------------------------------------------------------------------------------------
  function pairs(x, keyNames) {
    // {k: n} | [[k, n]] | [{service|status|score…, count}] → [[label, n]]
    if (!x) return [];
    if (Array.isArray(x)) {
      return x.map((it) => {
        if (Array.isArray(it)) return [it[0], it[1]];
        const k = keyNames.map((n) => it[n]).find((v) => v !== undefined && v !== null);
        const name = it.name || it.service_name || it.title;
        return [name && name !== k ? `${name}（${k}）` : k, it.count ?? it.tickets ?? it.n ?? it.value ?? 0];
      });
    }
    if (typeof x === 'object') return Object.entries(x);
    return [];
  }

  function bars(container, rows, fmtKey) {
    const max = Math.max(1, ...rows.map((r) => Number(r[1]) || 0));
    container.replaceChildren(...rows.flatMap(([k, v]) => {
      const bar = el('span', { class: 'bar', 'aria-hidden': 'true' }, el('span', {}));
      bar.firstChild.style.width = `${Math.round(((Number(v) || 0) / max) * 100)}%`;
      return [el('span', { text: fmtKey ? fmtKey(k) : String(k) }), bar, el('span', { text: String(v) })];
    }));
    if (!rows.length) container.append(el('span', { class: 'muted', text: '暂无数据' }));
  }

  async function loadStats() {
    try {
      const s = await api('GET', `/api/admin/stats?days=${encodeURIComponent($('stats-days').value)}`);
      const sat = s.satisfaction || {};
      const cards = [
        ['会话数', s.conversations ?? '—'],
        ['消息数', s.messages ?? '—'],
        ['转人工率', G.pct(s.handoff_rate)],
        ['机器人直接解答占比', G.pct(s.answered_share)],
        ['等待时间中位数', typeof s.wait_p50_s === 'number' ? G.fmtDuration(s.wait_p50_s) : '—'],
        ['90% 工单等待不超过', typeof s.wait_p90_s === 'number' ? G.fmtDuration(s.wait_p90_s) : '—'],
        ['满意度（5 分制）', typeof sat.avg === 'number' ? `${sat.avg.toFixed(2)}（${sat.count ?? 0} 次评价）` : '暂无评价'],
      ];
      $('stats-cards').replaceChildren(...cards.map(([k, v]) => el('div', { class: 'stat' },
        el('div', { class: 'v', text: String(v) }), el('div', { class: 'k', text: k }))));
      const scoreName = { 5: '5 非常满意', 4: '4 满意', 3: '3 一般', 2: '2 不满意', 1: '1 非常不满意' };
      const byScore = pairs(sat.by_score, ['score']).sort((a, b) => Number(b[0]) - Number(a[0]));
      bars($('stats-satisfaction'), byScore, (k) => scoreName[k] || String(k));
      bars($('stats-status'), pairs(s.tickets_by_status, ['status']), (k) => G.label('status', k));
      const names = await serviceNames();
      const top = pairs(s.top_services, ['service', 'id'])
        .map(([k, v]) => [names[k] && !String(k).includes('（') ? `${names[k]}（${k}）` : k, v]);
      $('stats-services').replaceChildren(...(top.length ? top.map(([k, v]) => el('tr', {},
        el('td', { text: k === null || k === undefined ? '未识别事项' : String(k) }), el('td', { text: String(v) })))
        : [el('tr', {}, el('td', { colspan: '2', class: 'muted', text: '暂无数据' }))]));
    } catch (e) {
      if (e.status !== 401) G.showError(e);
    }
  }
  $('stats-days').addEventListener('change', loadStats);
  $('stats-refresh').addEventListener('click', loadStats);

  // ---- audit log ----------------------------------------------------------------------------------------
  const ACTIONS = {
    login: '登录', logout: '退出登录', login_failed: '登录失败', claim: '认领', reply: '回复', note: '内部备注',
    transfer: '转交', snooze: '暂挂', resolve: '办结', hand_back: '交回机器人', priority: '修改优先级',
    save_knowledge: '存为知识', candidate_edit: '修改候选知识', candidate_approve: '批准知识',
    candidate_reject: '驳回知识', knowledge_reload: '重新加载知识库', clerk_create: '新建账号', clerk_update: '修改账号',
  };
  async function loadAudit() {
    try {
      const r = await api('GET', `/api/admin/audit?limit=${encodeURIComponent($('audit-limit').value)}`);
      const rows = listOf(r, 'entries', 'audit', 'items');
      $('audit-rows').replaceChildren(...(rows.length ? rows.map((a) => el('tr', {},
        el('td', { text: G.fmtTime(a.at || a.created_at, true) }),
        el('td', { text: a.actor ?? '' }),
        el('td', { text: ACTIONS[a.action] ? `${ACTIONS[a.action]}（${a.action}）` : (a.action ?? '') }),
        el('td', { text: a.target ?? '' }),
        el('td', { class: 'detail', text: a.detail ? JSON.stringify(a.detail, null, 0) : '' })))
        : [el('tr', {}, el('td', { colspan: '5', class: 'muted', text: '暂无记录' }))]));
    } catch (e) {
      if (e.status !== 401) G.showError(e);
    }
  }
  $('audit-limit').addEventListener('change', loadAudit);
  $('audit-refresh').addEventListener('click', loadAudit);

  const LOADERS = { candidates: loadCandidates, clerks: loadClerks, stats: loadStats, audit: loadAudit };

  G.startSession({
    appViewId: 'admin-view',
    requireAdmin: true,
    onLogin() {
      loaded = {};
      activate(tabs.find((t) => t.getAttribute('aria-selected') === 'true') || tabs[0]);
    },
    onLogout() {
      loaded = {};
      $('cand-list').replaceChildren();
      $('clerk-rows').replaceChildren();
      $('audit-rows').replaceChildren();
    },
  });
})();
