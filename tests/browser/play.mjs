// Plays a studiocast HLS stream in headless Debian Chromium with hls.js and
// reports what a viewer would get, as JSON on stdout.
//
//   node play.mjs MASTER_URL [SECONDS]
//
// Environment:
//   PLAY_SWITCH=1        half-way through, put hls.js onto another ladder
//                        level as the viewer's quality menu does
//                        (nextLevel) and keep playing;
//   PLAY_INSECURE_TLS=1  accept a self-signed certificate (test-only flag);
//   PLAY_STANDARD=1      hls.js without lowLatencyMode (plain HLS timing);
//   PLAY_CATCHUP=R       let hls.js play up to R× to reach its latency
//                        target (maxLiveSyncPlaybackRate; default 1, off);
//   PLAY_GO_LIVE=1       jump to the live sync position once playback
//                        starts, as studiocast's player does.
//
// The page is served from its own origin (another port), so the daemon's
// CORS headers are exercised as they are for the Campus and the Hub.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from './chromium.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const master = process.argv[2];
const seconds = Number(process.argv[3] || 8);
if (!master) {
  console.error('usage: node play.mjs MASTER_URL [SECONDS]');
  process.exit(2);
}

const hlsJs = fs.readFileSync(path.join(here, 'node_modules/hls.js/dist/hls.min.js'));
const page = `<!doctype html><meta charset=utf-8><title>studiocast player test</title>
<video id=v autoplay playsinline controls width=640></video>
<script src="/hls.min.js"></script>
<script>
window.report = { errors: [], fatal: null, tracks: [], levels: [], level: 0, started: false };
const v = document.getElementById('v');
const hls = new Hls({
  lowLatencyMode: ${process.env.PLAY_STANDARD ? 'false' : 'true'},
  maxLiveSyncPlaybackRate: ${Number(process.env.PLAY_CATCHUP || 1)},
});
window.report.switches = [];
hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
  window.report.switches.push({ level: d.level, at: document.getElementById('v').currentTime });
});
window.hls = hls;
// The last fragment and part loads and playlist reloads, for a stall's
// report: what the player asked for and got around a level switch.
window.report.loads = [];
const note = (what) => {
  window.report.loads.push(Object.assign({ ms: Math.round(performance.now()) }, what));
  if (window.report.loads.length > 60) window.report.loads.shift();
};
hls.on(Hls.Events.FRAG_LOADED, (_, d) => note({ ev: 'frag', type: d.frag.type, level: d.frag.level,
  sn: d.frag.sn, part: d.part ? d.part.index : null }));
hls.on(Hls.Events.LEVEL_LOADED, (_, d) => note({ ev: 'level', level: d.level,
  lastSn: d.details.endSN, lastPart: d.details.partList ? d.details.partList.length : null }));
hls.on(Hls.Events.AUDIO_TRACK_LOADED, (_, d) => note({ ev: 'audio-playlist', id: d.id,
  lastSn: d.details.endSN }));
hls.on(Hls.Events.ERROR, (_, d) => note({ ev: 'error', details: d.details, fatal: d.fatal }));
hls.on(Hls.Events.ERROR, (_, d) => {
  window.report.errors.push(d.type + ':' + d.details + (d.fatal ? ':fatal' : ''));
  if (d.fatal) window.report.fatal = d.details;
});
hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, (_, d) => {
  window.report.tracks = d.audioTracks.map(t => ({ name: t.name, default: t.default, channels: t.channels }));
});
hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
  window.report.levels = d.levels.map(l => ({ width: l.width, height: l.height, codecs: l.codecSet, bitrate: l.bitrate }));
});
hls.loadSource(${JSON.stringify(master)});
hls.attachMedia(v);
// Route the element through Web Audio to measure the decoded level; a silent
// gain keeps the headless output quiet without muting the element (a muted
// element feeds silence to the analyser).
let analyser;
v.addEventListener('playing', () => {
  // PLAY_GO_LIVE: once, at the start, jump to hls.js's live sync position,
  // as studiocast's own player does on first play (hls.js starts from the
  // key frame before it, up to a segment further back, and without
  // catch-up stays there).
  if (${process.env.PLAY_GO_LIVE ? 'true' : 'false'} && !window.report.started && hls.liveSyncPosition) {
    v.currentTime = hls.liveSyncPosition;
  }
  window.report.started = true;
  if (analyser) return;
  const ctx = new AudioContext();
  const src = ctx.createMediaElementSource(v);
  analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  const mute = ctx.createGain();
  mute.gain.value = 0;
  src.connect(analyser).connect(mute).connect(ctx.destination);
  ctx.resume();
  window.level = () => {
    const a = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(a);
    let s = 0; for (const x of a) s += x * x;
    return Math.sqrt(s / a.length);
  };
});
v.play().catch(e => window.report.errors.push('play:' + e.name));
</script>`;

