// The player's head-tracked mode in headless Debian Chromium. Reports what
// it measured, as JSON on stdout; the Rust test judges.
//
//   node head.mjs DAEMON_URL ID
//
// The lesson: 0–10 s, a 1 kHz tone straight ahead (W = X, Y = Z = 0);
// 10–20 s, a different tone on each ambisonic channel (W 440 Hz, Y 700 Hz,
// Z 1100 Hz, X 1700 Hz).
//
// 1. The page switches to "360° head-tracked": hls.js moves to the Opus
//    variants, and the four channels reach Web Audio in order (the tones,
//    found with an FFT on each channel of the media element's source).
// 2. Ear levels of the rendered output at 0°, +90° (turned left) and −90°.
// 3. A continuous turn (15° steps 40 ms apart, a key held down) and jumps
//    from +90° to −90° and back: the largest sample-to-sample step of each
//    ear, against the same figure with the head still.
// 4. The worklet's cost per 128-frame block and the renderer's share of
//    the page's CPU.
// 5. A browser without AudioWorklet falls back to binaural and says so.
import fs from 'node:fs';
import { launch } from './chromium.mjs';

const [daemon, id] = process.argv.slice(2);
const url = `${daemon}/embed/${id}`;
const sleep = ms => new Promise(r => setTimeout(r, ms));
const browser = await launch();
const out = { errors: [] };

// CPU seconds of this process's descendants (the browser's processes).
function browserCpu() {
  const tick = 100; // USER_HZ on Linux
  const kids = new Map();
  const cpu = new Map();
  for (const pid of fs.readdirSync('/proc').filter(d => /^\d+$/.test(d))) {
    try {
      const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const ppid = f[1];
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(pid);
      cpu.set(pid, (Number(f[11]) + Number(f[12])) / tick);
    } catch (e) { /* gone */ }
  }
  let total = 0;
  const walk = pid => { for (const k of kids.get(pid) || []) { total += cpu.get(k) || 0; walk(k); } };
  walk(String(process.pid));
  return total;
}
async function cpuOver(ms) {
  const c0 = browserCpu(), t0 = Date.now();
  await sleep(ms);
  return (browserCpu() - c0) / ((Date.now() - t0) / 1000);
}

// In the page: a recorder on the rendered output (contiguous samples, both
// ears) and FFT probes on the source's four channels.
const PROBES = () => {
  const s = window.studiocastPlayer.spatial;
  const ctx = s.ctx;
  const rec = `class R extends AudioWorkletProcessor {
    constructor() { super(); this.on = false; this.port.onmessage = e => { this.on = e.data; }; }
    process(i) { const x = i[0]; if (this.on && x && x.length === 2) this.port.postMessage([x[0].slice(), x[1].slice()]); return true; }
  }; registerProcessor('rec', R);`;
  return ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([rec], { type: 'text/javascript' }))).then(() => {
    const node = new AudioWorkletNode(ctx, 'rec', { numberOfInputs: 1, numberOfOutputs: 0, channelCount: 2, channelCountMode: 'explicit', channelInterpretation: 'discrete' });
    s.output.connect(node);
    window.rec = { node, l: [], r: [] };
    node.port.onmessage = e => { window.rec.l.push(e.data[0]); window.rec.r.push(e.data[1]); };
    window.record = async ms => {
      window.rec.l = []; window.rec.r = [];
      node.port.postMessage(true);
      await new Promise(r => setTimeout(r, ms));
      node.port.postMessage(false);
      await new Promise(r => setTimeout(r, 50));
      const cat = a => { const o = new Float32Array(a.reduce((n, b) => n + b.length, 0)); let k = 0; for (const b of a) { o.set(b, k); k += b.length; } return o; };
      return [cat(window.rec.l), cat(window.rec.r)];
    };
    const split = ctx.createChannelSplitter(4);
    s.source.connect(split);
    window.bands = [0, 1, 2, 3].map(c => {
      const a = ctx.createAnalyser(); a.fftSize = 8192; a.smoothingTimeConstant = 0;
      split.connect(a, c); return a;
    });
    return true;
  });
};

