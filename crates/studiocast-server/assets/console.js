// studiocast's technician console. Plain script, no framework: the control
// API with the token from sessionStorage, the events stream read by fetch
// (EventSource cannot send Authorization), hls.js previews, and meters
// drawn on one canvas per session (64 DOM bars updated ten times a second
// would cost layout on every reading).
'use strict';
(() => {
  const KEY = 'studiocast.token';
  const $ = (s, r = document) => r.querySelector(s);
  const RUNNING = new Set(['starting', 'live', 'stopping']);
  let token = sessionStorage.getItem(KEY);
  // What tests and the curious can read: the meters' state and draw times.
  const exposed = window.studiocastConsole = { meters: new Map(), drawMs: [], events: 0, ready: false };

  function el(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : String(k));
    return e;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { authorization: `Bearer ${token}` };
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) { headers['content-type'] = 'application/json'; payload = JSON.stringify(body); }
    const r = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (r.status === 401) { signOut('The token was refused: sign in again.'); }
    if (!r.ok) throw new ApiError(r.status, (json && json.message) || `HTTP ${r.status}`);
    return json;
  }

  const fmtTime = s => s ? new Date(s).toLocaleString() : '';
  const fmtEta = s => s === undefined || s === null ? '' : s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
  const setStatus = t => { $('#link').textContent = t; };

  // ---- sign-in -----------------------------------------------------------
  async function signIn(candidate) {
    token = candidate;
    try {
      await api('GET', 'api/v1/sessions');
    } catch (e) {
      token = null;
      throw e;
    }
    sessionStorage.setItem(KEY, candidate);
    $('#signin').hidden = true;
    $('#app').hidden = false;
    $('#signout').hidden = false;
    start();
  }

  function signOut(why) {
    sessionStorage.removeItem(KEY);
    token = null;
    location.hash = '';
    if (why) sessionStorage.setItem('studiocast.why', why);
    location.reload();
  }

  $('#signin-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    $('#signin-error').textContent = '';
    const input = $('#token');
    try {
      await signIn(input.value.trim());
      input.value = '';
    } catch (e) {
      $('#signin-error').textContent = e.status === 403
        ? `This token cannot read the sessions (${e.message}).`
        : `Sign-in failed: ${e.message}`;
    }
  });
  $('#signout').addEventListener('click', () => signOut());

  // ---- views ---------------------------------------------------------------
  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => {
      for (const t of document.querySelectorAll('.tab')) t.setAttribute('aria-pressed', String(t === tab));
      $('#sessions-view').hidden = tab.dataset.view !== 'sessions';
      $('#jobs-view').hidden = tab.dataset.view !== 'jobs';
      if (tab.dataset.view === 'jobs') refreshJobs();
    });
  }

  // ---- presets and devices ---------------------------------------------------
  let presets = [];
  function deviceState(want, kind, devices) {
    if (!want) return null;
    const found = devices.find(d => d.kind === kind && d.host === want.host &&
      (want.name === '' || d.name === want.name || d.name.includes(want.name)));
    if (!found) return { ok: false, text: `${want.host} ${want.name || 'input'}: not found` };
    return found.available ? { ok: true, text: `${want.host} ${found.name}: available` }
      : { ok: false, text: `${want.host} ${found.name}: ${found.reason || 'unavailable'}` };
  }

  async function loadPresets() {
    const [list, devices] = await Promise.all([
      api('GET', 'api/v1/presets'),
      api('GET', 'api/v1/devices').catch(() => []),
    ]);
    presets = list;
    const select = $('#start-preset');
    const chosen = select.value;
    select.replaceChildren(...list.map(p => el('option', { value: p.name }, p.name)));
    if (chosen) select.value = chosen;
    $('#presets tbody').replaceChildren(...list.map(p => {
      const states = [deviceState(p.audio_device, 'audio', devices), deviceState(p.video_device, 'video', devices)]
        .filter(Boolean);
      const roles = p.channels.filter(Boolean);
      return el('tr', {},
        el('td', {}, el('strong', {}, p.name), el('br'), el('span', { class: 'hint' }, p.description)),
        el('td', {}, p.audio),
        el('td', {}, p.video || 'none'),
        el('td', {}, `${p.channels.length}`, roles.length ? el('span', { class: 'hint' }, ` (${roles.slice(0, 6).join(' ')}${roles.length > 6 ? ' …' : ''})`) : ''),
        el('td', {}, states.length ? states.map(s => el('div', { class: s.ok ? 'ok' : 'bad' }, s.ok ? '✓ ' : '✗ ', s.text)) : 'none needed'));
    }));
  }

  $('#start-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const f = ev.target;
    const body = { pipeline: f.pipeline.value, title: f.title.value.trim() };
    if (f.course.value.trim()) body.course = f.course.value.trim();
    if (f.visibility.value) body.visibility = f.visibility.value;
    $('#start-error').textContent = '';
    const button = f.querySelector('button');
    button.disabled = true;
    try {
      await api('POST', 'api/v1/sessions', body);
      f.title.value = '';
      await refreshSessions();
    } catch (e) {
      $('#start-error').textContent = `Not started: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });

  // ---- sessions ------------------------------------------------------------
  const cards = new Map();
  let refreshing = null;
  // Disk use per session (GET /api/v1/retention walks the folders: read
  // at most every 30 s, and after a pin).
  let disk = new Map();
  let diskAt = 0;
  async function readDisk(force) {
    if (!force && performance.now() - diskAt < 30000) return;
    diskAt = performance.now();
    try {
      const r = await api('GET', 'api/v1/retention');
      disk = new Map(r.sessions.map(u => [u.id, u]));
    } catch { /* the column stays as it was */ }
  }
  const fmtBytes = b => b >= 1e9 ? `${(b / 1e9).toFixed(1)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${Math.round(b / 1e3)} kB`;

  function refreshSessions() {
    // One refresh at a time; a request meanwhile runs once after it.
    if (refreshing) { refreshing.again = true; return refreshing.done; }
    const r = { again: false };
    r.done = (async () => {
      try {
        do {
          r.again = false;
          const list = await api('GET', 'api/v1/sessions');
          // A session newly ended is read at once.
          await readDisk(list.some(x => !RUNNING.has(x.state) && !disk.has(x.id)));
          render(list);
        } while (r.again);
      } catch (e) {
        setStatus(`Sessions not read: ${e.message}`);
      } finally {
        refreshing = null;
      }
    })();
    refreshing = r;
    return r.done;
  }

  function render(list) {
    const running = list.filter(s => RUNNING.has(s.state));
    for (const s of running) {
      if (!cards.has(s.id)) cards.set(s.id, new SessionCard(s));
      cards.get(s.id).update(s);
    }
    for (const [id, card] of cards) {
      if (!running.some(s => s.id === id)) { card.close(); cards.delete(id); }
    }
    $('#running-empty').hidden = running.length > 0;
    $('#past tbody').replaceChildren(...list.filter(s => !RUNNING.has(s.state)).map(pastRow));
    renderAlarms(running);
  }

  function renderAlarms(running) {
    const items = [];
    for (const s of running) for (const a of s.alarms || []) items.push(el('li', {}, el('strong', {}, s.title || s.id), ': ', a));
    const box = $('#alarms');
    if (!items.length) { box.replaceChildren(); document.title = 'studiocast console'; return; }
    box.replaceChildren(el('span', {}, `⚠ ${items.length} alarm${items.length > 1 ? 's' : ''}`), el('ul', {}, items));
    document.title = `⚠ (${items.length}) studiocast console`;
  }

  function pastRow(s) {
    const links = el('td');
    if (s.state === 'ended' && s.urls && s.urls.vod) {
      links.append(el('a', { href: s.urls.vod, class: 'vod' }, 'VOD'), ' · ');
    }
    links.append(el('a', { href: `embed/${encodeURIComponent(s.id)}`, target: '_blank', rel: 'noopener' }, 'Embed'), ' · ');
    const out = el('input', { class: 'link-out', readonly: true, 'aria-label': 'Private playback link', hidden: true });
    links.append(el('button', { type: 'button', onclick: () => mint(s.id, out) }, 'Private link'), ' ', out);
    const u = disk.get(s.id);
    const diskCell = el('td', { class: 'disk' });
    if (u) {
      diskCell.append(`HLS ${fmtBytes(u.hls_bytes)} · masters ${fmtBytes(u.masters_bytes)}`);
      if (u.due.length) diskCell.append(el('div', { class: 'hint' }, `retention would remove: ${u.due.join(', ')}`));
      diskCell.append(el('div', {}, el('button', { type: 'button', 'aria-pressed': String(u.pinned), onclick: () => setPin(s.id, !u.pinned) },
        u.pinned ? '📌 Pinned (unpin)' : 'Pin (keep)')));
    }
    return el('tr', { 'data-id': s.id },
      el('td', {}, s.title || s.id, s.course ? el('div', { class: 'hint' }, s.course) : null),
      el('td', {}, el('span', { class: `badge ${s.state}` }, s.state), s.error ? el('div', { class: 'bad' }, s.error) : null,
        (s.alarms || []).map(a => el('div', { class: 'bad' }, '⚠ ', a))),
      el('td', {}, fmtTime(s.started_at)),
      el('td', {}, fmtTime(s.ended_at)),
      diskCell,
      links);
  }

  async function setPin(id, pinned) {
    try {
      await api(pinned ? 'PUT' : 'DELETE', `api/v1/sessions/${encodeURIComponent(id)}/pin`);
    } catch (e) {
      window.alert(`Not ${pinned ? 'pinned' : 'unpinned'}: ${e.message}`);
    }
    await readDisk(true);
    refreshSessions();
  }

  async function mint(id, out) {
    try {
      const t = await api('POST', `api/v1/sessions/${encodeURIComponent(id)}/playback-token`, {});
      out.value = new URL(`embed/${encodeURIComponent(id)}?token=${encodeURIComponent(t.token)}`, location.href).href;
      out.hidden = false;
      out.select();
    } catch (e) {
      out.hidden = false;
      out.value = `No link: ${e.message}`;
    }
  }

  class SessionCard {
    constructor(s) {
      this.id = s.id;
      this.stateBadge = el('span', { class: 'badge' });
      this.health = el('dl', { class: 'health' });
      // Audio-only presets get a player without a picture.
      const preset = presets.find(p => p.name === s.pipeline);
      const audioOnly = preset && !preset.video;
      this.video = el(audioOnly ? 'audio' : 'video', { muted: true, playsinline: true, controls: true, 'aria-label': 'Preview (muted)' });
      this.video.muted = true;
      this.canvas = el('canvas', { class: 'meters', role: 'img', 'aria-label': 'Level meters' });
      this.clipText = el('span', { class: 'clips', 'aria-live': 'polite' });
      const stop = el('button', { type: 'button', class: 'danger', onclick: () => this.stop() }, 'Stop…');
      this.root = el('article', { class: 'card', 'data-id': s.id, 'aria-label': s.title || s.id },
        el('div', { class: 'card-head' }, el('h3', {}, s.title || s.id), this.stateBadge,
          el('span', { class: 'hint grow' }, `${s.pipeline} · ${s.id}`), stop),
        el('div', { class: 'card-body' },
          el('div', {}, this.video, this.health),
          el('div', {}, this.canvas,
            el('div', { class: 'meter-tools' },
              el('button', { type: 'button', onclick: () => this.meters.clearClips() }, 'Clear clip indicators'),
              this.clipText))));
      $('#running').append(this.root);
      this.meters = new Meters(this.canvas, this.clipText);
      exposed.meters.set(this.id, this.meters);
      this.closed = false;
      this.pollHealth();
    }

    update(s) {
      this.info = s;
      this.stateBadge.textContent = s.state;
      this.stateBadge.className = `badge ${s.state}`;
      // The meters and the picture exist once the session is live.
      if (s.state === 'live' && !this.ws) this.connectMeters();
      if (!this.hls && s.state === 'live' && s.urls && s.urls.hls) this.preview(s);
    }

    async preview(s) {
      let src = s.urls.hls;
      if (s.visibility === 'private') {
        try {
          const t = await api('POST', `api/v1/sessions/${encodeURIComponent(s.id)}/playback-token`, { ttl_s: 3600 });
          src += `?token=${encodeURIComponent(t.token)}`;
        } catch (e) {
          this.hls = { destroy() {} };
          this.video.replaceWith(el('p', { class: 'hint' }, `No preview of a private session: ${e.message}`));
          return;
        }
      }
      if (window.Hls && Hls.isSupported()) {
        this.hls = new Hls({ lowLatencyMode: true, capLevelToPlayerSize: true });
        this.hls.loadSource(src);
        this.hls.attachMedia(this.video);
      } else {
        this.hls = { destroy() {} };
        this.video.src = src;
      }
      this.video.play().catch(() => { /* muted autoplay refused: the controls remain */ });
    }

    connectMeters() {
      if (this.closed) return;
      const url = new URL(`api/v1/sessions/${encodeURIComponent(this.id)}/meters`, location.href);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      const ws = new WebSocket(url, ['studiocast.bearer', token]);
      this.ws = ws;
      ws.onmessage = ev => { try { this.meters.push(JSON.parse(ev.data)); } catch { /* ignored */ } };
      // The server closes the socket when the session stops: reconnect
      // only while it is still live (a stopping one would answer 409).
      ws.onclose = () => {
        setTimeout(() => {
          if (!this.closed && this.info && this.info.state === 'live') this.connectMeters();
        }, 2000);
      };
    }

    async pollHealth() {
      while (!this.closed) {
        try {
          const s = await api('GET', `api/v1/sessions/${encodeURIComponent(this.id)}`);
          this.showHealth(s.inputs);
        } catch { /* the next try */ }
        await new Promise(r => setTimeout(r, 2000));
      }
    }

    showHealth(i) {
      if (!i) { this.health.replaceChildren(); return; }
      const rows = [];
      const row = (k, v, bad) => rows.push(el('dt', {}, k), el('dd', { class: bad ? 'bad' : '' }, bad ? `⚠ ${v}` : v));
      row('Audio', `${i.audio_source} (last block ${i.last_block_age_s.toFixed(1)} s ago)`, i.last_block_age_s > 1 || i.last_block_age_s < 0);
      if (i.video) {
        row('Video', `${i.video.source}: ${i.video.signal_present ? 'signal' : 'NO SIGNAL'}${i.video.on_slate ? ' (slate on air)' : ''}`, !i.video.signal_present);
        row('Reconnects', `${i.video.reconnects}`);
      }
      row('Drift', `${i.drift_ppm.toFixed(1)} ppm`, Math.abs(i.drift_ppm) > 200);
      row('A/V offset', `${i.av_offset_ms.toFixed(1)} ms`, Math.abs(i.av_offset_ms) > 40);
      row('Xruns', `${i.xruns} (${i.xrun_ms.toFixed(0)} ms)`, i.xruns > 0);
      row('Video lag', `${i.video_lag_ms} ms`, i.video_lag_ms > 1000);
      if (i.recording) {
        row('Recording', i.recording.recording ? 'recording' : `stopped: ${i.recording.alarm || ''}`, !i.recording.recording);
        row('Disk free', `${(i.recording.disk_free_mb / 1024).toFixed(1)} GB`, i.recording.disk_free_mb < 2048);
      }
      this.health.replaceChildren(...rows);
    }

    async stop() {
      const name = (this.info && this.info.title) || this.id;
      if (!window.confirm(`Stop “${name}”? Viewers lose the live stream; the recording is kept.`)) return;
      try {
        await api('POST', `api/v1/sessions/${encodeURIComponent(this.id)}/stop`);
      } catch (e) {
        window.alert(`Not stopped: ${e.message}`);
      }
      refreshSessions();
    }

    close() {
      this.closed = true;
      if (this.ws) this.ws.close();
      if (this.hls) this.hls.destroy();
      exposed.meters.delete(this.id);
      this.root.remove();
    }
  }

  // ---- meters ----------------------------------------------------------------
  const FLOOR = -60;
  const HOLD_MS = 2000;
  const FALL_DB_PER_S = 20;
  const db2y = (db, top, h) => top + h * (1 - (Math.max(FLOOR, Math.min(0, db)) - FLOOR) / -FLOOR);

  class Meters {
    constructor(canvas, clipText) {
      this.canvas = canvas;
      this.clipText = clipText;
      this.frame = null;
      this.frames = 0;
      this.hold = [];
      this.clips = [];
      // When each channel last clipped (performance.now()).
      this.clipSeen = [];
      this.layout = [];
      this.drawMs = [];
      this.pending = false;
      canvas.addEventListener('click', ev => this.click(ev));
    }

    push(frame) {
      this.frame = frame;
      this.frames += 1;
      const now = performance.now();
      frame.channels.forEach((c, i) => {
        const h = this.hold[i];
        if (!h || c.peak_dbfs >= h.db) this.hold[i] = { db: c.peak_dbfs, at: now };
        if (c.clip) this.clipSeen[i] = now;
        if (c.clip && !this.clips[i]) { this.clips[i] = true; this.describeClips(); }
      });
      if (!this.pending) { this.pending = true; requestAnimationFrame(() => { this.pending = false; this.draw(); }); }
    }

    /// The labels: a channel's role where the map gives one.
    label(c) { return c.role || c.name; }

    get latched() {
      return this.frame ? this.frame.channels.map((c, i) => this.clips[i] ? this.label(c) : null).filter(Boolean) : [];
    }

    describeClips() {
      const l = this.latched;
      this.clipText.textContent = l.length ? `✕ CLIP: ${l.join(', ')} (click a channel to clear)` : '';
    }

    clearClips() { this.clips = []; this.describeClips(); this.draw(); }

    click(ev) {
      const r = this.canvas.getBoundingClientRect();
      const x = ev.clientX - r.left;
      const hit = this.layout.findIndex(b => x >= b.x && x < b.x + b.w);
      if (hit >= 0) { this.clips[hit] = false; this.describeClips(); this.draw(); }
    }

    draw() {
      const t0 = performance.now();
      const f = this.frame;
      if (!f) return;
      const cv = this.canvas;
      const dpr = window.devicePixelRatio || 1;
      const W = cv.clientWidth, H = cv.clientHeight;
      if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
        cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
      }
      const g = cv.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, W, H);
      const n = f.channels.length;
      const binaural = f.channels.map((c, i) => (c.role || '').startsWith('binaural') ? i : -1).filter(i => i >= 0);
      const axis = 28, top = 16, labelH = 34, h = H - top - labelH;
      const gapSlots = binaural.length ? 1.5 : 0;
      const slot = (W - axis - 4) / (n + gapSlots);
      const bw = Math.max(2, slot * 0.72);
      // Scale.
      g.font = '10px system-ui, sans-serif';
      g.fillStyle = '#9aa4b2';
      g.strokeStyle = '#2e3641';
      g.textAlign = 'right';
      g.textBaseline = 'middle';
      for (const d of [0, -6, -12, -20, -30, -40, -60]) {
        const y = db2y(d, top, h);
        g.fillText(String(d), axis - 4, y);
        g.beginPath(); g.moveTo(axis, y + 0.5); g.lineTo(W, y + 0.5); g.stroke();
      }
      const now = performance.now();
      this.layout = [];
      g.textAlign = 'center';
      g.textBaseline = 'top';
      for (let i = 0; i < n; i++) {
        const c = f.channels[i];
        const extra = binaural.length && i >= binaural[0] ? gapSlots : 0;
        const x = axis + (i + extra) * slot + (slot - bw) / 2;
        this.layout[i] = { x, w: bw };
        const yr = db2y(c.rms_dbfs, top, h), yp = db2y(c.peak_dbfs, top, h);
        // Peak: the lighter bar; RMS: the solid one over it.
        g.fillStyle = '#1f6f3a';
        g.fillRect(x, yp, bw, top + h - yp);
        g.fillStyle = c.rms_dbfs > -9 ? '#d29922' : '#3fb950';
        g.fillRect(x, yr, bw, top + h - yr);
        // Peak hold, falling after HOLD_MS.
        const hd = this.hold[i];
        if (hd) {
          const age = now - hd.at;
          const db = age > HOLD_MS ? hd.db - (age - HOLD_MS) / 1000 * FALL_DB_PER_S : hd.db;
          if (db > FLOOR) {
            g.fillStyle = '#e6e9ee';
            g.fillRect(x, db2y(db, top, h) - 1, bw, 2);
          }
        }
        // Clip: a red box with a mark, latched until cleared.
        if (this.clips[i]) {
          g.fillStyle = '#f85149';
          g.fillRect(x, 1, bw, top - 3);
          g.fillStyle = '#ffffff';
          g.fillText('✕', x + bw / 2, 2);
        }
        g.fillStyle = (c.role || '').startsWith('binaural') ? '#58a6ff' : '#9aa4b2';
        const text = this.label(c);
        if (slot >= 9 || i % 2 === 0) {
          g.save();
          g.translate(x + bw / 2, top + h + 3);
          if (slot < 28) { g.rotate(Math.PI / 2); g.textAlign = 'left'; g.textBaseline = 'middle'; g.fillText(text.slice(0, 8), 0, 0); }
          else g.fillText(text.slice(0, 10), 0, 0);
          g.restore();
        }
      }
      if (binaural.length) {
        const x = axis + binaural[0] * slot + slot * gapSlots / 2;
        g.strokeStyle = '#58a6ff';
        g.beginPath(); g.moveTo(x, top); g.lineTo(x, top + h); g.stroke();
      }
      const ms = performance.now() - t0;
      for (const a of [exposed.drawMs, this.drawMs]) {
        a.push(ms);
        if (a.length > 2000) a.splice(0, 1000);
      }
      performance.measure?.('studiocast-meters', { start: t0, duration: ms });
    }
  }

  // ---- jobs ------------------------------------------------------------------
  async function refreshJobs() {
    let list;
    try { list = await api('GET', 'api/v1/jobs?limit=50'); } catch (e) { setStatus(`Jobs not read: ${e.message}`); return; }
    $('#jobs tbody').replaceChildren(...list.map(j => {
      const loud = (j.loudness || []).map(r => {
        const m = r.output || r.measured;
        return m ? `${r.id} ${m.integrated_lufs.toFixed(1)} LUFS` : `${r.id} silent`;
      }).join(', ');
      const actions = el('td');
      if (j.state === 'queued' || j.state === 'running') {
        actions.append(el('button', { type: 'button', class: 'danger', onclick: () => cancelJob(j) }, 'Cancel…'));
      }
      if (j.outputs && j.outputs.master) actions.append(' ', el('a', { href: j.outputs.master }, 'VOD'), ' · ', el('a', { href: `embed/${encodeURIComponent(j.id)}`, target: '_blank', rel: 'noopener' }, 'Embed'));
      return el('tr', { 'data-id': j.id },
        el('td', {}, (j.spec && j.spec.title) || j.id, el('div', { class: 'hint' }, j.id)),
        el('td', {}, el('span', { class: `badge ${j.state}` }, j.state), j.error ? el('div', { class: 'bad' }, j.error) : null),
        el('td', {}, el('progress', { max: 100, value: j.progress, 'aria-label': `${j.progress.toFixed(0)} %` }), ` ${j.progress.toFixed(0)} %`),
        el('td', {}, fmtEta(j.eta_seconds)),
        el('td', {}, loud),
        actions);
    }));
  }

  async function cancelJob(j) {
    if (!window.confirm(`Cancel job ${(j.spec && j.spec.title) || j.id}?`)) return;
    try { await api('DELETE', `api/v1/jobs/${encodeURIComponent(j.id)}`); } catch (e) { window.alert(`Not cancelled: ${e.message}`); }
    refreshJobs();
  }

  $('#job-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const f = ev.target;
    const spec = { input_format: f.input_format.value, order: Number(f.order.value), preset: f.preset.value || 'lesson' };
    if (f.title.value.trim()) spec.title = f.title.value.trim();
    $('#job-error').textContent = '';
    try {
      if (f.source.value === 'upload') {
        const file = f.file.files[0];
        if (!file) throw new Error('choose a file to upload');
        const form = new FormData();
        form.append('spec', JSON.stringify(spec));
        form.append('file', file, file.name);
        await api('POST', 'api/v1/jobs', form);
      } else {
        await api('POST', 'api/v1/jobs', { ...spec, path: f.path.value.trim() });
      }
      refreshJobs();
    } catch (e) {
      $('#job-error').textContent = `Not submitted: ${e.message}`;
    }
  });

  // ---- live updates ------------------------------------------------------------
  async function follow() {
    let wait = 1000;
    let lastId = null;
    while (token) {
      try {
        // After a reconnect, the events missed meanwhile come first.
        const headers = { authorization: `Bearer ${token}` };
        if (lastId) headers['last-event-id'] = lastId;
        const r = await fetch('api/v1/events', { headers, cache: 'no-store' });
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        setStatus('Live updates: connected');
        wait = 1000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const kind = (block.match(/^event: ?(.*)$/m) || [])[1];
            const id = (block.match(/^id: ?(.*)$/m) || [])[1];
            if (id) lastId = id;
            if (!kind) continue;
            exposed.events += 1;
            if (kind === 'job') refreshJobs();
            else refreshSessions();
          }
        }
      } catch (e) {
        setStatus(`Live updates: reconnecting (${e.message})`);
      }
      await new Promise(r => setTimeout(r, wait));
      wait = Math.min(wait * 2, 15000);
    }
  }

  function start() {
    loadPresets().catch(e => setStatus(`Presets not read: ${e.message}`));
    refreshSessions();
    refreshJobs();
    follow();
    // A slow safety net: the stream is the fast path.
    setInterval(() => { refreshSessions(); if (!$('#jobs-view').hidden) refreshJobs(); }, 10000);
    exposed.ready = true;
  }

  const why = sessionStorage.getItem('studiocast.why');
  if (why) { $('#signin-error').textContent = why; sessionStorage.removeItem('studiocast.why'); }
  if (token) signIn(token).catch(() => { $('#signin').hidden = false; });
})();
