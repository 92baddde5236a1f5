// studiocast's embeddable player: hls.js (or Safari's own HLS), custom
// controls reachable by keyboard, and a postMessage API for the sites that
// embed it (the Campus tracks progress with it).
(function () {
  "use strict";
  var lesson = JSON.parse(document.getElementById("lesson").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var video = $("video"), player = $("player"), cover = $("cover");
  var hls = null;
  var started = false;
  // Head-tracked ambisonics (spatial.js), built when first chosen.
  var spatial = window.StudiocastSpatial ? new window.StudiocastSpatial(video, "../") : null;

  // --- The player API -----------------------------------------------------
  // Messages go only to an embedding origin on the configured allow-list,
  // never to "*"; commands are taken only from it.
  var parentOrigin = (function () {
    if (window.parent === window) return null;
    var o = null;
    if (location.ancestorOrigins && location.ancestorOrigins.length) o = location.ancestorOrigins[0];
    else if (document.referrer) { try { o = new URL(document.referrer).origin; } catch (e) { o = null; } }
    return o && (lesson.origins || []).indexOf(o) >= 0 ? o : null;
  })();
  function post(event, extra) {
    if (!parentOrigin) return;
    var m = { source: "studiocast", event: event, id: lesson.id,
      currentTime: video.currentTime || 0, duration: isFinite(video.duration) ? video.duration : null,
      live: !!lesson.live };
    for (var k in extra || {}) m[k] = extra[k];
    window.parent.postMessage(m, parentOrigin);
  }
  window.addEventListener("message", function (e) {
    if (!parentOrigin || e.origin !== parentOrigin || !e.data || typeof e.data !== "object") return;
    var c = e.data.command, v = e.data.value;
    if (c === "play") play();
    else if (c === "pause") video.pause();
    else if (c === "seek" && typeof v === "number" && isFinite(v)) seekTo(v);
    else if (c === "setAudio" && typeof v === "string") setAudio(v);
    else if (c === "setOrientation" && v && typeof v === "object" && spatial) spatial.setOrientation(+v.yaw, +v.pitch, +v.roll);
    else if (c === "resetOrientation" && spatial) spatial.reset();
  });

  // --- Messages instead of a player ----------------------------------------
  function say(text) {
    var m = $("message");
    m.textContent = text;
    m.hidden = false;
  }
  $("title").textContent = lesson.title || "";
  $("course").textContent = lesson.course || "";
  document.title = lesson.title || document.title;
  if (lesson.poster) { $("poster").src = lesson.poster; $("poster").hidden = false; }
  if (lesson.message || !lesson.src) {
    say(lesson.message || "There is nothing to play here.");
    post("error", { message: lesson.message });
    return;
  }

  // --- Playback ------------------------------------------------------------
  var native = !(window.Hls && window.Hls.isSupported()) &&
    video.canPlayType("application/vnd.apple.mpegurl") !== "";
  if (!native && !(window.Hls && window.Hls.isSupported())) {
    say("This browser cannot play this lesson (no HLS or Media Source support).");
    post("error", { message: "unsupported browser" });
    return;
  }
  var retries = 0;
  // `from`: where a reload (another audio group) starts: its position
  // (VOD; live goes back to the live edge), level and audio rendition.
  function load(from) {
    if (native) { video.src = lesson.src; return; }
    var cfg = { lowLatencyMode: !!lesson.live, backBufferLength: 90, enableWorker: true };
    if (from) {
      if (!lesson.live) cfg.startPosition = from.position;
      cfg.startLevel = from.level;
      cfg.audioPreference = from.audio;
    }
    hls = new window.Hls(cfg);
    hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
      fillQuality(); fillAudio(); ready();
      if (from && from.playing) play();
    });
    hls.on(window.Hls.Events.AUDIO_TRACKS_UPDATED, fillAudio);
    hls.on(window.Hls.Events.AUDIO_TRACK_SWITCHED, fillAudio);
    hls.on(window.Hls.Events.LEVEL_SWITCHED, fillQuality);
    hls.on(window.Hls.Events.ERROR, function (_, d) {
      if (!d.fatal) return;
      var code = d.response && d.response.code;
      // No player's master (a lesson older than it): any player's.
      if (code === 404 && d.details === window.Hls.ErrorDetails.MANIFEST_LOAD_ERROR && lesson.player_src) {
        lesson.player_src = null;
        hls.destroy();
        hls = null;
        load(from);
        return;
      }
      if (code === 403) {
        say("This lesson is private, or your link has expired. Open it again from your course page.");
      } else if (d.type === window.Hls.ErrorTypes.NETWORK_ERROR && retries < 5) {
        // A playlist that failed is loaded again from the start; a media
        // request, by resuming the loader.
        retries += 1;
        var again = /manifest|level/i.test(d.details || "");
        setTimeout(function () { if (!hls) return; if (again) hls.loadSource(lesson.player_src || lesson.src); else hls.startLoad(); }, 1000 * retries);
        return;
      } else if (d.type === window.Hls.ErrorTypes.MEDIA_ERROR && retries < 3) {
        retries += 1;
        hls.recoverMediaError();
        return;
      } else {
        say("Playback stopped: " + (d.details || "an error") + ". Reload the page to try again.");
      }
      post("error", { message: d.details });
      hls.destroy();
      hls = null;
    });
    hls.on(window.Hls.Events.FRAG_LOADED, function () { retries = 0; });
    // The master with every rendition (the 360° one too); any player's
    // for lessons made before it existed.
    hls.loadSource(lesson.player_src || lesson.src);
    hls.attachMedia(video);
  }
  var isReady = false;
  function ready() {
    if (isReady) return;
    isReady = true;
    $("bigplay").hidden = false;
    $("controls").hidden = false;
    $("live").hidden = !lesson.live;
    post("ready");
  }
  if (native) {
    // iOS loads nothing before a tap: the play control shows at once.
    ready();
    video.addEventListener("loadedmetadata", fillAudio);
    video.addEventListener("error", function () { say("Playback failed. Reload the page to try again."); post("error"); });
  }
  video.preload = "metadata";
  load();

  // Time to first frame (ms since the page's navigation): when play was
  // asked, and when the first picture was shown.
  var metrics = { playAt: null, firstFrameAt: null };
  function firstFrame(now) { if (metrics.firstFrameAt == null) metrics.firstFrameAt = now; }
  // A paused element shows a frame too once data is in (live loads before
  // play): only a frame presented while playing, after play was asked.
  function watchFrames() {
    video.requestVideoFrameCallback(function (now) {
      if (metrics.playAt != null && !video.paused && now >= metrics.playAt) firstFrame(now);
      else watchFrames();
    });
  }
  if (video.requestVideoFrameCallback) watchFrames();
  else video.addEventListener("playing", function () { firstFrame(performance.now()); });
  function play() {
    if (metrics.playAt == null) metrics.playAt = performance.now();
    if (!started) { started = true; cover.classList.add("playing"); if (lesson.live) goLive(); }
    if (spatial) spatial.resume();
    var p = video.play();
    if (p && p.catch) p.catch(function (e) { say("Press play to start (" + e.name + ")."); });
  }
  function toggle() { if (video.paused) play(); else video.pause(); }
  $("bigplay").addEventListener("click", play);
  $("play").addEventListener("click", toggle);
  // A drag turns the head (head-tracked mode); only a plain click toggles.
  video.addEventListener("click", function () { if (dragged) { dragged = false; return; } toggle(); });
  video.addEventListener("play", function () {
    $("play").innerHTML = "&#10074;&#10074;"; $("play").setAttribute("aria-label", "Pause");
    $("message").hidden = true; post("play");
  });
  video.addEventListener("pause", function () {
    $("play").innerHTML = "&#9654;"; $("play").setAttribute("aria-label", "Play"); post("pause");
  });
  video.addEventListener("ended", function () { post("ended"); });

  // --- Position, live edge and latency --------------------------------------
  function fmt(t) {
    if (!isFinite(t) || t < 0) t = 0;
    var h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = Math.floor(t % 60);
    return (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }
  function range() {
    var s = video.seekable;
    return s && s.length ? [s.start(0), s.end(s.length - 1)] : [0, isFinite(video.duration) ? video.duration : 0];
  }
  function edge() { return hls && hls.liveSyncPosition != null ? hls.liveSyncPosition : range()[1]; }
  function goLive() { var e = edge(); if (isFinite(e) && e > 0) video.currentTime = e; }
  function seekTo(t) { var r = range(); video.currentTime = Math.max(r[0], Math.min(r[1], t)); }
  $("live").addEventListener("click", function () { goLive(); play(); });
  var seeking = false;
  $("seek").addEventListener("input", function () { seeking = true; seekTo(parseFloat($("seek").value)); });
  $("seek").addEventListener("change", function () { seeking = false; });
  var lastTick = 0;
  video.addEventListener("timeupdate", function () {
    var r = range(), seek = $("seek");
    seek.min = r[0]; seek.max = r[1];
    if (!seeking) seek.value = video.currentTime;
    seek.setAttribute("aria-valuetext", fmt(video.currentTime - (lesson.live ? r[0] : 0)));
    if (lesson.live) {
      // Latency: now against the wall-clock time of the frame playing
      // (EXT-X-PROGRAM-DATE-TIME, stamped at capture).
      var d = hls && hls.playingDate;
      var lat = d ? (Date.now() - d.getTime()) / 1000 : null;
      var behind = edge() - video.currentTime > 3;
      var live = $("live");
      live.textContent = behind ? "Go live" : "LIVE" + (lat != null && lat > 0 ? " \u00b7 " + lat.toFixed(1) + " s" : "");
      live.classList.toggle("behind", behind);
      live.setAttribute("aria-label", behind ? "Behind live: go to the live edge" : "Live" + (lat ? ", " + lat.toFixed(1) + " seconds behind" : ""));
      $("time").textContent = behind ? "-" + fmt(edge() - video.currentTime) : "";
      if (lat != null) player.dataset.latency = lat.toFixed(3);
    } else {
      $("time").textContent = fmt(video.currentTime) + " / " + fmt(video.duration);
    }
    // At most 4 a second wherever they arrive: 300 ms apart leaves room
    // for the jitter of the message queue.
    var now = performance.now();
    if (now - lastTick >= 300) { lastTick = now; post("timeupdate"); }
  });

  // --- Volume, fullscreen ----------------------------------------------------
  function showMute() {
    $("mute").innerHTML = video.muted || video.volume === 0 ? "&#128263;" : "&#128266;";
    $("mute").setAttribute("aria-pressed", String(video.muted));
    $("mute").setAttribute("aria-label", video.muted ? "Unmute" : "Mute");
  }
  $("mute").addEventListener("click", function () { video.muted = !video.muted; showMute(); });
  $("volume").addEventListener("input", function () { video.volume = parseFloat($("volume").value); video.muted = false; showMute(); });
  video.addEventListener("volumechange", function () { $("volume").value = video.muted ? 0 : video.volume; showMute(); });
  function fullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (player.requestFullscreen) player.requestFullscreen().catch(function () {});
    else if (video.webkitEnterFullscreen) video.webkitEnterFullscreen();
  }
  $("fullscreen").addEventListener("click", fullscreen);

  // --- Quality and audio -------------------------------------------------------
  function option(sel, value, text, selected) {
    var o = document.createElement("option");
    o.value = value; o.textContent = text; o.selected = selected;
    sel.appendChild(o);
  }
  function fillQuality() {
    var sel = $("quality");
    if (!hls || !hls.levels || hls.levels.length < 2) { sel.hidden = true; return; }
    sel.hidden = false;
    sel.textContent = "";
    var auto = hls.autoLevelEnabled;
    var cur = hls.levels[hls.currentLevel];
    option(sel, "-1", "Auto" + (auto && cur && cur.height ? " (" + cur.height + "p)" : ""), auto);
    // The same picture comes once per audio group: list the levels of the
    // group playing (none to choose with one). Highest first, as viewers
    // expect the menu.
    var group = cur && cur.audioGroups ? cur.audioGroups[0] : null;
    var mine = hls.levels.filter(function (l) { return !group || !l.audioGroups || l.audioGroups.indexOf(group) >= 0; });
    if (mine.length < 2) { sel.hidden = true; return; }
    // hls.js's currentLevel is the level of the picture playing: after a
    // choice it stays the old one until the new level's first fragment
    // plays (a flush and a fetch, seconds on a slow link). The menu shows
    // the viewer's choice at once.
    var chosen = hls.manualLevel >= 0 ? hls.manualLevel : hls.currentLevel;
    for (var i = hls.levels.length - 1; i >= 0; i--) {
      var l = hls.levels[i];
      if (group && l.audioGroups && l.audioGroups.indexOf(group) < 0) continue;
      option(sel, String(i), l.height ? l.height + "p" : Math.round(l.bitrate / 1000) + " kb/s", !auto && i === chosen);
    }
  }
  $("quality").addEventListener("change", function () {
    // nextLevel: the switch at the next fragment, without flushing what
    // is buffered (currentLevel flushes; with the alternate audio of a
    // live session it once left playback stalled and silent).
    if (hls) hls.nextLevel = parseInt($("quality").value, 10);
    fillQuality();
  });
  // Which rendition a track is: the folder of its playlist (binaural/,
  // stereo/, …), as the presets name them; Safari's own tracks have only
  // their label ("Stereo", "Binaural (headphones)"): its first word.
  function renditionOf(t) {
    var m = /\/([A-Za-z0-9_-]+)\/index\.m3u8/.exec(t.url || "");
    if (m) return m[1];
    return (t.name || "").toLowerCase().split(/[^a-z0-9_-]/)[0];
  }
  // Every audio rendition, across groups (the ambisonic one has its own).
  function tracks() {
    if (hls) return hls.allAudioTracks || hls.audioTracks || [];
    var list = [], at = video.audioTracks;
    for (var i = 0; at && i < at.length; i++) list.push({ name: at[i].label, native: at[i] });
    return list;
  }
  function isAmbisonic(t) { return !!t && String(t.channels || (t.attrs && t.attrs.CHANNELS) || "") === "4"; }
  // Head tracking needs MSE with Opus, an AudioWorklet and the filters;
  // Safari's own player gives no access to the four channels.
  var noSpatial = !spatial ? "no Web Audio" : native ? "native HLS" : spatial.unsupported;
  function playing() {
    if (!hls) return -1;
    var cur = (hls.audioTracks || [])[hls.audioTrack];
    return cur ? tracks().indexOf(cur) : -1;
  }
  function fillAudio() {
    var sel = $("audio"), ts = tracks();
    if (ts.length < 2) { sel.hidden = true; return; }
    sel.hidden = false;
    sel.textContent = "";
    var cur = playing();
    ts.forEach(function (t, i) {
      var name = t.name || renditionOf(t);
      if (isAmbisonic(t) && noSpatial) name += " (not available here: binaural)";
      option(sel, String(i), name, hls ? i === cur : t.native.enabled);
    });
    var on = !!(spatial && spatial.active);
    $("front").hidden = !on;
    player.classList.toggle("spatial", on);
  }
  // The default (binaural) rendition of the stereo group: the fallback.
  function binaural() {
    var ts = tracks();
    for (var i = 0; i < ts.length; i++) if (!isAmbisonic(ts[i]) && ts[i].default) return i;
    for (i = 0; i < ts.length; i++) if (!isAmbisonic(ts[i])) return i;
    return -1;
  }
  // Within a group, the track. Across groups (the ambisonic rendition has
  // variants of its own) the media is loaded afresh, at the same position
  // and picture: Chromium keeps the channel layout a stream started with,
  // so four channels after two would reach Web Audio downmixed (and two
  // after four, spread over W, Y, Z, X).
  function switchTo(t) {
    var inGroup = (hls.audioTracks || []).indexOf(t);
    if (inGroup >= 0) { hls.audioTrack = inGroup; return; }
    var cur = hls.levels[hls.currentLevel] || hls.levels[0] || {};
    var best = -1;
    hls.levels.forEach(function (l, i) {
      if (!l.audioGroups || l.audioGroups.indexOf(t.groupId) < 0) return;
      if (best < 0 || Math.abs(l.height - cur.height) < Math.abs(hls.levels[best].height - cur.height)) best = i;
    });
    if (best < 0) return;
    var from = { position: video.currentTime, level: best, playing: !video.paused,
      audio: { name: t.name, groupId: t.groupId } };
    var old = hls;
    hls = null;
    old.destroy();
    load(from);
  }
  function fallBack(reason) {
    if (spatial) spatial.active = false;
    var b = binaural();
    if (b >= 0 && hls) switchTo(tracks()[b]);
    fillAudio();
    var text = "Head tracking is not available here (" + reason + "): playing the binaural mix.";
    say(text);
    setTimeout(function () { if ($("message").textContent === text) $("message").hidden = true; }, 4000);
    post("audiochange", { audio: renditionOf(tracks()[b] || {}), fallback: reason });
  }
  // A browser that decodes the rendition but hands Web Audio fewer than
  // its four channels (a downmix) would play it as stereo: checked once
  // the switch has had time, while playing.
  var fourTimer = null;
  function expectFour() {
    clearTimeout(fourTimer);
    fourTimer = setTimeout(function () {
      if (!spatial.active) return;
      if (video.paused || video.readyState < 3) { expectFour(); return; }
      if (spatial.channels !== 4) fallBack("its four channels did not arrive");
    }, 10000);
  }
  function selectAudio(i) {
    var t = tracks()[i];
    if (!t) return;
    if (!hls) {
      tracks().forEach(function (x, j) { x.native.enabled = j === i; });
      fillAudio();
      post("audiochange", { audio: renditionOf(t) });
      return;
    }
    if (isAmbisonic(t)) {
      if (noSpatial) { fallBack(noSpatial); return; }
      // Both in the viewer's gesture: phones turn with the listener (iOS
      // asks for the sensor only from a tap), and the audio context starts
      // (made later, it stays suspended: a silent video).
      if (window.matchMedia && matchMedia("(pointer: coarse)").matches) spatial.track();
      spatial.start().then(function () {
        spatial.active = true;
        spatial.resume();
        switchTo(t);
        fillAudio();
        post("audiochange", { audio: renditionOf(t) });
        expectFour();
      }, function (e) { fallBack(e && e.message ? e.message : "no filters"); });
      return;
    }
    if (spatial) spatial.active = false;
    switchTo(t);
    fillAudio();
    post("audiochange", { audio: renditionOf(t) });
  }
  $("audio").addEventListener("change", function () { selectAudio(parseInt($("audio").value, 10)); });
  function setAudio(name) {
    var ts = tracks();
    for (var i = 0; i < ts.length; i++) {
      if (renditionOf(ts[i]) === name || ts[i].name === name) { selectAudio(i); return; }
    }
  }
  if (spatial) {
    var lastTurn = 0, trailing = null;
    var showHeading = function (o) {
      var y = Math.round(o.yaw);
      $("front").textContent = y === 0 ? "Front" : "Front \u00b7 " + Math.abs(y) + "\u00b0 " + (y > 0 ? "left" : "right");
      // To the embedding site while head-tracked, at most 4 a second, the
      // last heading of a turn included.
      if (!spatial.active) return;
      var now = performance.now();
      clearTimeout(trailing);
      if (now - lastTurn >= 250) { lastTurn = now; post("orientation", o); }
      else trailing = setTimeout(function () { lastTurn = performance.now(); post("orientation", spatial.orientation()); }, 250 - (now - lastTurn));
    };
    spatial.onchange(showHeading);
    $("front").addEventListener("click", function () { spatial.reset(); });
    spatial.draggable(video, function () { dragged = true; });
  }
  var dragged = false;
  video.addEventListener("pointerdown", function () { dragged = false; });

  // --- Keyboard ------------------------------------------------------------------
  player.addEventListener("keydown", function (e) {
    // The browser's own shortcuts (Ctrl+F, Cmd+L, …) stay the browser's.
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = e.target && e.target.tagName, id = e.target && e.target.id;
    // A select's arrows choose; the volume slider's change the volume; the
    // position slider's seek 5 s like everywhere else in the player.
    if (tag === "SELECT" || (tag === "INPUT" && id !== "seek" && e.key.indexOf("Arrow") === 0)) return;
    var k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (k === " " || k === "k") { if (tag === "BUTTON" && k === " ") return; toggle(); }
    else if (k === "m") { video.muted = !video.muted; showMute(); }
    else if (k === "f") fullscreen();
    else if (k === "l" && lesson.live) goLive();
    else if (spatial && spatial.active && tag !== "INPUT" && k.indexOf("Arrow") === 0) {
      // Head-tracked: the arrows turn the listener (left turns left).
      if (k === "ArrowLeft") spatial.turn(15, 0);
      else if (k === "ArrowRight") spatial.turn(-15, 0);
      else if (k === "ArrowUp") spatial.turn(0, 10);
      else spatial.turn(0, -10);
    }
    else if (k === "r" && spatial && spatial.active) spatial.reset();
    else if (k === "ArrowLeft") seekTo(video.currentTime - 5);
    else if (k === "ArrowRight") seekTo(video.currentTime + 5);
    else if (k === "ArrowUp") video.volume = Math.min(1, video.volume + 0.1);
    else if (k === "ArrowDown") video.volume = Math.max(0, video.volume - 0.1);
    else return;
    e.preventDefault();
  });

  // For tests and for sites that script the page directly.
  window.studiocastPlayer = { video: video, hls: function () { return hls; }, play: play, setAudio: setAudio, spatial: spatial, metrics: metrics };
})();
