// The embeddable player (/embed/{id}) in headless Debian Chromium, framed
// by pages of two other origins: one on the daemon's embed_origins list
// (the Campus) and one not (any other site). Reports what each saw, as JSON
// on stdout.
//
//   node embed.mjs DAEMON_URL ID TOKEN CAMPUS_PORT OTHER_PORT [OEMBED_HTML_FILE]
//
// The Campus page frames the private lesson with its token and drives it
// through the player API (postMessage); the other site frames the same
// URL, which CSP frame-ancestors must block. With OEMBED_HTML_FILE, the
// Campus page also shows the iframe oEmbed gave.
import http from 'node:http';
import fs from 'node:fs';
import { launch } from './chromium.mjs';

const [daemon, id, token, campusPort, otherPort, oembedFile, publicId] = process.argv.slice(2);
const embed = `${daemon}/embed/${id}?token=${token}`;
const oembedHtml = oembedFile ? fs.readFileSync(oembedFile, 'utf8') : '';

const host = (name) => `<!doctype html><meta charset=utf-8><title>${name}</title>
<iframe id=f src="${embed}" width=640 height=360 allow="autoplay; fullscreen"></iframe>
<div id=o>${name === 'campus' ? oembedHtml : ''}</div>
${name === 'other' && publicId ? `<iframe id=g src="${daemon}/embed/${publicId}" width=640 height=360></iframe>` : ''}
<script>
window.events = [];
window.addEventListener('message', e => {
  if (e.data && e.data.source === 'studiocast') window.events.push({ origin: e.origin, at: performance.now(), ...e.data });
});
window.send = (command, value) => document.getElementById('f').contentWindow
  .postMessage({ command, value }, new URL(${JSON.stringify(daemon)}).origin);
</script>`;

const serve = (port, name) => new Promise(r => {
  const s = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(host(name));
  });
  s.listen(Number(port), '127.0.0.1', () => r(s));
});
const servers = [await serve(campusPort, 'campus'), await serve(otherPort, 'other')];

