//! Scene rotation and head tracking for real spherical harmonics.
//!
//! Rotation matrices come from the Ivanic–Ruedenberg recursion (J. Phys.
//! Chem. 1996, with the 1998 erratum): each degree's matrix is built from the
//! previous degree and the first-order one, so any order costs O(N⁴) flops.
//! Streaming rotation changes are interpolated inside the block: exact
//! matrices every `SUBSTEP` samples from a slerped quaternion, with linear
//! interpolation of the matrix entries in between, so a fast head turn does
//! not produce zipper noise.

use crate::sh::{channels_for_order, MAX_ORDER};

/// Samples between exact rotation matrices while a rotation is moving.
pub const SUBSTEP: usize = 32;

/// Unit quaternion (w, x, y, z).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quat {
    pub w: f64,
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl Quat {
    pub const IDENTITY: Quat = Quat {
        w: 1.0,
        x: 0.0,
        y: 0.0,
        z: 0.0,
    };

    /// Normalised quaternion; a zero or non-finite input gives the identity,
    /// since head-tracker data is untrusted.
    pub fn new(w: f64, x: f64, y: f64, z: f64) -> Self {
        let n = (w * w + x * x + y * y + z * z).sqrt();
        if !n.is_finite() || n < 1e-12 {
            return Self::IDENTITY;
        }
        Quat {
            w: w / n,
            x: x / n,
            y: y / n,
            z: z / n,
        }
    }

    pub fn from_axis_angle(axis: [f64; 3], angle: f64) -> Self {
        let (s, c) = (angle * 0.5).sin_cos();
        Quat::new(c, axis[0] * s, axis[1] * s, axis[2] * s)
    }

    /// Scene rotation from yaw, pitch and roll in degrees.
    ///
    /// Yaw turns the scene counter-clockwise seen from above (a frontal
    /// source moves to the left for +90°), pitch lifts the front upwards and
    /// roll lifts the left side upwards. Applied roll first, then pitch, then
    /// yaw. For head tracking, pass the inverse of the head orientation.
    pub fn from_ypr_degrees(yaw: f64, pitch: f64, roll: f64) -> Self {
        let qz = Quat::from_axis_angle([0.0, 0.0, 1.0], yaw.to_radians());
        let qy = Quat::from_axis_angle([0.0, 1.0, 0.0], -pitch.to_radians());
        let qx = Quat::from_axis_angle([1.0, 0.0, 0.0], roll.to_radians());
        qz.compose(qy).compose(qx)
    }

    /// Hamilton product: `a.compose(b)` applies b first, then a.
    pub fn compose(self, o: Quat) -> Quat {
        Quat::new(
            self.w * o.w - self.x * o.x - self.y * o.y - self.z * o.z,
            self.w * o.x + self.x * o.w + self.y * o.z - self.z * o.y,
            self.w * o.y - self.x * o.z + self.y * o.w + self.z * o.x,
            self.w * o.z + self.x * o.y - self.y * o.x + self.z * o.w,
        )
    }

    pub fn conjugate(self) -> Quat {
        Quat {
            w: self.w,
            x: -self.x,
            y: -self.y,
            z: -self.z,
        }
    }

    /// Spherical linear interpolation along the shortest arc.
    pub fn slerp(self, mut o: Quat, t: f64) -> Quat {
        let mut d = self.w * o.w + self.x * o.x + self.y * o.y + self.z * o.z;
        if d < 0.0 {
            d = -d;
            o = Quat {
                w: -o.w,
                x: -o.x,
                y: -o.y,
                z: -o.z,
            };
        }
        if d > 0.9995 {
            return Quat::new(
                self.w + t * (o.w - self.w),
                self.x + t * (o.x - self.x),
                self.y + t * (o.y - self.y),
                self.z + t * (o.z - self.z),
            );
        }
        let th = d.clamp(-1.0, 1.0).acos();
        let s = th.sin();
        let a = ((1.0 - t) * th).sin() / s;
        let b = (t * th).sin() / s;
        Quat::new(
            a * self.w + b * o.w,
            a * self.x + b * o.x,
            a * self.y + b * o.y,
            a * self.z + b * o.z,
        )
    }

    /// 3×3 rotation matrix acting on (x, y, z) column vectors.
    pub fn matrix(self) -> [[f64; 3]; 3] {
        let Quat { w, x, y, z } = self;
        [
            [
                1.0 - 2.0 * (y * y + z * z),
                2.0 * (x * y - w * z),
                2.0 * (x * z + w * y),
            ],
            [
                2.0 * (x * y + w * z),
                1.0 - 2.0 * (x * x + z * z),
                2.0 * (y * z - w * x),
            ],
            [
                2.0 * (x * z - w * y),
                2.0 * (y * z + w * x),
                1.0 - 2.0 * (x * x + y * y),
            ],
        ]
    }

    pub fn rotate(self, v: [f64; 3]) -> [f64; 3] {
        let m = self.matrix();
        [
            m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
            m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
            m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
        ]
    }

    /// Angle of the rotation from `self` to `o`, radians.
    pub fn angle_to(self, o: Quat) -> f64 {
        let d = (self.w * o.w + self.x * o.x + self.y * o.y + self.z * o.z).abs();
        2.0 * d.clamp(0.0, 1.0).acos()
    }
}

