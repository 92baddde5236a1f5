// The head-tracked player's AudioWorklet: rotates a first-order AmbiX
// sound field (W, Y, Z, X) against the listener's head, block by block.
//
// Input: whatever the media element plays. Four channels are the ambisonic
// rendition: rotated, they leave on output 0 for the binaural filters.
// Anything else (the stereo renditions, while hls.js switches groups) leaves
// untouched on output 1, so a switch never plays W, Y, Z, X as loudspeakers
// nor stereo through the ambisonic filters.
//
// The orientation glides to its target (30 ms time constant, the shorter way
// round), and within each 128-frame block the matrix moves linearly from the
// previous block's to this one's: a turn of any size, even a jump of 90°, is
// a smooth change of gains, never a step (a step is a click).
"use strict";

const TAU = 0.03;

// Head orientation (radians; yaw: turning left is positive, pitch: looking
// up is positive, roll: tilting to the right ear is positive) to the matrix
// taking the room's (X, Y, Z) to the head's: the transpose of the head's
// rotation Rz(yaw) · Ry(-pitch) · Rx(roll), with X front, Y left, Z up.
function matrix(yaw, pitch, roll, out) {
  const cy = Math.cos(yaw), sy = Math.sin(yaw);
  const cp = Math.cos(-pitch), sp = Math.sin(-pitch);
  const cr = Math.cos(roll), sr = Math.sin(roll);
  // H = Rz · Ry · Rx, row-major.
  const h00 = cy * cp, h01 = cy * sp * sr - sy * cr, h02 = cy * sp * cr + sy * sr;
  const h10 = sy * cp, h11 = sy * sp * sr + cy * cr, h12 = sy * sp * cr - cy * sr;
  const h20 = -sp, h21 = cp * sr, h22 = cp * cr;
  // Transpose.
  out[0] = h00; out[1] = h10; out[2] = h20;
  out[3] = h01; out[4] = h11; out[5] = h21;
  out[6] = h02; out[7] = h12; out[8] = h22;
  return out;
}

function wrap(a) {
  while (a > Math.PI) a -= 2 * Math.PI;
  while (a < -Math.PI) a += 2 * Math.PI;
  return a;
}

class Rotator extends AudioWorkletProcessor {
  constructor() {
    super();
    this.target = [0, 0, 0];
    this.current = [0, 0, 0];
    this.from = matrix(0, 0, 0, new Float64Array(9));
    this.to = new Float64Array(9);
    // Channels arriving, told to the page when it changes (the page knows
    // then that the ambisonic rendition really plays).
    this.seen = -1;
    this.port.onmessage = (e) => {
      const o = e.data && e.data.orientation;
      if (o && o.length === 3 && o.every(Number.isFinite)) this.target = o.slice();
    };
  }

  process(inputs, outputs) {
    const input = inputs[0] || [];
    const [spatial, plain] = outputs;
    if (input.length !== this.seen) {
      this.seen = input.length;
      this.port.postMessage({ channels: this.seen });
    }
    if (input.length !== 4) {
      for (let c = 0; c < plain.length; c++) {
        const src = input[Math.min(c, input.length - 1)];
        if (src) plain[c].set(src); else plain[c].fill(0);
      }
      for (const ch of spatial) ch.fill(0);
      return true;
    }
    for (const ch of plain) ch.fill(0);
    const n = spatial[0].length;
    const a = 1 - Math.exp(-n / sampleRate / TAU);
    const cur = this.current, tgt = this.target;
    cur[0] = wrap(cur[0] + wrap(tgt[0] - cur[0]) * a);
    cur[1] += (tgt[1] - cur[1]) * a;
    cur[2] += (tgt[2] - cur[2]) * a;
    const m0 = this.from, m1 = matrix(cur[0], cur[1], cur[2], this.to);
    const [w, y, z, x] = input;
    const [ow, oy, oz, ox] = spatial;
    ow.set(w);
    for (let i = 0; i < n; i++) {
      const t = (i + 1) / n, u = 1 - t;
      const X = x[i], Y = y[i], Z = z[i];
      ox[i] = (u * m0[0] + t * m1[0]) * X + (u * m0[1] + t * m1[1]) * Y + (u * m0[2] + t * m1[2]) * Z;
      oy[i] = (u * m0[3] + t * m1[3]) * X + (u * m0[4] + t * m1[4]) * Y + (u * m0[5] + t * m1[5]) * Z;
      oz[i] = (u * m0[6] + t * m1[6]) * X + (u * m0[7] + t * m1[7]) * Y + (u * m0[8] + t * m1[8]) * Z;
    }
    this.from = m1;
    this.to = m0;
    return true;
  }
}

registerProcessor("studiocast-rotator", Rotator);