const browser = await launch();
const out = {};
const sleep = ms => new Promise(r => setTimeout(r, ms));
// The player's frame in a host page, once its script has run.
async function playerFrame(p, timeoutMs = 20000, lesson = id) {
  const t = Date.now();
  while (Date.now() - t < timeoutMs) {
    const f = p.frames().find(f => f.url().includes(`/embed/${lesson}`));
    if (f) {
      try {
        if (await f.evaluate(() => !!window.studiocastPlayer)) return f;
      } catch (e) { /* navigating */ }
    }
    await sleep(200);
  }
  return null;
}
const events = p => p.evaluate(() => window.events);
// Web Audio on the frame's video (muted at the end of the graph):
// `window.level()` is its RMS now.
const probeSound = f => f.evaluate(() => {
  const v = window.studiocastPlayer.video;
  const ctx = new AudioContext();
  const an = ctx.createAnalyser();
  an.fftSize = 2048;
  const mute = ctx.createGain();
  mute.gain.value = 0;
  ctx.createMediaElementSource(v).connect(an).connect(mute).connect(ctx.destination);
  ctx.resume();
  window.level = () => {
    const a = new Float32Array(an.fftSize);
    an.getFloatTimeDomainData(a);
    let s = 0; for (const x of a) s += x * x;
    return Math.sqrt(s / a.length);
  };
});
// The largest RMS of 250 ms windows over `ms`.
async function loudest(f, ms) {
  let m = 0;
  for (let i = 0; i < ms / 250; i++) { await sleep(250); m = Math.max(m, await f.evaluate(() => window.level())); }
  return m;
}
try {
  const ctx = await browser.newContext();
  if (process.env.EMBED_VOD === '1') {
    // The lesson's recording, framed by the Campus: it plays, with sound.
    const p = await ctx.newPage();
    await p.goto(`http://127.0.0.1:${campusPort}/`);
    const f = await playerFrame(p);
    if (!f) throw new Error('the player did not load in the Campus frame');
    await p.waitForFunction(() => window.events.some(e => e.event === 'ready'), null, { timeout: 30000 });
    await p.evaluate(() => window.send('play'));
    await f.waitForFunction(() => window.studiocastPlayer.video.currentTime > 1, null, { timeout: 20000 });
    await probeSound(f);
    out.vodLevel = await loudest(f, 2000);
    out.vod = await f.evaluate(() => ({
      t: window.studiocastPlayer.video.currentTime,
      live: JSON.parse(document.getElementById('lesson').textContent).live,
      src: JSON.parse(document.getElementById('lesson').textContent).src,
      duration: window.studiocastPlayer.video.duration,
    }));
    out.vodEvents = [...new Set((await events(p)).map(e => e.event))];
    throw null;
  }

  // --- 1. The Campus frames it and drives it. -------------------------------
  const p = await ctx.newPage();
  const consoleErrors = [];
  p.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await p.goto(`http://127.0.0.1:${campusPort}/`);
  const f = await playerFrame(p);
  out.campusFramed = !!f;
  if (!f) throw new Error('the player did not load in the Campus frame');
  await p.waitForFunction(() => window.events.some(e => e.event === 'ready'), null, { timeout: 30000 });
  // Play through the API; sound is measured in the frame with Web Audio.
  await p.evaluate(() => window.send('play'));
  await p.waitForFunction(() => window.events.some(e => e.event === 'play'), null, { timeout: 15000 });
  // Time to first frame of the live lesson in the frame (ms since the
  // frame's navigation; the page was loaded and ready before play).
  await f.waitForFunction(() => window.studiocastPlayer.metrics.firstFrameAt != null, null, { timeout: 15000 });
  out.ttff = await f.evaluate(() => window.studiocastPlayer.metrics);
  await probeSound(f);
  const level = ms => loudest(f, ms);
  out.levelFirst = await level(3000);
  const ui = () => f.evaluate(() => {
    const sel = id => [...document.getElementById(id).options].map(o => ({ text: o.textContent, value: o.value, selected: o.selected }));
    const h = window.studiocastPlayer.hls();
    return {
      audio: sel('audio'), quality: sel('quality'), audioTrack: h.audioTrack, level: h.currentLevel,
      t: window.studiocastPlayer.video.currentTime, paused: window.studiocastPlayer.video.paused,
      latency: Number(document.getElementById('player').dataset.latency || 'NaN'),
      live: document.getElementById('live').textContent,
      labels: [...document.querySelectorAll('button, select, input')].map(e => e.getAttribute('aria-label')),
    };
  });
  out.before = await ui();
  // The audio selector, through the API: stereo, then back.
  await p.evaluate(() => window.send('setAudio', 'stereo'));
  await p.waitForFunction(() => window.events.some(e => e.event === 'audiochange' && e.audio === 'stereo'), null, { timeout: 10000 });
  out.afterStereo = await ui();
  out.levelStereo = await level(3000);
  // The quality selector, as a viewer uses it: the other level.
  // A level other than the one playing (Auto's pick shows in its label).
  const playing = out.afterStereo.level;
  const other = out.afterStereo.quality.find(o => o.value !== '-1' && Number(o.value) !== playing);
  out.qualityAsked = Number(other.value);
  await f.selectOption('#quality', other.value);
  // The menu shows the choice at once; the picture follows once the new
  // level's first fragment plays (hls.js flushes and fetches: seconds on
  // a loaded machine, where a fixed 3 s wait once fell short).
  out.menuAfterQuality = await ui();
  const asked = Date.now();
  do {
    await sleep(250);
    out.afterQuality = await ui();
  } while (out.afterQuality.level !== out.qualityAsked && Date.now() - asked < 15000);
  out.qualitySwitchMs = Date.now() - asked;
  out.levelQuality = await level(2000);
  // The keyboard: with the player focused, K (either case) pauses.
  await f.focus('#player');
  await p.keyboard.press('Shift+K');
  await sleep(500);
  out.afterSpace = await ui();
  await p.evaluate(() => window.send('play'));
  await sleep(1500);
  await p.evaluate(() => window.send('pause'));
  await p.waitForFunction(() => window.events.filter(e => e.event === 'pause').length >= 2, null, { timeout: 10000 });
  // Seek back 6 s within the DVR window.
  const t = (await ui()).t;
  await p.evaluate(t => window.send('seek', t - 6), t);
  await sleep(800);
  out.seekFrom = t;
  out.afterSeek = await ui();
  const ev = await events(p);
  const ticks = ev.filter(e => e.event === 'timeupdate').map(e => e.at);
  let maxRate = 0;
  for (let i = 0; i < ticks.length; i++) {
    const inSecond = ticks.filter(x => x >= ticks[i] && x < ticks[i] + 1000).length;
    maxRate = Math.max(maxRate, inSecond);
  }
  out.events = [...new Set(ev.map(e => e.event))];
  out.eventOrigins = [...new Set(ev.map(e => e.origin))];
  out.timeupdates = ticks.length;
  out.maxTimeupdatesPerSecond = maxRate;
  out.consoleErrors = consoleErrors;
  // The oEmbed iframe, when given: it loads the player too.
  if (oembedHtml) {
    const fr = p.frames().filter(x => x.url().includes(`/embed/${id}`));
    out.oembedFrames = fr.length;
    let ok = 0;
    for (const x of fr) { try { if (await x.evaluate(() => !!window.studiocastPlayer)) ok += 1; } catch (e) { /* */ } }
    out.oembedPlayers = ok;
  }

  // --- 2. Another site frames the private lesson: blocked. --------------------
  const q = await ctx.newPage();
  await q.goto(`http://127.0.0.1:${otherPort}/`);
  out.otherFramed = !!(await playerFrame(q, 5000));
  // A public lesson it may frame, but the player's API does not talk to a
  // site off the list.
  if (publicId) {
    const g = await playerFrame(q, 20000, publicId);
    out.otherPublicFramed = !!g;
    if (g) {
      await sleep(3000);
      out.otherPublicOrigins = await g.evaluate(() => JSON.parse(document.getElementById('lesson').textContent).origins);
    }
  }
  out.otherEvents = (await events(q)).length;
} catch (e) {
  if (e !== null) out.fatal = 'harness: ' + e.message;
} finally {
  await browser.close();
  servers.forEach(s => s.close());
}
console.log(JSON.stringify(out));
process.exit(out.fatal ? 1 : 0);