/// Block-diagonal SH rotation matrix, one dense block per degree, stored
/// contiguously: degree n occupies (2n+1)² entries starting at n(2n-1)(2n+1)/3.
#[derive(Debug, Clone)]
pub struct ShRotation {
    order: usize,
    data: Vec<f64>,
}

fn block_offset(n: usize) -> usize {
    // Σ_{l<n} (2l+1)² = n(2n-1)(2n+1)/3
    (n * (2 * n + 1) * (2 * n).saturating_sub(1)) / 3
}

impl ShRotation {
    pub fn identity(order: usize) -> Self {
        let order = order.min(MAX_ORDER);
        let mut r = ShRotation {
            order,
            data: vec![0.0; block_offset(order + 1)],
        };
        for n in 0..=order {
            let d = 2 * n + 1;
            for i in 0..d {
                r.data[block_offset(n) + i * d + i] = 1.0;
            }
        }
        r
    }

    pub fn order(&self) -> usize {
        self.order
    }

    /// Matrix entry of degree `n` at rows/columns m, m' in -n..=n.
    pub fn get(&self, n: usize, m: isize, mp: isize) -> f64 {
        let d = 2 * n + 1;
        let i = (m + n as isize) as usize;
        let j = (mp + n as isize) as usize;
        self.data[block_offset(n) + i * d + j]
    }

    fn set(&mut self, n: usize, m: isize, mp: isize, v: f64) {
        let d = 2 * n + 1;
        let i = (m + n as isize) as usize;
        let j = (mp + n as isize) as usize;
        self.data[block_offset(n) + i * d + j] = v;
    }

    /// Raw storage (for interpolation).
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// Compute the rotation of degree 1..=order from `q` in place (no
    /// allocation once constructed).
    pub fn set_from_quat(&mut self, q: Quat) {
        let r = q.matrix();
        // Band-1 basis functions are proportional to (y, z, x) for m = -1, 0, 1.
        let axis = |m: isize| match m {
            -1 => 1usize,
            0 => 2,
            _ => 0,
        };
        self.set(0, 0, 0, 1.0);
        if self.order == 0 {
            return;
        }
        for m in -1..=1isize {
            for mp in -1..=1isize {
                self.set(1, m, mp, r[axis(m)][axis(mp)]);
            }
        }
        for l in 2..=self.order {
            let li = l as isize;
            for m in -li..=li {
                for n in -li..=li {
                    let v = self.ir_entry(l, m, n);
                    self.set(l, m, n, v);
                }
            }
        }
    }

    pub fn from_quat(order: usize, q: Quat) -> Self {
        let mut r = ShRotation::identity(order);
        r.set_from_quat(q);
        r
    }

    fn r1(&self, i: isize, j: isize) -> f64 {
        self.get(1, i, j)
    }

    fn p(&self, i: isize, l: usize, a: isize, b: isize) -> f64 {
        let li = l as isize;
        let prev = l - 1;
        if b == li {
            self.r1(i, 1) * self.get(prev, a, li - 1) - self.r1(i, -1) * self.get(prev, a, -li + 1)
        } else if b == -li {
            self.r1(i, 1) * self.get(prev, a, -li + 1) + self.r1(i, -1) * self.get(prev, a, li - 1)
        } else {
            self.r1(i, 0) * self.get(prev, a, b)
        }
    }

