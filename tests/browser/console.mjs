// The technician's console (/console) in headless Debian Chromium, driven
// as a technician would: sign in with the keyboard, start the demo session
// from the form, watch meters move, read a 64-channel JACK session's
// labelled meters and its latched clip indicator, measure the meters' draw
// and frame times, see the alarm when the SRT encoder is killed, stop the
// demo and play its VOD from the past list. Reports JSON on stdout.
//
//   node console.mjs DAEMON_URL TOKEN JACK_SESSION_ID SRT_ENCODER_PID SCREENSHOT.png
import { launch } from './chromium.mjs';

const [daemon, token, jackId, srtPid, shot] = process.argv.slice(2);
const out = { steps: [], errors: [] };
const sleep = ms => new Promise(r => setTimeout(r, ms));
const step = s => { out.steps.push(s); process.stderr.write(`console test: ${s}\n`); };
async function until(what, ms, fn) {
  const t = Date.now();
  while (Date.now() - t < ms) {
    const v = await fn();
    if (v) return v;
    await sleep(200);
  }
  throw new Error(`timed out: ${what}`);
}
const pct = (a, p) => a.length ? [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))] : null;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', e => out.errors.push(`pageerror: ${e.message}`));
  page.on('console', m => { if (m.type() === 'error') out.errors.push(`console: ${m.text()}`); });
  // Which resource failed: the console message does not say.
  page.on('response', r => { if (r.status() >= 400) out.errors.push(`${r.status()} ${r.request().method()} ${r.url()}`); });

  // Sign in, by keyboard.
  await page.goto(`${daemon}/console`);
  await page.focus('#token');
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });
  out.tokenInUrl = page.url().includes(token);
  out.tokenStored = await page.evaluate(() => sessionStorage.getItem('studiocast.token'));
  step('signed in');

  // Presets with their devices and roles.
  await page.waitForSelector('#presets tbody tr', { timeout: 10000 });
  out.presetRows = await page.$$eval('#presets tbody tr', rows => rows.map(r => r.innerText.replace(/\s+/g, ' ')));

  // Start the demo session from the form.
  await page.selectOption('#start-preset', 'demo');
  await page.fill('#start-title', 'Morning check');
  await page.fill('#start-course', 'Studio');
  await page.click('#start-form button[type=submit]');
  const demoId = await until('the demo card', 30000, () =>
    page.evaluate(() => [...document.querySelectorAll('article.card')]
      .find(c => c.querySelector('h3').textContent === 'Morning check')?.dataset.id));
  out.demoId = demoId;
  step(`demo started: ${demoId}`);

  // Its meters move: new readings, with signal in them.
  const reading = id => page.evaluate(id => {
    const m = window.studiocastConsole.meters.get(id);
    return m && m.frame ? { seq: m.frame.seq, frames: m.frames, loudest: Math.max(...m.frame.channels.map(c => c.rms_dbfs)),
      n: m.frame.channels.length } : null;
  }, id);
  const first = await until('demo meters', 40000, async () => { const r = await reading(demoId); return r && r.loudest > -90 ? r : null; });
  await sleep(1500);
  const second = await reading(demoId);
  out.demoMeters = { first, second };
  step('demo meters move');

  // The JACK session: 64 channels labelled by role, the binaural pair apart,
  // and the clip indicator latched after the ticks' bursts.
  await until('jack meters', 20000, () => reading(jackId));
  out.jack = await page.evaluate(id => {
    const m = window.studiocastConsole.meters.get(id);
    return { labels: m.frame.channels.map(c => m.label(c)), names: m.frame.channels.map(c => c.name) };
  }, jackId);
  const latched = await until('a latched clip between bursts', 30000, () => page.evaluate(id => {
    const m = window.studiocastConsole.meters.get(id);
    // Latched while the latest reading does not clip: held, not live.
    return m && m.clips[0] && !m.frame.channels[0].clip
      ? { latched: m.latched, text: m.clipText.textContent } : null;
  }, jackId));
  out.clip = latched;
  step('clip latched');
  // Cleared by clicking its bar. Ticks come every 3 s: act between two,
  // so the next one cannot latch it again before the check.
  const betweenTicks = () => until('a moment between ticks', 15000, () => page.evaluate(id => {
    const m = window.studiocastConsole.meters.get(id);
    const age = performance.now() - (m.clipSeen[0] || 0);
    return m.clips[0] && age > 300 && age < 1500;
  }, jackId));
  await betweenTicks();
  const bar = await page.evaluate(id => {
    const m = window.studiocastConsole.meters.get(id);
    const r = m.canvas.getBoundingClientRect();
    return { x: r.left + m.layout[0].x + m.layout[0].w / 2, y: r.top + r.height / 2 };
  }, jackId);
  await page.mouse.click(bar.x, bar.y);
  out.clipAfterClick = await page.evaluate(id => window.studiocastConsole.meters.get(id).clips[0] === true, jackId);
  // And all of them by keyboard: Tab to the button, Enter.
  await betweenTicks();
  await page.focus(`article.card[data-id="${jackId}"] .meter-tools button`);
  await page.keyboard.press('Enter');
  out.clipAfterKeyboard = await page.evaluate(id => window.studiocastConsole.meters.get(id).latched.length, jackId);

  // Frame time: the 64-channel canvas's draws, long tasks and the page's
  // frame intervals, over 10 s (every session's meters drawing meanwhile).
  await page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver(l => window.longTasks.push(...l.getEntries().map(e => e.duration)))
      .observe({ type: 'longtask', buffered: false });
    window.frameGaps = [];
    let last = performance.now();
    const tick = now => { window.frameGaps.push(now - last); last = now; if (window.frameGaps.length < 100000) requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
    window.studiocastConsole.drawMs.length = 0;
    for (const m of window.studiocastConsole.meters.values()) m.drawMs.length = 0;
  });
  const before = await reading(jackId);
  await sleep(10000);
  const after = await reading(jackId);
  const perf = await page.evaluate(id => ({
    draws: window.studiocastConsole.meters.get(id).drawMs.slice(),
    allDraws: window.studiocastConsole.drawMs.length,
    longTasks: window.longTasks.slice(),
    gaps: window.frameGaps.slice(1),
    measures: performance.getEntriesByName('studiocast-meters').length,
  }), jackId);
  out.frameTime = {
    channels: after.n,
    readings: after.frames - before.frames,
    draws: perf.draws.length, allSessionsDraws: perf.allDraws,
    drawP50: pct(perf.draws, 0.5), drawP95: pct(perf.draws, 0.95), drawMax: Math.max(...perf.draws),
    longTasks: perf.longTasks.length, longestTask: perf.longTasks.length ? Math.max(...perf.longTasks) : 0,
    frameP50: pct(perf.gaps, 0.5), frameP95: pct(perf.gaps, 0.95), frames: perf.gaps.length,
    framesOver50ms: perf.gaps.filter(g => g > 50).length,
    measures: perf.measures,
  };
  step('frame time measured');

  // Kill the SRT encoder: the alarm shows.
  process.kill(Number(srtPid), 'SIGKILL');
  const killedAt = Date.now();
  out.alarm = await until('the alarm banner', 30000, () => page.evaluate(() => {
    const t = document.querySelector('#alarms').innerText;
    return /video source lost/.test(t) ? t : null;
  }));
  out.alarmAfterMs = Date.now() - killedAt;
  out.title = await page.title();
  step('alarm shown');
  await page.screenshot({ path: shot, fullPage: true });

  // Stop the demo (confirming), then find it in the past list with a VOD.
  page.once('dialog', d => { out.dialog = d.message(); d.accept(); });
  await page.click(`article.card[data-id="${demoId}"] button.danger`);
  const vod = await until('the demo in the past list', 40000, () => page.evaluate(id =>
    document.querySelector(`#past tr[data-id="${id}"] a.vod`)?.getAttribute('href'), demoId));
  out.vod = vod;
  step('demo in the past list');
  // Its disk use, and a pin that keeps it from retention.
  out.disk = await until('the disk use', 15000, () => page.evaluate(id =>
    document.querySelector(`#past tr[data-id="${id}"] td.disk`)?.innerText, demoId));
  await page.click(`#past tr[data-id="${demoId}"] td.disk button`);
  out.pinned = await until('the pin', 15000, () => page.evaluate(id =>
    document.querySelector(`#past tr[data-id="${id}"] td.disk button`)?.getAttribute('aria-pressed') === 'true', demoId));
  // A private link for it.
  await page.click(`#past tr[data-id="${demoId}"] td:last-child button`);
  out.privateLink = await until('the private link', 10000, () => page.evaluate(id =>
    document.querySelector(`#past tr[data-id="${id}"] input.link-out`)?.value, demoId));

  // The VOD link plays (hls.js, as the console's own preview does).
  const player = await browser.newPage();
  await player.goto(`${daemon}/healthz`);
  await player.addScriptTag({ url: `${daemon}/player/hls-1.6.19.min.js` });
  await player.evaluate(src => {
    const v = document.createElement('video');
    v.muted = true;
    document.body.append(v);
    const hls = new Hls();
    hls.loadSource(src);
    hls.attachMedia(v);
    v.play().catch(() => {});
    window.v = v;
  }, new URL(vod, daemon).href);
  out.vodPlayed = await until('the VOD playing', 30000, () => player.evaluate(() => window.v.currentTime > 2 ? window.v.currentTime : null));
  step('VOD plays');
} catch (e) {
  out.fatal = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