try {
  // The probes load a worklet from a blob: URL, which the page's CSP
  // (rightly) forbids; CSP is embed.rs's test's business.
  const ctx = await browser.newContext({ bypassCSP: true });
  const p = await ctx.newPage();
  p.on('console', m => { if (m.type() === 'error') out.errors.push(m.text()); });
  p.on('pageerror', e => out.errors.push(String(e)));
  p.on('response', r => { if (r.status() >= 400) out.errors.push(`${r.status()} ${r.url()}`); });
  await p.goto(url);
  await p.waitForFunction(() => window.studiocastPlayer && !document.getElementById('controls').hidden, null, { timeout: 30000 });
  await p.evaluate(() => window.studiocastPlayer.play());
  await p.waitForFunction(() => window.studiocastPlayer.video.currentTime > 0.3, null, { timeout: 30000 });
  await p.waitForFunction(() => window.studiocastPlayer.metrics.firstFrameAt != null, null, { timeout: 30000 });
  out.ttff = await p.evaluate(() => window.studiocastPlayer.metrics);
  out.startCodec = await p.evaluate(() => {
    const h = window.studiocastPlayer.hls(); const l = h.levels[h.currentLevel];
    return l ? l.audioCodec || null : null;
  });
  out.options = await p.evaluate(() => [...document.getElementById('audio').options].map(o => o.textContent));
  // The browser's CPU (cores) playing the binaural rendition.
  out.cpuBinaural = await cpuOver(4000);

  // The phone's pose to the head's angles, as the page computes them:
  // upright, held tilted, flat-screen landscape, and a turn to landscape.
  out.poses = await p.evaluate(() => {
    const S = window.StudiocastSpatial, M = S.matrix, r = x => x * Math.PI / 180;
    const pose = (a, b, g) => S.pose({ alpha: a, beta: b, gamma: g });
    const rel = (d0, a0, d, a) => S.headAngles(S.zero(d0, a0), d, a);
    const up = pose(200, 90, 0);
    return {
      uprightLeft90: rel(up, 0, pose(290, 90, 0), 0),
      tilted60Left90: rel(pose(200, 60, 0), 0, pose(290, 60, 0), 0),
      lookUp20: rel(up, 0, pose(200, 110, 0), 0),
      rightEar20: rel(up, 0, M.mul(up, M.rz(r(-20))), 0),
      landscapeLeft90: rel(pose(200, 0, -90), 90, pose(290, 0, -90), 90),
      toLandscape: rel(up, 0, M.mul(up, M.rz(r(90))), 90),
      toLandscapeThenLeft45: rel(up, 0, M.mul(M.rz(r(45)), M.mul(up, M.rz(r(90)))), 90),
    };
  });

  // 1. Switch to head tracking.
  await p.evaluate(() => window.studiocastPlayer.setAudio('ambisonic'));
  await p.waitForFunction(() => {
    const h = window.studiocastPlayer.hls(); const t = h.audioTracks[h.audioTrack];
    return window.studiocastPlayer.spatial.active && t && String(t.channels) === '4' && window.studiocastPlayer.spatial.channels === 4;
  }, null, { timeout: 20000 });
  out.switchedAt = await p.evaluate(() => window.studiocastPlayer.video.currentTime);
  await p.evaluate(() => { const v = window.studiocastPlayer.video; v.currentTime = 1; });
  await sleep(2500);
  out.frontButton = await p.evaluate(() => !document.getElementById('front').hidden);
  out.afterSwitch = await p.evaluate(() => {
    const h = window.studiocastPlayer.hls(); const l = h.levels[h.currentLevel];
    const t = h.audioTracks[h.audioTrack];
    return { codec: l && l.audioCodec, group: t && t.groupId, channels: window.studiocastPlayer.spatial.channels, time: window.studiocastPlayer.video.currentTime, ctx: window.studiocastPlayer.spatial.ctx.state };
  });
  // The same playing the head-tracked mode (Opus, rotation, filters).
  out.cpuSpatial = await cpuOver(4000);
  await p.evaluate(() => { const v = window.studiocastPlayer.video; v.currentTime = 1; });
  await sleep(1000);
  await p.evaluate(PROBES);

  const rms = a => Math.sqrt(a.reduce((s, x) => s + x * x, 0) / Math.max(1, a.length));
  const maxStep = a => { let m = 0; for (let i = 1; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - a[i - 1])); return m; };
  const db = x => 20 * Math.log10(Math.max(x, 1e-9));
  const levels = async yaw => {
    await p.evaluate(y => window.studiocastPlayer.spatial.setOrientation(y, 0, 0), yaw);
    await sleep(400);
    const [l, r] = await p.evaluate(async () => { const [l, r] = await window.record(600); return [Array.from(l), Array.from(r)]; });
    return { yaw, left: db(rms(l)), right: db(rms(r)), rightMinusLeft: db(rms(r)) - db(rms(l)), stepL: maxStep(l), stepR: maxStep(r), frames: l.length };
  };
  // 2. Ear levels.
  out.levels = [];
  for (const yaw of [0, 90, -90, 0]) out.levels.push(await levels(yaw));
  // 3. Turns: 0° → 180° in 15° steps 40 ms apart (a key held down), then
  // jumps between the sides, recorded whole.
  // Well inside the first 10 s (the lesson's own change of signal at 10 s
  // is a step too).
  await p.evaluate(() => { window.studiocastPlayer.spatial.setOrientation(0, 0, 0); window.studiocastPlayer.video.currentTime = 1; });
  await sleep(1200);
  out.turnFrom = await p.evaluate(() => window.studiocastPlayer.video.currentTime);
  const turn = await p.evaluate(async () => {
    const s = window.studiocastPlayer.spatial;
    const recording = window.record(2300);
    await new Promise(r => setTimeout(r, 100));
    for (let i = 1; i <= 12; i++) { s.setOrientation(15 * i, 0, 0); await new Promise(r => setTimeout(r, 40)); }
    await new Promise(r => setTimeout(r, 300));
    // Jumps from one side to the other: each ear's level and phase change
    // at once (a renderer that steps its matrix clicks at every one).
    for (let k = 0; k < 6; k++) { s.setOrientation(k % 2 ? -90 : 90, 0, 0); await new Promise(r => setTimeout(r, 120)); }
    const [l, r] = await recording;
    return [Array.from(l), Array.from(r)];
  });
  out.turn = { stepL: maxStep(turn[0]), stepR: maxStep(turn[1]), frames: turn[0].length, rmsL: db(rms(turn[0])) };
  out.still = Math.max(...out.levels.map(x => Math.max(x.stepL, x.stepR)));

  // Keys and the Front button turn the listener (the page's own controls).
  await p.evaluate(() => window.studiocastPlayer.spatial.setOrientation(0, 0, 0));
  await p.focus('#player');
  await p.keyboard.press('ArrowLeft');
  await p.keyboard.press('ArrowLeft');
  out.keys = { afterLeftLeft: await p.evaluate(() => window.studiocastPlayer.spatial.yaw), front: await p.textContent('#front') };
  await p.keyboard.press('ArrowRight');
  out.keys.afterRight = await p.evaluate(() => window.studiocastPlayer.spatial.yaw);
  await p.keyboard.press('r');
  out.keys.afterR = await p.evaluate(() => window.studiocastPlayer.spatial.yaw);
  await p.keyboard.press('ArrowRight');
  await p.click('#front');
  out.keys.afterFront = await p.evaluate(() => window.studiocastPlayer.spatial.yaw);

  // 4. The four channels as decoded: the tones of 10–20 s.
  await p.evaluate(() => { window.studiocastPlayer.video.currentTime = 12; });
  await sleep(2500);
  out.channels = await p.evaluate(() => window.bands.map(a => {
    const bins = new Float32Array(a.frequencyBinCount); a.getFloatFrequencyData(bins);
    const hz = i => i * a.context.sampleRate / a.fftSize;
    const at = f => { const i = Math.round(f * a.fftSize / a.context.sampleRate); return Math.max(bins[i - 1], bins[i], bins[i + 1]); };
    let best = 0; for (let i = 5; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    return { peakHz: hz(best), peakDb: bins[best], levels: [440, 700, 1100, 1700].map(at) };
  }));
  out.time = await p.evaluate(() => window.studiocastPlayer.video.currentTime);

  // 5. The worklet's cost: its process() on this page's JS engine, per
  // 128-frame block (the rendering thread runs the same code).
  out.worklet = await p.evaluate(async () => {
    const src = await (await fetch('../player/rotator.js')).text();
    const scope = { sampleRate: 48000, AudioWorkletProcessor: class { constructor() { this.port = { postMessage() {} }; } } };
    let P = null;
    new Function('AudioWorkletProcessor', 'registerProcessor', 'sampleRate', src)(scope.AudioWorkletProcessor, (n, c) => { P = c; }, 48000);
    const node = new P();
    const ins = [[0, 1, 2, 3].map(() => Float32Array.from({ length: 128 }, () => Math.random() - 0.5))];
    const outs = [[0, 1, 2, 3].map(() => new Float32Array(128)), [0, 1].map(() => new Float32Array(128))];
    for (let i = 0; i < 2000; i++) node.process(ins, outs);
    const n = 20000; let yaw = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) { if (i % 50 === 0) { yaw += 0.1; node.target = [yaw, 0.05, 0]; } node.process(ins, outs); }
    const us = (performance.now() - t0) * 1000 / n;
    return { usPerBlock: us, shareOfRealTime: us / (128 / 48000 * 1e6) };
  });

  // 6. A phone: device orientation turns the listener, relative to where
  // the phone pointed when head tracking began.
  const phone = await browser.newContext({ bypassCSP: true, isMobile: true, hasTouch: true, viewport: { width: 390, height: 844 } });
  const m = await phone.newPage();
  m.on('pageerror', e => out.errors.push('phone: ' + String(e)));
  await m.goto(url);
  await m.waitForFunction(() => window.studiocastPlayer && !document.getElementById('controls').hidden, null, { timeout: 30000 });
  await m.evaluate(() => window.studiocastPlayer.play());
  await m.waitForFunction(() => window.studiocastPlayer.video.currentTime > 0.3, null, { timeout: 30000 });
  await m.evaluate(() => window.studiocastPlayer.setAudio('ambisonic'));
  await m.waitForFunction(() => window.studiocastPlayer.spatial.channels === 4 && !!window.studiocastPlayer.spatial.sensor, null, { timeout: 20000 });
  await m.evaluate(() => { window.studiocastPlayer.video.currentTime = 1; });
  await sleep(1500);
  const orient = (alpha, beta) => m.evaluate(([a, b]) => window.dispatchEvent(new DeviceOrientationEvent('deviceorientation', { alpha: a, beta: b, gamma: 0 })), [alpha, beta]);
  // Held up in portrait (beta near 90°, where the raw angles degenerate),
  // turned 90° to the left.
  await orient(200, 85);
  await orient(290, 85);
  await sleep(400);
  out.phone = await m.evaluate(() => window.studiocastPlayer.spatial.orientation());
  await m.evaluate(PROBES);
  const [pl, pr] = await m.evaluate(async () => { const [l, r] = await window.record(600); return [Array.from(l), Array.from(r)]; });
  out.phone.rightMinusLeft = db(rms(pr)) - db(rms(pl));
  await phone.close();

  // 7. The page's own CSP (no bypass): the worklet loads, four channels.
  const strict = await browser.newContext();
  const c = await strict.newPage();
  c.on('console', msg => { if (msg.type() === 'error') out.errors.push('strict: ' + msg.text()); });
  await c.goto(url);
  await c.waitForFunction(() => window.studiocastPlayer && !document.getElementById('controls').hidden, null, { timeout: 30000 });
  await c.evaluate(() => window.studiocastPlayer.play());
  await c.waitForFunction(() => window.studiocastPlayer.video.currentTime > 0.3, null, { timeout: 30000 });
  await c.evaluate(() => window.studiocastPlayer.setAudio('ambisonic'));
  await c.waitForFunction(() => window.studiocastPlayer.spatial.channels === 4, null, { timeout: 20000 });
  out.strict = await c.evaluate(() => ({ channels: window.studiocastPlayer.spatial.channels, ctx: window.studiocastPlayer.spatial.ctx.state }));
  await strict.close();

  // 8. No AudioWorklet: the fallback, from the stereo rendition.
  const q = await ctx.newPage();
  await q.addInitScript(() => { delete window.AudioWorkletNode; });
  await q.goto(url);
  await q.waitForFunction(() => window.studiocastPlayer && !document.getElementById('controls').hidden, null, { timeout: 30000 });
  await q.evaluate(() => window.studiocastPlayer.play());
  await q.waitForFunction(() => window.studiocastPlayer.video.currentTime > 0.3, null, { timeout: 30000 });
  await q.evaluate(() => window.studiocastPlayer.setAudio('stereo'));
  await q.waitForFunction(() => { const h = window.studiocastPlayer.hls(); return h.audioTracks[h.audioTrack].name === 'Stereo'; }, null, { timeout: 10000 });
  out.fallbackOptions = await q.evaluate(() => [...document.getElementById('audio').options].map(o => o.textContent));
  await q.evaluate(() => window.studiocastPlayer.setAudio('ambisonic'));
  await sleep(1500);
  out.fallback = await q.evaluate(() => {
    const h = window.studiocastPlayer.hls(); const t = h.audioTracks[h.audioTrack];
    return { track: t && t.name, channels: t && String(t.channels), message: document.getElementById('message').textContent, playing: !window.studiocastPlayer.video.paused };
  });
} catch (e) {
  out.failure = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