    fn ir_entry(&self, l: usize, m: isize, n: isize) -> f64 {
        let li = l as isize;
        let lf = l as f64;
        let d0 = if m == 0 { 1.0 } else { 0.0 };
        let denom = if n.abs() == li {
            (2.0 * lf) * (2.0 * lf - 1.0)
        } else {
            ((li + n) * (li - n)) as f64
        };
        let am = m.abs() as f64;
        let u = (((li + m) * (li - m)) as f64 / denom).sqrt();
        let v = 0.5 * ((1.0 + d0) * (lf + am - 1.0) * (lf + am) / denom).sqrt() * (1.0 - 2.0 * d0);
        let w = -0.5 * ((lf - am - 1.0) * (lf - am) / denom).max(0.0).sqrt() * (1.0 - d0);
        let mut out = 0.0;
        if u != 0.0 {
            out += u * self.p(0, l, m, n);
        }
        if v != 0.0 {
            let vv = if m == 0 {
                self.p(1, l, 1, n) + self.p(-1, l, -1, n)
            } else if m > 0 {
                let d1: f64 = if m == 1 { 1.0 } else { 0.0 };
                self.p(1, l, m - 1, n) * (1.0 + d1).sqrt() - self.p(-1, l, -m + 1, n) * (1.0 - d1)
            } else {
                let d1: f64 = if m == -1 { 1.0 } else { 0.0 };
                self.p(1, l, m + 1, n) * (1.0 - d1) + self.p(-1, l, -m - 1, n) * (1.0 + d1).sqrt()
            };
            out += v * vv;
        }
        if w != 0.0 {
            let ww = if m > 0 {
                self.p(1, l, m + 1, n) + self.p(-1, l, -m - 1, n)
            } else {
                self.p(1, l, m - 1, n) - self.p(-1, l, -m + 1, n)
            };
            out += w * ww;
        }
        out
    }

    /// Apply to one frame of ACN coefficients.
    pub fn apply(&self, input: &[f64], output: &mut [f64]) {
        for n in 0..=self.order {
            let d = 2 * n + 1;
            let base = n * n;
            let off = block_offset(n);
            for i in 0..d {
                let mut acc = 0.0;
                for j in 0..d {
                    acc += self.data[off + i * d + j] * input[base + j];
                }
                output[base + i] = acc;
            }
        }
    }
}

/// Streaming rotator for planar ambisonic blocks. Allocation-free after
/// construction; rotation targets are adopted at the next block and reached
/// by its end.
#[derive(Debug, Clone)]
pub struct SceneRotator {
    order: usize,
    current: Quat,
    target: Quat,
    m0: ShRotation,
    m1: ShRotation,
    m0f: Vec<f32>,
    dmf: Vec<f32>,
    frame_in: Vec<f32>,
}

impl SceneRotator {
    pub fn new(order: usize) -> Self {
        let m0 = ShRotation::identity(order);
        let n = m0.data.len();
        SceneRotator {
            order: m0.order,
            current: Quat::IDENTITY,
            target: Quat::IDENTITY,
            m1: m0.clone(),
            m0,
            m0f: vec![0.0; n],
            dmf: vec![0.0; n],
            frame_in: vec![0.0; channels_for_order(order)],
        }
    }

    pub fn order(&self) -> usize {
        self.order
    }

    /// Set the orientation to reach by the end of the next block.
    pub fn set_target(&mut self, q: Quat) {
        self.target = q;
    }

    /// Jump to `q` with no interpolation (for set-up).
    pub fn reset(&mut self, q: Quat) {
        self.current = q;
        self.target = q;
    }

    pub fn is_identity(&self) -> bool {
        self.current.angle_to(Quat::IDENTITY) < 1e-9 && self.target.angle_to(Quat::IDENTITY) < 1e-9
    }

