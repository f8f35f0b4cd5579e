// The audit page (served at /admin, compiled into the binary). No framework and no build
// step: it reads the admin API (src/http/admin.rs) with the token the investigator types,
// kept in sessionStorage only, and draws one user's sessions as an SVG timeline.
//
// Everything that came from the log (user agents, device ids, IPs) is attacker-controlled
// text: it only ever reaches the page through textContent and attribute values, never HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'tokenledger.adminToken';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const EVENTS_PAGE = 1000;
  // A trail longer than this is cut (and said so): 200k events do not fit one timeline.
  const MAX_EVENT_PAGES = 200;
  const SLIDER_STEPS = 1000;
  const DEBOUNCE_MS = 250;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    forget: $('forget-token'),
    tokenPanel: $('token-panel'),
    tokenForm: $('token-form'),
    tokenInput: $('token-input'),
    tokenError: $('token-error'),
    workspace: $('workspace'),
    searchForm: $('search-form'),
    search: $('user-search'),
    results: $('user-results'),
    resultsMore: $('user-results-more'),
    panel: $('timeline-panel'),
    userTitle: $('user-title'),
    userFacts: $('user-facts'),
    legend: $('legend'),
    timeline: $('timeline'),
    slider: $('at-slider'),
    atLabel: $('at-label'),
    alive: $('alive'),
    aliveCount: $('alive-count'),
    aliveNoun: $('alive-noun'),
    aliveAt: $('alive-at'),
    aliveList: $('alive-list'),
    tooltip: $('tooltip'),
  };

  // ---- small helpers -------------------------------------------------------------------

  /** An HTML element with attributes and children (strings become text nodes). */
  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value !== undefined && value !== null) node.setAttribute(key, String(value));
    }
    for (const child of [].concat(children)) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  /** An SVG element with attributes. */
  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value !== undefined && value !== null) node.setAttribute(key, String(value));
    }
    return node;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  /** `2026-11-29 10:42:07 UTC`: investigators compare times across logs, so always UTC. */
  function formatTime(ms) {
    if (!Number.isFinite(ms)) return '–';
    return new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
  }

  function formatDuration(ms) {
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.round(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  // A UUID v7 starts with its creation time, so sessions opened close together share a
  // prefix: the random tail tells them apart.
  const shortId = (id) => (id ? `…${String(id).slice(-8)}` : '–');
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const REASONS = { login: 'login', register: 'registration', password_change: 'password change' };

  /** A session's name on the timeline: its device id, unless that is a generated UUID. */
  function sessionName(session) {
    const device = session.deviceId ?? '';
    if (device && !UUID.test(device)) return device.length > 24 ? `${device.slice(0, 23)}…` : device;
    return `(${REASONS[session.reason] ?? session.reason ?? 'session'})`;
  }
  const parseTime = (text) => (text ? Date.parse(text) : NaN);

  function setStatus(text, isError = false) {
    ui.status.textContent = text;
    ui.status.classList.toggle('error', isError);
  }

  // ---- the admin API -------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  let token = sessionStorage.getItem(TOKEN_KEY);

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body?.error?.message ?? `${response.status} ${response.statusText}`;
      if (response.status === 401) lock('The admin token was refused. Enter it again.');
      throw new ApiError(response.status, message);
    }
    return body;
  }

  // ---- the token -----------------------------------------------------------------------

  function lock(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    ui.workspace.hidden = true;
    ui.forget.hidden = true;
    ui.tokenPanel.hidden = false;
    ui.tokenError.hidden = !message;
    ui.tokenError.textContent = message ?? '';
    setStatus('');
    ui.tokenInput.focus();
  }

  async function unlock(candidate) {
    token = candidate;
    try {
      const found = await api('/api/admin/users?limit=20');
      sessionStorage.setItem(TOKEN_KEY, token);
      ui.tokenPanel.hidden = true;
      ui.tokenError.hidden = true;
      ui.tokenInput.value = '';
      ui.workspace.hidden = false;
      ui.forget.hidden = false;
      showUsers(found);
      const wanted = new URLSearchParams(location.hash.slice(1)).get('user');
      if (wanted) openUser(wanted);
      else ui.search.focus();
    } catch (error) {
      if (error.status !== 401) lock(`The admin API did not answer: ${error.message}`);
    }
  }

  ui.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const candidate = ui.tokenInput.value.trim();
    if (candidate) unlock(candidate);
  });
  ui.forget.addEventListener('click', () => lock(null));

  // ---- the user picker -----------------------------------------------------------------

  let searchSeq = 0;
  let currentUserId = null;

  function showUsers(found) {
    ui.results.replaceChildren();
    for (const user of found.data) {
      const button = el('button', { type: 'button', 'data-user-id': user.id }, [
        el('span', { class: 'name' }, user.username),
        user.blocked ? el('span', { class: 'badge' }, 'blocked') : null,
        el('span', { class: 'meta' }, `${user.email} · #${user.id}`),
      ]);
      if (String(user.id) === String(currentUserId)) button.setAttribute('aria-current', 'true');
      button.addEventListener('click', () => openUser(user.id));
      ui.results.append(el('li', {}, button));
    }
    if (found.data.length === 0) ui.results.append(el('li', { class: 'hint' }, 'No user matches.'));
    ui.resultsMore.hidden = !found.meta?.more;
  }

  async function searchUsers() {
    const seq = ++searchSeq;
    const q = ui.search.value.trim();
    try {
      const found = await api(`/api/admin/users?limit=20&q=${encodeURIComponent(q)}`);
      if (seq === searchSeq) showUsers(found);
    } catch (error) {
      if (seq === searchSeq) setStatus(`Search failed: ${error.message}`, true);
    }
  }

  ui.search.addEventListener('input', debounce(searchUsers, DEBOUNCE_MS));
  ui.searchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    searchUsers();
  });

  // ---- reading one user's trail ----------------------------------------------------------

  /** When an event happened: the domain's own time (what replay uses), not when it was stored. */
  function occurredAt(entry) {
    const p = entry.payload ?? {};
    const text =
      p.issued_at ?? p.rotated_at ?? p.refreshed_at ?? p.detected_at ?? p.revoked_at ??
      p.cleared_at ?? p.failed_at ?? p.registered_at ?? p.changed_at ?? p.blocked_at ??
      p.unblocked_at ?? entry.recordedAt;
    return parseTime(text);
  }

  async function readTrail(userId) {
    const entries = [];
    let after = 0;
    for (let page = 0; page < MAX_EVENT_PAGES; page += 1) {
      const body = await api(
        `/api/admin/users/${encodeURIComponent(userId)}/events?limit=${EVENTS_PAGE}&after=${after}`,
      );
      entries.push(...body.data);
      if (body.meta?.next === null || body.meta?.next === undefined) return { entries, cut: false };
      after = body.meta.next;
    }
    return { entries, cut: true };
  }

  /** The account events' marks, by event type (see `ACCOUNT_MARKS`). */
  const ACCOUNT_KINDS = {
    LoginFailed: 'login-failed',
    UserRegistered: 'registered',
    PasswordChanged: 'password-changed',
    UserBlocked: 'blocked',
    UserUnblocked: 'unblocked',
    UserImported: 'imported',
    PasswordRehashed: 'password-rehashed',
    PasswordResetRequested: 'reset-requested',
    PasswordReset: 'password-reset',
    EmailConfirmationRequested: 'confirmation-requested',
    EmailConfirmed: 'email-confirmed',
    EmailSent: 'email-sent',
    EmailFailed: 'email-failed',
  };

  /**
   * Folds the trail into sessions, each a bar from its login to its end, with its rotations,
   * reuse incidents and how it ended; and the account-wide marks (clears, failed logins,
   * registration, password changes, blocks).
   */
  function foldSessions(entries, now) {
    const sessions = new Map();
    const account = [];
    for (const entry of entries) {
      const at = occurredAt(entry);
      const p = entry.payload ?? {};
      const session = entry.sessionId ? sessions.get(entry.sessionId) : undefined;
      switch (entry.type) {
        case 'TokenIssued':
          sessions.set(entry.sessionId, {
            id: entry.sessionId,
            deviceId: p.device_id,
            reason: p.reason,
            start: at,
            loginIp: entry.ip ?? p.ip,
            loginAgent: entry.userAgent ?? p.user_agent,
            lastIp: entry.ip ?? p.ip,
            lastAgent: entry.userAgent ?? p.user_agent,
            expiresAt: Math.min(parseTime(p.idle_expires_at), parseTime(p.absolute_expires_at)),
            absoluteExpiresAt: parseTime(p.absolute_expires_at),
            generation: 0,
            uses: [],
            reuses: [],
            end: null,
          });
          break;
        case 'TokenRotated':
        case 'TokenRefreshed':
          if (!session) break;
          session.uses.push({ kind: entry.type === 'TokenRotated' ? 'rotation' : 'refresh', at, entry });
          session.generation = entry.generation ?? session.generation;
          session.lastIp = entry.ip ?? session.lastIp;
          session.lastAgent = entry.userAgent ?? session.lastAgent;
          session.expiresAt = Math.min(parseTime(p.idle_expires_at), session.absoluteExpiresAt);
          break;
        case 'RefreshTokenReused':
          if (session) session.reuses.push({ at, entry });
          break;
        case 'SessionRevoked':
          if (session && !session.end) session.end = { kind: 'revocation', at, reason: p.reason, entry };
          break;
        case 'SessionsCleared':
          account.push({ kind: 'clear', at, entry });
          for (const id of p.session_ids ?? []) {
            const cleared = sessions.get(id);
            if (cleared && !cleared.end) cleared.end = { kind: 'clear', at, reason: p.reason, entry };
          }
          break;
        default:
          if (ACCOUNT_KINDS[entry.type]) account.push({ kind: ACCOUNT_KINDS[entry.type], at, entry });
          break;
      }
    }
    for (const session of sessions.values()) {
      if (session.end) continue;
      if (Number.isFinite(session.expiresAt) && session.expiresAt <= now) {
        session.end = { kind: 'expiry', at: session.expiresAt, reason: 'expired' };
      }
    }
    const list = [...sessions.values()].sort((a, b) => a.start - b.start);
    return { sessions: list, account };
  }

  // ---- drawing -------------------------------------------------------------------------

  const LAYOUT = { label: 210, right: 24, axis: 40, row: 40, bar: 14, account: 34, bottom: 10 };

  /** Axis steps, from seconds to months; the first that leaves ~110 px between labels wins. */
  const STEPS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    2 * 86400, 7 * 86400, 30 * 86400].map((s) => s * 1000);

  let view = null; // { sessions, account, t0, t1, x(t), user, now, svg }

  function tipFor(node, title, rows) {
    node.setAttribute('data-tip', '');
    node.setAttribute('tabindex', '0');
    node.tip = { title, rows };
    return node;
  }

  function sessionTip(session) {
    const end = session.end;
    const how = (e) => {
      const reason = String(e.reason ?? '').replaceAll('_', ' ');
      return { revocation: `revoked: ${reason}`, clear: `cleared: ${reason}`, expiry: 'expired' }[e.kind];
    };
    const ended = end
      ? `${formatTime(end.at)} (${how(end)})`
      : `alive (expires ${formatTime(session.expiresAt)})`;
    const rows = [
      ['Session', session.id],
      ['Device', session.deviceId ?? '–'],
      ['Login', `${formatTime(session.start)} (${session.reason ?? 'login'})`],
      ['Ended', ended],
      ['IP', session.loginIp ?? '–'],
      ['User agent', session.loginAgent ?? '–'],
      ['Rotations', String(session.uses.filter((u) => u.kind === 'rotation').length)],
    ];
    if (session.lastIp !== session.loginIp) rows.push(['Last IP', session.lastIp ?? '–']);
    if (session.lastAgent !== session.loginAgent) rows.push(['Last agent', session.lastAgent ?? '–']);
    return rows;
  }

  /**
   * Where a request came from, as the trail has it: erased fields say why (the user was
   * forgotten, or the month is past the retention), and a refresh from the session's last
   * client says so instead of repeating it.
   */
  function seen(entry, value) {
    if (value === 'erased' && entry.erased) return `erased (${entry.erased})`;
    if (value == null && entry.sameClient) return 'as the session’s last use';
    return value ?? '–';
  }

  function entryRows(entry, at) {
    const rows = [
      ['Time', formatTime(at)],
      ['IP', seen(entry, entry.ip)],
      ['User agent', seen(entry, entry.userAgent)],
      ['Actor', entry.actor ?? '–'],
      ['Request id', entry.requestId ?? '–'],
    ];
    // The client's own X-Request-Id, labelled as such: it is what the client claimed.
    if (entry.clientRequestId) rows.push(['Client request id', entry.clientRequestId]);
    return rows;
  }

  /**
   * Each account mark: its title, the rows its tip adds from the payload (the log holds a
   * digest of the password hash, and the API shows only its first digits), and its shape.
   */
  const ACCOUNT_MARKS = {
    'login-failed': ['Failed login (wrong password)', () => [],
      (px, y) => svg('path', { class: 'failed', d: `M${px} ${y - 7} L${px + 7} ${y + 6} L${px - 7} ${y + 6} Z` })],
    registered: ['Registered', (p) => [['Username', p.username ?? '–'], ['Email', p.email ?? '–'],
      ['Provider', p.provider ?? '–'], ['Password digest', p.password_digest ?? '–']],
      (px, y) => svg('circle', { class: 'registered', cx: px, cy: y, r: 6 })],
    'password-changed': ['Password changed', (p) => [['Password digest', p.password_digest ?? '–']],
      (px, y) => svg('path', { class: 'password-changed', d: `M${px} ${y - 7} L${px + 7} ${y} L${px} ${y + 7} L${px - 7} ${y} Z` })],
    blocked: ['Blocked', () => [],
      (px, y) => svg('rect', { class: 'blocked', x: px - 6, y: y - 6, width: 12, height: 12 })],
    unblocked: ['Unblocked', () => [],
      (px, y) => svg('rect', { class: 'unblocked', x: px - 5, y: y - 5, width: 10, height: 10 })],
    imported: ['Imported', (p) => [['Source', p.source ?? '–'], ['Created there', p.created_at ?? '–']],
      (px, y) => svg('circle', { class: 'registered', cx: px, cy: y, r: 6 })],
    'password-rehashed': ['Password rehashed (same password)', (p) => [['From', p.from ?? '–'],
      ['Password digest', p.password_digest ?? '–']], diamond],
    'reset-requested': ['Password reset asked for', codeRows, emailMark],
    'password-reset': ['Password reset with an emailed code', (p) => [['Password digest', p.password_digest ?? '–']],
      diamond],
    'confirmation-requested': ['Email confirmation asked for', codeRows, emailMark],
    'email-confirmed': ['Email confirmed', () => [], emailMark],
    'email-sent': ['Email sent', (p) => [['Kind', p.kind ?? '–'], ['Message-ID', p.message_id ?? '–'],
      ['Attempt', String(p.attempt ?? '–')]], emailMark],
    'email-failed': ['Email not sent', (p) => [['Kind', p.kind ?? '–'], ['Error', p.error ?? '–'],
      ['Retry at', p.retry_at ?? 'gave up']],
      (px, y) => svg('path', { class: 'failed', d: `M${px} ${y - 7} L${px + 7} ${y + 6} L${px - 7} ${y + 6} Z` })],
  };

  /** A code's tip rows: its digest (first digits) and expiry. */
  function codeRows(p) {
    return [['Code digest', p.code_digest ?? '–'], ['Expires', p.expires_at ?? '–']];
  }

  function diamond(px, y) {
    return svg('path', { class: 'password-changed', d: `M${px} ${y - 7} L${px + 7} ${y} L${px} ${y + 7} L${px - 7} ${y} Z` });
  }

  function emailMark(px, y) {
    return svg('rect', { class: 'unblocked', x: px - 5, y: y - 4, width: 10, height: 8 });
  }

  function accountMark(mark, px, y) {
    const [title, rows, shape] = ACCOUNT_MARKS[mark.kind];
    const g = tipFor(svg('g', { 'data-kind': mark.kind }), title,
      [...rows(mark.entry.payload ?? {}), ...entryRows(mark.entry, mark.at)]);
    g.append(shape(px, y));
    return g;
  }

  function drawTimeline() {
    const { sessions, account, t0, t1 } = view;
    const width = Math.max(ui.timeline.clientWidth, 640);
    const plot = width - LAYOUT.label - LAYOUT.right;
    const x = (t) => LAYOUT.label + ((t - t0) / (t1 - t0)) * plot;
    view.x = x;
    const hasAccountRow = account.length > 0;
    const top = LAYOUT.axis + (hasAccountRow ? LAYOUT.account : 0);
    const rows = Math.max(sessions.length, 1);
    const height = top + rows * LAYOUT.row + LAYOUT.bottom;
    const root = svg('svg', {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': `Sessions of ${view.user.username} over time`,
    });

    // Lanes first, so everything else draws over them.
    sessions.forEach((session, i) => {
      root.append(svg('rect', {
        class: `lane${i % 2 ? ' odd' : ''}`, x: 0, y: top + i * LAYOUT.row, width, height: LAYOUT.row,
      }));
    });

    // The time axis and its grid.
    const axis = svg('g', { class: 'axis' });
    const step = STEPS.find((s) => (plot / ((t1 - t0) / s)) >= 110) ?? STEPS[STEPS.length - 1];
    let lastDay = null;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const px = x(t);
      axis.append(svg('line', { class: 'grid', x1: px, x2: px, y1: LAYOUT.axis - 6, y2: height - LAYOUT.bottom }));
      const iso = new Date(t).toISOString();
      const day = iso.slice(0, 10);
      const clock = step < 60000 ? iso.slice(11, 19) : iso.slice(11, 16);
      const label = svg('text', { x: px, y: 14, 'text-anchor': 'middle' });
      label.textContent = step >= 86400000 ? day.slice(5) : clock;
      axis.append(label);
      if (day !== lastDay && step < 86400000) {
        const date = svg('text', { class: 'date', x: px, y: 28, 'text-anchor': 'middle' });
        date.textContent = day;
        axis.append(date);
      }
      lastDay = day;
    }
    const utc = svg('text', { x: 8, y: 14 });
    utc.textContent = 'time (UTC)';
    axis.append(utc);
    root.append(axis);

    // Account-wide marks: clears (a line across every session) and failed logins.
    if (hasAccountRow) {
      const y = LAYOUT.axis + LAYOUT.account / 2;
      const label = svg('text', { class: 'row-label', x: 8, y: y + 4 });
      label.textContent = 'account';
      root.append(label);
      for (const mark of account) {
        const px = x(mark.at);
        if (mark.kind === 'clear') {
          const p = mark.entry.payload ?? {};
          // A connector down to the lowest session this clear ended (a device logout ends
          // some, "log out everywhere" all).
          const ended = new Set(p.session_ids ?? []);
          const lowest = sessions.reduce((last, s, i) => (ended.has(s.id) ? i : last), -1);
          if (lowest >= 0) {
            const y2 = top + lowest * LAYOUT.row + LAYOUT.row / 2;
            root.append(svg('line', { class: 'cleared-line', x1: px, x2: px, y1: y, y2 }));
          }
          const g = tipFor(svg('g', { 'data-kind': 'clear' }), 'All sessions cleared', [
            ['Reason', String(p.reason ?? '–').replaceAll('_', ' ')],
            ['Sessions', String((p.session_ids ?? []).length)],
            ['Kept', p.kept ?? '–'],
            ...entryRows(mark.entry, mark.at),
          ]);
          g.append(svg('rect', { class: 'cleared', x: px - 6, y: y - 6, width: 12, height: 12, rx: 2 }));
          root.append(g);
        } else {
          root.append(accountMark(mark, px, y));
        }
      }
    }

    if (sessions.length === 0) {
      const empty = svg('text', { class: 'empty', x: LAYOUT.label, y: top + LAYOUT.row / 2 + 4 });
      empty.textContent = 'No session in this trail.';
      root.append(empty);
    }

    sessions.forEach((session, i) => {
      const mid = top + i * LAYOUT.row + LAYOUT.row / 2;
      const endAt = session.end ? session.end.at : view.now;
      const x1 = x(session.start);
      const x2 = Math.max(x(Math.min(endAt, t1)), x1 + 3);
      const row = svg('g', { class: 'session-row', 'data-session-id': session.id });

      const name = svg('text', { class: 'row-label', x: 8, y: mid - 3, 'data-session-id': session.id });
      name.textContent = sessionName(session);
      const sub = svg('text', { class: 'row-sub', x: 8, y: mid + 11 });
      sub.textContent = `${shortId(session.id)} · ${session.loginIp ?? 'no ip'}`;
      row.append(name, sub);

      const bar = tipFor(svg('rect', {
        class: `bar${session.end ? '' : ' alive-now'}`,
        'data-kind': 'session',
        'data-session-id': session.id,
        x: x1, y: mid - LAYOUT.bar / 2, width: x2 - x1, height: LAYOUT.bar, rx: 3,
      }), `Session ${shortId(session.id)}`, sessionTip(session));
      row.append(bar);

      for (const use of session.uses) {
        const px = x(use.at);
        const g = tipFor(svg('g', { 'data-kind': use.kind, 'data-session-id': session.id }),
          use.kind === 'rotation'
            ? `Rotation to generation ${use.entry.generation}`
            : `Refresh (no rotation), generation ${use.entry.generation}`,
          entryRows(use.entry, use.at));
        const y1 = mid - LAYOUT.bar / 2 - 4;
        const y2 = mid + LAYOUT.bar / 2 + 4;
        g.append(
          svg('line', { class: `tick-line ${use.kind}`, x1: px, x2: px, y1, y2 }),
          svg('rect', { class: 'hit', x: px - 4, y: y1, width: 8, height: y2 - y1 }),
        );
        row.append(g);
      }

      if (session.end) {
        const px = x(session.end.at);
        const kind = session.end.kind;
        const reason = String(session.end.reason ?? '').replaceAll('_', ' ');
        const [title, rows] = {
          revocation: [`Session revoked: ${reason}`, () => entryRows(session.end.entry, session.end.at)],
          clear: [`Sessions cleared: ${reason}`, () => entryRows(session.end.entry, session.end.at)],
          expiry: ['Session expired', () => [['Time', formatTime(session.end.at)],
            ['Last used', formatTime(session.uses.at(-1)?.at ?? session.start)]]],
        }[kind];
        const g = tipFor(svg('g', { 'data-kind': kind, 'data-session-id': session.id }), title, rows());
        g.append(svg('rect', {
          class: { revocation: 'revoked', clear: 'cleared', expiry: 'expired' }[kind],
          x: px - 3, y: mid - LAYOUT.bar / 2 - 5, width: 6, height: LAYOUT.bar + 10, rx: 1.5,
        }));
        row.append(g);
      }

      for (const reuse of session.reuses) {
        const px = x(reuse.at);
        const e = reuse.entry;
        const g = tipFor(svg('g', { 'data-kind': 'reuse', 'data-session-id': session.id }),
          'Refresh token reuse detected', [
            ['Presented', `generation ${e.payload?.presented_generation ?? e.generation}`],
            ['Current', `generation ${e.payload?.current_generation ?? '–'}`],
            ...entryRows(e, reuse.at),
          ]);
        const cy = mid - LAYOUT.bar / 2 - 7;
        g.append(svg('path', { class: 'reuse', d: `M${px} ${cy - 7} L${px + 7} ${cy} L${px} ${cy + 7} L${px - 7} ${cy} Z` }));
        row.append(g);
      }
      root.append(row);
    });

    // The slider's moment, drawn last so it stays visible.
    const cursor = svg('g', { class: 'cursor-group' });
    cursor.append(
      svg('line', { class: 'cursor', x1: 0, x2: 0, y1: LAYOUT.axis - 4, y2: height - LAYOUT.bottom }),
    );
    root.append(cursor);
    view.cursor = cursor;
    view.svg = root;
    ui.timeline.replaceChildren(root);
    placeCursor();
    highlight(view.aliveIds ?? new Set());
  }

  function drawLegend() {
    const icon = (draw) => {
      const box = svg('svg', { width: 26, height: 18, viewBox: '0 0 26 18', 'aria-hidden': 'true' });
      draw(box);
      return box;
    };
    const items = [
      ['session, alive now', (b) => b.append(svg('rect', { class: 'bar alive-now', x: 1, y: 4, width: 24, height: 10, rx: 2 }))],
      ['session, ended', (b) => b.append(svg('rect', { class: 'bar', x: 1, y: 4, width: 24, height: 10, rx: 2 }))],
      ['rotation', (b) => b.append(svg('rect', { class: 'bar', x: 1, y: 4, width: 24, height: 10, rx: 2 }),
        svg('line', { class: 'tick-line rotation', x1: 13, x2: 13, y1: 1, y2: 17 }))],
      ['refresh (no rotation)', (b) => b.append(svg('rect', { class: 'bar', x: 1, y: 4, width: 24, height: 10, rx: 2 }),
        svg('line', { class: 'tick-line refresh', x1: 13, x2: 13, y1: 1, y2: 17 }))],
      ['reuse detected', (b) => b.append(svg('path', { class: 'reuse', d: 'M13 2 L20 9 L13 16 L6 9 Z' }))],
      ['revoked', (b) => b.append(svg('rect', { class: 'bar', x: 1, y: 4, width: 14, height: 10, rx: 2 }),
        svg('rect', { class: 'revoked', x: 13, y: 1, width: 6, height: 16, rx: 1.5 }))],
      ['sessions cleared', (b) => b.append(svg('line', { class: 'cleared-line', x1: 13, x2: 13, y1: 0, y2: 18 }),
        svg('rect', { class: 'cleared', x: 8, y: 4, width: 10, height: 10, rx: 2 }))],
      ['expired', (b) => b.append(svg('rect', { class: 'bar', x: 1, y: 4, width: 14, height: 10, rx: 2 }),
        svg('rect', { class: 'expired', x: 13, y: 1, width: 6, height: 16, rx: 1.5 }))],
      ['failed login', (b) => b.append(svg('path', { class: 'failed', d: 'M13 2 L20 15 L6 15 Z' }))],
      ['registered', (b) => b.append(svg('circle', { class: 'registered', cx: 13, cy: 9, r: 6 }))],
      ['password changed', (b) => b.append(svg('path', { class: 'password-changed', d: 'M13 2 L20 9 L13 16 L6 9 Z' }))],
      ['blocked', (b) => b.append(svg('rect', { class: 'blocked', x: 7, y: 3, width: 12, height: 12 }))],
      ['unblocked', (b) => b.append(svg('rect', { class: 'unblocked', x: 8, y: 4, width: 10, height: 10 }))],
      ['alive at the slider', (b) => b.append(svg('rect', { class: 'bar alive-now is-alive-at', x: 2, y: 4, width: 22, height: 10, rx: 2 }))],
    ];
    ui.legend.replaceChildren(...items.map(([text, draw]) => el('li', {}, [icon(draw), text])));
  }

  // ---- the tooltip ---------------------------------------------------------------------

  function showTip(node, clientX, clientY) {
    const { title, rows } = node.tip;
    const list = el('dl');
    for (const [key, value] of rows) list.append(el('dt', {}, key), el('dd', {}, value));
    ui.tooltip.replaceChildren(el('strong', {}, title), list);
    ui.tooltip.hidden = false;
    // Above and to the right of the pointer, so that the rows below (and the slider) stay
    // readable; flipped where the window ends.
    const pad = 12;
    const { width, height } = ui.tooltip.getBoundingClientRect();
    let left = clientX + pad;
    let top = clientY - height - pad;
    if (left + width > window.innerWidth - 4) left = Math.max(4, clientX - width - pad);
    if (top < 4) top = Math.min(clientY + pad, window.innerHeight - height - 4);
    ui.tooltip.style.left = `${left}px`;
    ui.tooltip.style.top = `${top}px`;
  }

  function hideTip() {
    ui.tooltip.hidden = true;
  }

  const tipTarget = (event) => event.target.closest?.('[data-tip]');
  ui.timeline.addEventListener('pointermove', (event) => {
    const node = tipTarget(event);
    if (node) showTip(node, event.clientX, event.clientY);
    else hideTip();
  });
  ui.timeline.addEventListener('pointerleave', hideTip);
  ui.timeline.addEventListener('focusin', (event) => {
    const node = tipTarget(event);
    if (!node) return;
    const box = node.getBoundingClientRect();
    showTip(node, box.left + box.width / 2, box.bottom);
  });
  ui.timeline.addEventListener('focusout', hideTip);

  // ---- the "alive at" slider -------------------------------------------------------------

  let aliveSeq = 0;

  function sliderTime() {
    const { t0, t1 } = view;
    return Math.round(t0 + (Number(ui.slider.value) / SLIDER_STEPS) * (t1 - t0));
  }

  function placeCursor() {
    if (!view?.cursor) return;
    const at = sliderTime();
    view.cursor.setAttribute('transform', `translate(${view.x(at)} 0)`);
  }

  function highlight(ids) {
    if (!view?.svg) return;
    for (const node of view.svg.querySelectorAll('.bar[data-kind="session"], .row-label[data-session-id]')) {
      node.classList.toggle('is-alive-at', ids.has(node.getAttribute('data-session-id')));
    }
  }

  const fetchAlive = debounce(async (iso) => {
    const seq = ++aliveSeq;
    try {
      const body = await api(
        `/api/admin/users/${encodeURIComponent(view.user.id)}/sessions?at=${encodeURIComponent(iso)}`,
      );
      if (seq !== aliveSeq) return;
      showAlive(body.data, iso);
    } catch (error) {
      if (seq === aliveSeq) setStatus(`Replay failed: ${error.message}`, true);
    }
  }, DEBOUNCE_MS);

  function showAlive(sessions, iso) {
    const ids = new Set(sessions.map((s) => s.id));
    view.aliveIds = ids;
    ui.aliveCount.textContent = String(sessions.length);
    ui.aliveNoun.textContent = sessions.length === 1 ? 'session' : 'sessions';
    ui.aliveAt.textContent = formatTime(Date.parse(iso));
    ui.aliveAt.setAttribute('datetime', iso);
    ui.aliveList.replaceChildren(...sessions.map((s) => el('tr', { 'data-session-id': s.id }, [
      el('td', { class: 'mono', title: s.id }, shortId(s.id)),
      el('td', {}, [s.deviceId ?? '–', el('span', { class: 'meta' }, s.deviceName ? ` · ${s.deviceName}` : '')]),
      el('td', { class: 'mono' }, formatTime(parseTime(s.loginAt))),
      el('td', { class: 'mono' }, formatTime(parseTime(s.lastActiveAt))),
      el('td', { class: 'mono' }, s.ip ?? '–'),
      el('td', { class: 'agent' }, s.userAgent ?? '–'),
    ])));
    ui.alive.setAttribute('data-at', iso);
    ui.alive.removeAttribute('aria-busy');
    highlight(ids);
  }

  function onSlider() {
    if (!view) return;
    const at = sliderTime();
    const iso = new Date(at).toISOString();
    ui.slider.setAttribute('data-at', iso);
    ui.atLabel.textContent = formatTime(at);
    ui.alive.setAttribute('aria-busy', 'true');
    placeCursor();
    fetchAlive(iso);
  }

  ui.slider.addEventListener('input', onSlider);

  // ---- opening a user --------------------------------------------------------------------

  async function openUser(userId) {
    currentUserId = String(userId);
    for (const button of ui.results.querySelectorAll('button[data-user-id]')) {
      if (button.getAttribute('data-user-id') === currentUserId) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
    }
    history.replaceState(null, '', `#user=${encodeURIComponent(currentUserId)}`);
    setStatus('Reading the trail…');
    try {
      const [found, trail, aliveNow] = await Promise.all([
        api(`/api/admin/users?limit=1&q=${encodeURIComponent(currentUserId)}`),
        readTrail(currentUserId),
        api(`/api/admin/users/${encodeURIComponent(currentUserId)}/sessions`),
      ]);
      if (String(userId) !== currentUserId) return; // another user was picked meanwhile
      const user = found.data.find((u) => String(u.id) === currentUserId) ?? { id: currentUserId, username: `#${currentUserId}` };
      // The server's now, not this machine's: the two clocks may disagree.
      const now = parseTime(aliveNow.meta?.at) || Date.now();
      const { sessions, account } = foldSessions(trail.entries, now);
      const times = trail.entries.map(occurredAt).filter(Number.isFinite);
      // A loop, not Math.min(...times): spreading a long trail overflows the call stack.
      let t0 = times.reduce((a, b) => Math.min(a, b), now);
      let t1 = times.reduce((a, b) => Math.max(a, b), now);
      if (t1 - t0 < 60000) t0 = t1 - 60000;
      const pad = (t1 - t0) * 0.02;
      t0 -= pad;
      t1 += pad;
      view = { user, sessions, account, t0, t1, now, aliveIds: new Set() };

      ui.userTitle.textContent = `${user.username}`;
      const facts = [
        ['id', String(user.id)],
        ['email', user.email ?? '–'],
        ['status', user.blocked ? 'blocked' : 'active'],
        ['events', String(trail.entries.length) + (trail.cut ? ' (cut)' : '')],
        ['sessions', `${sessions.length} (${aliveNow.data.length} alive now)`],
        ['span', formatDuration(t1 - t0)],
      ];
      ui.userFacts.replaceChildren(...facts.map(([k, v]) => el('div', {}, [el('dt', {}, k), el('dd', {}, v)])));
      ui.panel.hidden = false;
      drawLegend();
      // The slider starts at the server's now.
      ui.slider.value = String(Math.round(((now - t0) / (t1 - t0)) * SLIDER_STEPS));
      drawTimeline();
      onSlider();
      setStatus(`${trail.entries.length} events read${trail.cut ? ', cut at the first ' + trail.entries.length : ''}.`);
    } catch (error) {
      if (error.status !== 401) setStatus(`Could not read user ${currentUserId}: ${error.message}`, true);
    }
  }

  window.addEventListener('resize', debounce(() => {
    if (view) drawTimeline();
  }, 150));

  ui.slider.max = String(SLIDER_STEPS);
  if (token) unlock(token);
  else lock(null);
})();
