//! Real spherical harmonics, ACN channel numbering, and the normalisation
//! conventions used by the studio's sources (AmbiX = ACN/SN3D, ACN/N3D, FuMa).
//!
//! Convention: x to the front, y to the left, z up; azimuth counter-clockwise
//! from the front, elevation up from the horizontal plane. No Condon–Shortley
//! phase, so the first-order components are proportional to (y, z, x).

use crate::error::{Result, SpatialError};

/// Highest ambisonic order the engine accepts.
pub const MAX_ORDER: usize = 7;

/// Number of ambisonic channels for order `n`: (n+1)².
pub const fn channels_for_order(order: usize) -> usize {
    (order + 1) * (order + 1)
}

/// ACN index of degree `n`, order `m` (-n..=n).
pub const fn acn(n: usize, m: isize) -> usize {
    ((n * n + n) as isize + m) as usize
}

/// Degree `n` and order `m` of an ACN index.
pub fn degree_order(acn: usize) -> (usize, isize) {
    let n = (acn as f64).sqrt().floor() as usize;
    let m = acn as isize - (n * n + n) as isize;
    (n, m)
}

/// Check an order and return the channel count.
pub fn check_order(order: usize) -> Result<usize> {
    if order == 0 || order > MAX_ORDER {
        return Err(SpatialError::UnsupportedOrder {
            order,
            max: MAX_ORDER,
        });
    }
    Ok(channels_for_order(order))
}

/// Normalisation of the real spherical harmonics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalisation {
    /// Schmidt semi-normalised (AmbiX). W has unit gain.
    Sn3d,
    /// Fully normalised: ∫ Y² dΩ = 4π.
    N3d,
}

/// Unit vector from azimuth/elevation in radians.
pub fn unit_vector(azimuth: f64, elevation: f64) -> [f64; 3] {
    let ce = elevation.cos();
    [ce * azimuth.cos(), ce * azimuth.sin(), elevation.sin()]
}

/// Azimuth and elevation (radians) of a vector. Zero vectors map to the front.
pub fn direction_angles(v: [f64; 3]) -> (f64, f64) {
    let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if r <= 0.0 || !r.is_finite() {
        return (0.0, 0.0);
    }
    let el = (v[2] / r).clamp(-1.0, 1.0).asin();
    let az = v[1].atan2(v[0]);
    (az, el)
}

/// Evaluates real spherical harmonics up to a fixed order with no allocation
/// per call: the Legendre table lives in the struct.
#[derive(Debug, Clone)]
pub struct ShEvaluator {
    order: usize,
    /// sqrt((2 - δm0) (n-|m|)!/(n+|m|)!) per (n, |m|), without the (2n+1).
    norm: Vec<f64>,
    legendre: Vec<f64>,
}

impl ShEvaluator {
    pub fn new(order: usize) -> Self {
        let order = order.min(MAX_ORDER);
        let mut norm = vec![0.0; (order + 1) * (order + 1)];
        for n in 0..=order {
            for m in 0..=n {
                let mut ratio = 1.0f64;
                // (n-m)!/(n+m)! computed as a product to stay exact enough.
                for k in (n - m + 1)..=(n + m) {
                    ratio /= k as f64;
                }
                let dm = if m == 0 { 1.0 } else { 2.0 };
                norm[n * (order + 1) + m] = (dm * ratio).sqrt();
            }
        }
        Self {
            order,
            norm,
            legendre: vec![0.0; (order + 1) * (order + 1)],
        }
    }

    pub fn order(&self) -> usize {
        self.order
    }