    /// Rotate a planar buffer in place: channel c occupies
    /// `data[c * frames..(c + 1) * frames]`, (order+1)² channels.
    pub fn process(&mut self, data: &mut [f32], frames: usize) {
        let k = channels_for_order(self.order);
        if self.is_identity() || frames == 0 || data.len() < k * frames {
            return;
        }
        let moving = self.current.angle_to(self.target) > 1e-9;
        let mut start = 0;
        while start < frames {
            let len = if moving {
                SUBSTEP.min(frames - start)
            } else {
                frames - start
            };
            let t0 = start as f64 / frames as f64;
            let t1 = (start + len) as f64 / frames as f64;
            self.m0.set_from_quat(self.current.slerp(self.target, t0));
            if moving {
                self.m1.set_from_quat(self.current.slerp(self.target, t1));
            } else {
                self.m1.data.copy_from_slice(&self.m0.data);
            }
            let inv = 1.0 / len as f32;
            for (i, (a, b)) in self.m0.data.iter().zip(&self.m1.data).enumerate() {
                self.m0f[i] = *a as f32;
                self.dmf[i] = (*b - *a) as f32 * inv;
            }
            for s in start..start + len {
                let step = (s - start + 1) as f32;
                for c in 0..k {
                    self.frame_in[c] = data[c * frames + s];
                }
                // Degree 0 is invariant; start at degree 1.
                for n in 1..=self.order {
                    let d = 2 * n + 1;
                    let base = n * n;
                    let off = block_offset(n);
                    for i in 0..d {
                        let mut acc = 0.0f32;
                        for j in 0..d {
                            let e = off + i * d + j;
                            acc += (self.m0f[e] + self.dmf[e] * step) * self.frame_in[base + j];
                        }
                        data[(base + i) * frames + s] = acc;
                    }
                }
            }
            start += len;
        }
        self.current = self.target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sh::{unit_vector, Normalisation, ShEvaluator};

    fn dirs() -> Vec<[f64; 3]> {
        let mut v = Vec::new();
        for i in 0..40 {
            let az = i as f64 * 0.7;
            let el = (i as f64 * 0.37).sin() * 1.4;
            v.push(unit_vector(az, el));
        }
        v
    }

    #[test]
    fn rotated_encoding_matches_encoding_rotated_direction() {
        let order = MAX_ORDER;
        let mut ev = ShEvaluator::new(order);
        for q in [
            Quat::from_ypr_degrees(30.0, 0.0, 0.0),
            Quat::from_ypr_degrees(-75.0, 20.0, 10.0),
            Quat::from_ypr_degrees(123.0, -64.0, 171.0),
            Quat::new(0.3, -0.5, 0.7, 0.2),
        ] {
            let rot = ShRotation::from_quat(order, q);
            for d in dirs() {
                let y = ev.eval_vec(d, Normalisation::Sn3d);
                let mut yr = vec![0.0; y.len()];
                rot.apply(&y, &mut yr);
                let expect = ev.eval_vec(q.rotate(d), Normalisation::Sn3d);
                for (a, b) in yr.iter().zip(&expect) {
                    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn rotation_round_trip_is_identity() {
        let order = MAX_ORDER;
        let q = Quat::from_ypr_degrees(47.0, 33.0, -12.0);
        let r = ShRotation::from_quat(order, q);
        let ri = ShRotation::from_quat(order, q.conjugate());
        let k = channels_for_order(order);
        for c in 0..k {
            let mut e = vec![0.0; k];
            e[c] = 1.0;
            let mut t = vec![0.0; k];
            let mut back = vec![0.0; k];
            r.apply(&e, &mut t);
            ri.apply(&t, &mut back);
            for (i, v) in back.iter().enumerate() {
                let expect = if i == c { 1.0 } else { 0.0 };
                assert!((v - expect).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn yaw_moves_front_to_left() {
        let q = Quat::from_ypr_degrees(90.0, 0.0, 0.0);
        let v = q.rotate([1.0, 0.0, 0.0]);
        assert!((v[1] - 1.0).abs() < 1e-12);
        let q = Quat::from_ypr_degrees(0.0, 90.0, 0.0);
        let v = q.rotate([1.0, 0.0, 0.0]);
        assert!((v[2] - 1.0).abs() < 1e-12);
        let q = Quat::from_ypr_degrees(0.0, 0.0, 90.0);
        let v = q.rotate([0.0, 1.0, 0.0]);
        assert!((v[2] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_quaternion_is_identity() {
        assert_eq!(Quat::new(f64::NAN, 0.0, 0.0, 0.0), Quat::IDENTITY);
        assert_eq!(Quat::new(0.0, 0.0, 0.0, 0.0), Quat::IDENTITY);
    }
}