const server = http.createServer((req, res) => {
  if (req.url === '/hls.min.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(hlsJs);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}/`;

const browser = await launch(process.env.PLAY_INSECURE_TLS ? ['--ignore-certificate-errors'] : []);
let result;
try {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const consoleErrors = [];
  p.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  // The protocol each playlist and media response came over ("h2" or
  // "http/1.1"), from the DevTools protocol: the page's Resource Timing
  // hides it for cross-origin responses.
  const protocolSet = new Set();
  const cdp = await ctx.newCDPSession(p);
  await cdp.send('Network.enable');
  cdp.on('Network.responseReceived', e => {
    if (/\.(m3u8|m4s|mp4)/.test(e.response.url)) protocolSet.add(e.response.protocol);
  });
  await p.goto(origin);
  await p.waitForFunction(() => window.report.started || window.report.fatal, null, { timeout: 30000 });
  const t0 = await p.evaluate(() => document.getElementById('v').currentTime);
  const levels = [];
  // The longest stretch with no playback progress, in seconds: a stall.
  let last = t0, lastMove = Date.now(), maxStallS = 0;
  // Live latency, sampled: Date.now() against the playing PROGRAM-DATE-TIME.
  const latencies = [];
  let switchTo = null, tSwitch = null;
  for (let i = 0; i < seconds * 2; i++) {
    await p.waitForTimeout(500);
    if (process.env.PLAY_SWITCH && i === seconds) {
      [switchTo, tSwitch] = await p.evaluate(() => {
        // Another size with the same codecs (the head-tracked Opus
        // variants are for the embedded player's 360° mode only).
        const ls = window.hls.levels, cur = Math.max(window.hls.currentLevel, 0);
        const same = ls.map((l, i) => i)
          .filter(i => ls[i].codecSet === ls[cur].codecSet && ls[i].height !== ls[cur].height);
        const to = same.length ? same[0] : (cur + 1) % ls.length;
        // As studiocast's quality menu does: nextLevel, the switch at the
        // next fragment. currentLevel flushes the buffer, and with the
        // alternate audio of a live stream hls.js then sometimes stops
        // loading altogether (seen here: no fragment loaded after the
        // flush, nothing buffered, no error), which the player avoids.
        window.hls.nextLevel = to;
        return [to, document.getElementById('v').currentTime];
      });
    }
    const [lvl, t, lat] = await p.evaluate(() => {
      const pd = window.hls.playingDate;
      return [window.level ? window.level() : 0, document.getElementById('v').currentTime,
        pd ? Date.now() - pd.getTime() : null];
    });
    levels.push(lvl);
    if (lat !== null && i >= seconds / 2) latencies.push(lat);
    if (t > last + 0.05) { last = t; lastMove = Date.now(); }
    maxStallS = Math.max(maxStallS, (Date.now() - lastMove) / 1000);
  }
  latencies.sort((a, b) => a - b);
  const protocols = [...protocolSet];
  result = await p.evaluate(([t0, levels, maxStallS]) => {
    const v = document.getElementById('v');
    const pd = window.hls.playingDate;
    return {
      ...window.report,
      played: v.currentTime - t0,
      currentTime: v.currentTime,
      paused: v.paused,
      audioTrack: window.hls.audioTrack,
      maxLevel: Math.max(...levels),
      latencyMs: pd ? Date.now() - pd.getTime() : null,
      videoWidth: v.videoWidth,
      videoHeight: v.videoHeight,
      maxStallS,
      buffered: Array.from({ length: v.buffered.length },
        (_, i) => [+v.buffered.start(i).toFixed(3), +v.buffered.end(i).toFixed(3)]),
      readyState: v.readyState,
    };
  }, [t0, levels, maxStallS]);
  result.consoleErrors = consoleErrors;
  result.protocols = protocols;
  result.latencyMsMedian = latencies.length ? latencies[latencies.length >> 1] : null;
  result.latencyMsMax = latencies.length ? latencies[latencies.length - 1] : null;
  if (switchTo !== null) {
    result.switchTo = switchTo;
    result.playedAfterSwitch = result.currentTime - tSwitch;
    result.currentLevel = await p.evaluate(() => window.hls.currentLevel);
  }
} catch (e) {
  result = { fatal: 'harness:' + e.message };
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
process.exit(result.fatal ? 1 : 0);