    /// Fill `out` ((order+1)² values, ACN) for the unit vector `dir`.
    pub fn eval(&mut self, dir: [f64; 3], norm: Normalisation, out: &mut [f64]) {
        let n_max = self.order;
        let stride = n_max + 1;
        let (az, el) = direction_angles(dir);
        let x = el.sin(); // argument of the associated Legendre functions
        let s = el.cos().max(0.0);
        // Associated Legendre P_n^m(x) without Condon–Shortley phase.
        let p = &mut self.legendre;
        p[0] = 1.0;
        for m in 1..=n_max {
            p[m * stride + m] = p[(m - 1) * stride + (m - 1)] * (2 * m - 1) as f64 * s;
        }
        for m in 0..n_max {
            p[(m + 1) * stride + m] = x * (2 * m + 1) as f64 * p[m * stride + m];
        }
        for m in 0..=n_max {
            for n in (m + 2)..=n_max {
                p[n * stride + m] = ((2 * n - 1) as f64 * x * p[(n - 1) * stride + m]
                    - (n + m - 1) as f64 * p[(n - 2) * stride + m])
                    / (n - m) as f64;
            }
        }
        for n in 0..=n_max {
            let deg_gain = match norm {
                Normalisation::Sn3d => 1.0,
                Normalisation::N3d => ((2 * n + 1) as f64).sqrt(),
            };
            for m in -(n as isize)..=(n as isize) {
                let am = m.unsigned_abs();
                let base = self.norm[n * stride + am] * p[n * stride + am] * deg_gain;
                let trig = if m >= 0 {
                    (am as f64 * az).cos()
                } else {
                    (am as f64 * az).sin()
                };
                out[acn(n, m)] = base * trig;
            }
        }
    }

    /// Convenience allocation-returning form.
    pub fn eval_vec(&mut self, dir: [f64; 3], norm: Normalisation) -> Vec<f64> {
        let mut v = vec![0.0; channels_for_order(self.order)];
        self.eval(dir, norm, &mut v);
        v
    }
}

/// Gain that converts a channel of degree `n` from `from` to `to`.
pub fn normalisation_gain(n: usize, from: Normalisation, to: Normalisation) -> f64 {
    let s = ((2 * n + 1) as f64).sqrt();
    match (from, to) {
        (Normalisation::Sn3d, Normalisation::N3d) => s,
        (Normalisation::N3d, Normalisation::Sn3d) => 1.0 / s,
        _ => 1.0,
    }
}

/// Input channel convention of an ambisonic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmbisonicFormat {
    /// ACN order, SN3D normalisation.
    AmbiX,
    /// ACN order, N3D normalisation.
    AcnN3d,
    /// Furse–Malham, first order only: W X Y Z, W at -3 dB.
    FuMa,
}

impl AmbisonicFormat {
    /// For each AmbiX (ACN/SN3D) output channel: (source channel, gain).
    pub fn to_ambix_map(self, order: usize) -> Result<Vec<(usize, f32)>> {
        let ch = check_order(order)?;
        Ok(match self {
            AmbisonicFormat::AmbiX => (0..ch).map(|c| (c, 1.0)).collect(),
            AmbisonicFormat::AcnN3d => (0..ch)
                .map(|c| {
                    let (n, _) = degree_order(c);
                    let g = normalisation_gain(n, Normalisation::N3d, Normalisation::Sn3d);
                    (c, g as f32)
                })
                .collect(),
            AmbisonicFormat::FuMa => {
                if order != 1 {
                    return Err(SpatialError::UnsupportedOrder { order, max: 1 });
                }
                // FuMa W X Y Z -> ACN W Y Z X; FuMa W carries 1/√2.
                vec![(0, std::f32::consts::SQRT_2), (2, 1.0), (3, 1.0), (1, 1.0)]
            }
        })
    }
}

/// Convert interleaved-by-channel planar buffers to AmbiX in place-free form:
/// `input[c]` planar channels, `output[c]` AmbiX planar channels.
pub fn convert_to_ambix(
    format: AmbisonicFormat,
    order: usize,
    input: &[&[f32]],
    output: &mut [Vec<f32>],
) -> Result<()> {
    let map = format.to_ambix_map(order)?;
    if input.len() != map.len() {
        return Err(SpatialError::ChannelMismatch {
            expected: map.len(),
            actual: input.len(),
        });
    }
    for (out, &(src, g)) in output.iter_mut().zip(map.iter()) {
        out.clear();
        out.extend(input[src].iter().map(|s| s * g));
    }
    Ok(())
}

