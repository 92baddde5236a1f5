// The player's head-tracked mode: the first-order ambisonic rendition,
// rotated against the listener's head in an AudioWorklet (rotator.js), then
// rendered to two ears with the spatial engine's own filters for this
// daemon's HRTF set (/api/v1/hrtf/order1.json): four SH-domain filter pairs
// in ConvolverNodes, summed per ear.
//
// The head: device orientation on phones (after the permission prompt on
// iOS), dragging the picture or the arrow keys on desktops, or the player
// API. Reset makes the current direction the front.
(function () {
  "use strict";
  var AC = window.AudioContext || window.webkitAudioContext;

  // What head tracking needs from the browser; the player falls back to the
  // binaural rendition (and says so) without it.
  function why() {
    if (!AC || !window.AudioWorkletNode || !("audioWorklet" in AC.prototype)) return "no AudioWorklet";
    var ms = window.MediaSource || window.ManagedMediaSource;
    if (!ms || !ms.isTypeSupported || !ms.isTypeSupported('audio/mp4; codecs="opus"')) return "no Opus in MP4";
    return null;
  }

  function deg(r) { return r * 180 / Math.PI; }
  function rad(d) { return d * Math.PI / 180; }
  function wrapDeg(a) { a = ((a + 180) % 360 + 360) % 360 - 180; return a === -180 ? 180 : a; }

  function Spatial(video, base) {
    this.video = video;
    this.base = base;
    this.ctx = null;
    this.node = null;
    this.output = null;
    this.filters = null;
    this.yaw = 0; this.pitch = 0; this.roll = 0;
    this.sensor = null;
    this.listeners = [];
    this.unsupported = why();
  }

  // Build the graph once (a media element's audio can be taken into Web
  // Audio only once, and then always plays through it). Call it from the
  // viewer's gesture: the context is made and resumed there, before any
  // await (made later, browsers leave it suspended: a silent video). The
  // element is taken into the graph last, once everything else stands,
  // so a failure on the way leaves its sound where it was.
  Spatial.prototype.start = function () {
    var self = this;
    if (this.ready) return this.ready;
    var ctx;
    try {
      ctx = this.ctx || new AC({ sampleRate: 48000, latencyHint: "interactive" });
    } catch (e) {
      ctx = new AC({ latencyHint: "interactive" });
    }
    this.ctx = ctx;
    if (ctx.state !== "running") ctx.resume().catch(function () {});
    // The filters at the context's own rate (a convolver's response must
    // be at it).
    var url = this.base + "api/v1/hrtf/order1.json?rate=" + ctx.sampleRate;
    this.ready = fetch(url, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("filters: HTTP " + r.status);
        return r.json();
      })
      .then(function (doc) {
        var ok = doc && doc.order === 1 && doc.rate === ctx.sampleRate && doc.taps > 0 &&
          [doc.left, doc.right].every(function (ear) {
            return ear && ear.length === 4 && ear.every(function (h) { return h.length === doc.taps; });
          });
        if (!ok) throw new Error("filters: not first order at " + ctx.sampleRate + " Hz");
        self.filters = doc;
        return ctx.audioWorklet.addModule(self.base + "player/rotator.js");
      })
      .then(function () { return running(ctx); })
      .then(function () { return self.graph(); })
      .catch(function (e) {
        // Nothing was taken from the element: a later try starts afresh.
        if (!self.source) self.ready = null;
        throw e;
      });
    return this.ready;
  };

  // A context the browser keeps suspended (no gesture in this frame: a
  // command from the embedding site) must not take the element's sound:
  // it would be silent. A second's grace, then a clear failure.
  function running(ctx) {
    if (ctx.state === "running") return Promise.resolve();
    var resumed = ctx.resume().catch(function () {});
    var waited = new Promise(function (r) { setTimeout(r, 1000); });
    return Promise.race([resumed, waited]).then(function () {
      if (ctx.state !== "running") throw new Error("the browser holds audio until a tap on the player");
    });
  }

  Spatial.prototype.graph = function () {
    var self = this, ctx = this.ctx, doc = this.filters;
    var node = new AudioWorkletNode(ctx, "studiocast-rotator", {
      numberOfInputs: 1, numberOfOutputs: 2, outputChannelCount: [4, 2],
      channelCountMode: "max", channelInterpretation: "discrete"
    });
    node.port.onmessage = function (e) {
      if (e.data && typeof e.data.channels === "number") { self.channels = e.data.channels; self.send(); }
    };
    var out = ctx.createGain();
    var split = ctx.createChannelSplitter(4);
    node.connect(split, 0);
    for (var k = 0; k < 4; k++) {
      // A mono input through a two-channel response gives both ears.
      var conv = ctx.createConvolver();
      conv.normalize = false;
      conv.channelCount = 1;
      conv.channelCountMode = "explicit";
      var buf = ctx.createBuffer(2, doc.taps, doc.rate);
      buf.copyToChannel(Float32Array.from(doc.left[k]), 0);
      buf.copyToChannel(Float32Array.from(doc.right[k]), 1);
      conv.buffer = buf;
      split.connect(conv, k);
      conv.connect(out);
    }
    node.connect(out, 1);
    out.connect(ctx.destination);
    // Everything stands: now the element's sound comes in.
    var src = ctx.createMediaElementSource(this.video);
    src.connect(node);
    this.node = node;
    this.output = out;
    this.source = src;
    this.send();
    return this;
  };

  Spatial.prototype.resume = function () {
    if (this.ctx && this.ctx.state !== "running") this.ctx.resume();
  };

  Spatial.prototype.send = function () {
    if (this.node) this.node.port.postMessage({ orientation: [rad(this.yaw), rad(this.pitch), rad(this.roll)] });
    var o = this.orientation();
    this.listeners.forEach(function (f) { f(o); });
  };

  // Degrees; yaw: turning left is positive.
  Spatial.prototype.setOrientation = function (yaw, pitch, roll) {
    if (isFinite(yaw)) this.yaw = wrapDeg(yaw);
    if (isFinite(pitch)) this.pitch = Math.max(-90, Math.min(90, pitch));
    if (isFinite(roll)) this.roll = wrapDeg(roll);
    this.send();
  };
  Spatial.prototype.turn = function (dyaw, dpitch) {
    this.setOrientation(this.yaw + (dyaw || 0), this.pitch + (dpitch || 0), this.roll);
  };
  // `channels`: what the media plays now (4 once the ambisonic rendition
  // has reached the speakers).
  Spatial.prototype.orientation = function () {
    return { yaw: this.yaw, pitch: this.pitch, roll: this.roll, channels: this.channels || 0 };
  };
  // The direction the listener faces now becomes the front.
  Spatial.prototype.reset = function () {
    if (this.sensor) this.sensor.zero = null;
    this.setOrientation(0, 0, 0);
  };
  Spatial.prototype.onchange = function (f) { this.listeners.push(f); };

  // Phones: the device's orientation. Call `track` from the viewer's tap:
  // iOS asks for permission only then.
  //
  // The angles are W3C's intrinsic Z-X'-Y'' (alpha, beta, gamma; device
  // axes x right, y up the screen, z out of it): a phone held up in
  // portrait sits at beta = 90°, where those angles degenerate, so the
  // pose is taken as a matrix (device to earth). The head is the phone's
  // screen frame turned into the head's axes: X forward (out of the back),
  // Y left, Z up the screen (so landscape works, at any moment). The room
  // is the earth turned to the head's heading when tracking began (or at
  // the last reset); the tilt the phone was held at then is taken off, so
  // a phone held at an angle still hears the front ahead, and turning
  // about the vertical is a pure yaw whatever the tilt.
  function rx(a) { var c = Math.cos(a), s = Math.sin(a); return [1, 0, 0, 0, c, -s, 0, s, c]; }
  function ry(a) { var c = Math.cos(a), s = Math.sin(a); return [c, 0, s, 0, 1, 0, -s, 0, c]; }
  function rz(a) { var c = Math.cos(a), s = Math.sin(a); return [c, -s, 0, s, c, 0, 0, 0, 1]; }
  function mul(a, b) {
    var o = [];
    for (var i = 0; i < 3; i++) for (var j = 0; j < 3; j++) o.push(a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j]);
    return o;
  }
  function tr(a) { return [a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8]]; }
  // Device axes (x right, y up the screen, z out of it) to the head's.
  var TO_HEAD = [0, 0, -1, -1, 0, 0, 0, 1, 0];
  function pose(e) { return mul(mul(rz(rad(e.alpha)), rx(rad(e.beta))), ry(rad(e.gamma || 0))); }
  // The head's axes in earth coordinates (columns), for a device pose and
  // the screen's angle (0, 90, 180, 270).
  function head(device, screenAngle) { return mul(device, tr(mul(TO_HEAD, rz(rad(screenAngle || 0))))); }
  // (yaw, pitch, roll) in degrees of a head matrix in the room, as the
  // worklet takes them: H = Rz(yaw) · Ry(−pitch) · Rx(roll).
  function angles(h) {
    return [deg(Math.atan2(h[3], h[0])), deg(Math.asin(Math.max(-1, Math.min(1, h[6])))), deg(Math.atan2(h[7], h[8]))];
  }
  // The reference taken when tracking begins: the heading, and the tilt.
  Spatial.zero = function (device, screenAngle) {
    var h = head(device, screenAngle);
    var heading = Math.atan2(h[3], h[0]);
    var a = angles(mul(rz(-heading), h));
    return { heading: heading, pitch: a[1], roll: a[2] };
  };
  // The head's turn since `zero`, as (yaw, pitch, roll) in degrees.
  Spatial.headAngles = function (zero, device, screenAngle) {
    var a = angles(mul(rz(-zero.heading), head(device, screenAngle)));
    return [a[0], a[1] - zero.pitch, a[2] - zero.roll];
  };
  Spatial.pose = pose;
  Spatial.matrix = { mul: mul, rx: rx, ry: ry, rz: rz };
  Spatial.prototype.track = function () {
    var self = this;
    if (!window.DeviceOrientationEvent) return Promise.resolve(false);
    // Asked once: a second tap while iOS asks gets the same answer.
    if (this.asking) return this.asking;
    var ask = typeof DeviceOrientationEvent.requestPermission === "function"
      ? DeviceOrientationEvent.requestPermission() : Promise.resolve("granted");
    this.asking = Promise.resolve(ask).then(function (answer) {
      if (answer !== "granted") { self.asking = null; return false; }
      self.sensor = { zero: null };
      window.addEventListener("deviceorientation", function (e) {
        if (!self.active || e.alpha == null || e.beta == null) return;
        var s = self.sensor, now = pose(e);
        var angle = screen.orientation ? screen.orientation.angle : (window.orientation || 0);
        if (!s.zero) s.zero = Spatial.zero(now, angle);
        var a = Spatial.headAngles(s.zero, now, angle);
        self.setOrientation(a[0], a[1], a[2]);
      });
      return true;
    }, function () { self.asking = null; return false; });
    return this.asking;
  };

  // Desktops: drag the picture to look around, as in a 360° video: to the
  // right brings what was on the right to the front, down looks down.
  Spatial.prototype.draggable = function (el, onDragged) {
    var self = this, from = null, moved = false;
    el.addEventListener("pointerdown", function (e) {
      moved = false;
      if (!self.active || e.button !== 0) return;
      from = { x: e.clientX, y: e.clientY, yaw: self.yaw, pitch: self.pitch };
      // Released anywhere, the drag ends here.
      if (el.setPointerCapture) el.setPointerCapture(e.pointerId);
    });
    el.addEventListener("pointermove", function (e) {
      if (!from) return;
      var dx = e.clientX - from.x, dy = e.clientY - from.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) moved = true;
      if (moved) self.setOrientation(from.yaw - dx * 0.4, from.pitch - dy * 0.4, self.roll);
    });
    function end() { if (from && moved) onDragged(); from = null; }
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    el.addEventListener("lostpointercapture", function () { from = null; });
  };

  window.StudiocastSpatial = Spatial;
  window.StudiocastSpatial.degrees = deg;
})();