/// max-rE weights per degree (Zotter & Frank, eq. 2.69 approximation):
/// a_n = P_n(cos(137.9° / (N + 1.51))).
pub fn max_re_weights(order: usize) -> Vec<f64> {
    let x = (137.9f64.to_radians() / (order as f64 + 1.51)).cos();
    let mut p = vec![1.0, x];
    for n in 2..=order {
        let v = ((2 * n - 1) as f64 * x * p[n - 1] - (n - 1) as f64 * p[n - 2]) / n as f64;
        p.push(v);
    }
    p.truncate(order + 1);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lebedev-free check: a dense Gauss–Legendre × uniform azimuth product
    /// rule integrates polynomials of degree ≤ 2·order exactly.
    fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut x = vec![0.0; n];
        let mut w = vec![0.0; n];
        for i in 0..n {
            let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            for _ in 0..100 {
                let (mut p0, mut p1) = (1.0, z);
                for k in 2..=n {
                    let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                    p0 = p1;
                    p1 = p2;
                }
                let dp = n as f64 * (z * p1 - p0) / (z * z - 1.0);
                let dz = p1 / dp;
                z -= dz;
                if dz.abs() < 1e-15 {
                    let dp2 = dp;
                    w[i] = 2.0 / ((1.0 - z * z) * dp2 * dp2);
                    break;
                }
            }
            x[i] = z;
        }
        (x, w)
    }

    #[test]
    fn orthonormal_on_quadrature() {
        let order = MAX_ORDER;
        let k = channels_for_order(order);
        let (xs, ws) = gauss_legendre(order + 2);
        let naz = 2 * order + 3;
        let mut gram = vec![0.0; k * k];
        let mut ev = ShEvaluator::new(order);
        let mut y = vec![0.0; k];
        for (x, w) in xs.iter().zip(&ws) {
            let el = x.asin();
            for a in 0..naz {
                let az = 2.0 * std::f64::consts::PI * a as f64 / naz as f64;
                ev.eval(unit_vector(az, el), Normalisation::N3d, &mut y);
                let wq = w * 2.0 * std::f64::consts::PI / naz as f64 / (4.0 * std::f64::consts::PI);
                for i in 0..k {
                    for j in 0..k {
                        gram[i * k + j] += wq * y[i] * y[j];
                    }
                }
            }
        }
        for i in 0..k {
            for j in 0..k {
                let expect = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (gram[i * k + j] - expect).abs() < 1e-10,
                    "gram[{i},{j}] = {}",
                    gram[i * k + j]
                );
            }
        }
    }

    #[test]
    fn first_order_is_y_z_x() {
        let mut ev = ShEvaluator::new(1);
        let y = ev.eval_vec([0.0, 1.0, 0.0], Normalisation::Sn3d);
        assert!((y[0] - 1.0).abs() < 1e-12 && (y[1] - 1.0).abs() < 1e-12);
        assert!(y[2].abs() < 1e-12 && y[3].abs() < 1e-12);
        let y = ev.eval_vec([1.0, 0.0, 0.0], Normalisation::Sn3d);
        assert!((y[3] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn fuma_maps_to_ambix() {
        let map = AmbisonicFormat::FuMa.to_ambix_map(1).unwrap();
        // Plane wave from the left in FuMa: W = 1/√2, X = 0, Y = 1, Z = 0.
        let fuma = [std::f32::consts::FRAC_1_SQRT_2, 0.0, 1.0, 0.0];
        let ambix: Vec<f32> = map.iter().map(|&(s, g)| fuma[s] * g).collect();
        assert!((ambix[0] - 1.0).abs() < 1e-6 && (ambix[1] - 1.0).abs() < 1e-6);
        assert!(AmbisonicFormat::FuMa.to_ambix_map(2).is_err());
    }

    #[test]
    fn n3d_round_trip() {
        for n in 0..=MAX_ORDER {
            let g = normalisation_gain(n, Normalisation::Sn3d, Normalisation::N3d)
                * normalisation_gain(n, Normalisation::N3d, Normalisation::Sn3d);
            assert!((g - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn acn_indexing() {
        for c in 0..64 {
            let (n, m) = degree_order(c);
            assert_eq!(acn(n, m), c);
        }
    }
}
