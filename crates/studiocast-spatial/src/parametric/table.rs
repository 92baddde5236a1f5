//! The HRTF set prepared for rendering at any direction: per grid direction
//! the magnitude of each ear (lightly smoothed across frequency, so its
//! zero-phase response stays short) and the interaural delay, the phase
//! every direction shares, and a lookup from any direction to its three
//! nearest grid directions.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

use crate::error::{Result, SpatialError};
use crate::hrtf::HrtfSet;

/// Lookup grid step, degrees.
const STEP_DEG: f64 = 2.0;
const AZ_CELLS: usize = (360.0 / STEP_DEG) as usize;
const EL_CELLS: usize = (180.0 / STEP_DEG) as usize + 1;
/// A direction this close to a grid direction (radians) takes it alone.
const SNAP_RAD: f64 = 0.5 * std::f64::consts::PI / 180.0;
/// The interaural delay is the slope of the interaural phase over this band
/// (where the phase carries it: below 1.5 kHz).
const ITD_BAND_HZ: (f64, f64) = (100.0, 1500.0);

/// Up to three grid directions and their weights (summing to 1).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Neighbours {
    pub(crate) idx: [u32; 3],
    pub(crate) w: [f32; 3],
}

pub(crate) struct DirectionTable {
    pub(crate) bins: usize,
    /// `dirs × bins`, direction-major.
    pub(crate) mag_l: Vec<f32>,
    pub(crate) mag_r: Vec<f32>,
    /// Each ear's delay, seconds: the slope of its phase below 1.5 kHz
    /// (the response's arrival, and between the ears the ITD).
    pub(crate) delay_l: Vec<f32>,
    pub(crate) delay_r: Vec<f32>,
    /// Per bin, the set's phase beyond each ear's delay that every
    /// direction shares (a unit phasor; blended towards none where the
    /// directions stop agreeing on it, above about 3 kHz): the measurement
    /// chain's own response. MIT KEMAR's is about half a turn below 300 Hz (its
    /// loudspeaker's high-pass), which the linear filters, fitted to the
    /// measured responses, carry. Without it, h and Q·a differed by that
    /// half turn, and the correction turned the direct sound against the
    /// rest of a mixed band (the diffuse scenes' low bands lost up to
    /// 0.5 dB of spectral error).
    pub(crate) common: Vec<Complex<f32>>,
    lookup: Vec<Neighbours>,
}

impl DirectionTable {
    pub(crate) fn new(hrtf: &HrtfSet, nfft: usize) -> Result<Self> {
        if hrtf.is_empty() || hrtf.taps() > nfft {
            return Err(SpatialError::BadHrtf(format!(
                "{} taps: the parametric renderer takes impulse responses of at most {nfft}",
                hrtf.taps()
            )));
        }
        let bins = nfft / 2 + 1;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(nfft);
        let mut buf = vec![0.0f64; nfft];
        let mut spec_l = vec![Complex::default(); bins];
        let mut spec_r = vec![Complex::default(); bins];
        let n = hrtf.len();
        let (mut mag_l, mut mag_r) = (Vec::with_capacity(n * bins), Vec::with_capacity(n * bins));
        let (mut delay_l, mut delay_r) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let df = hrtf.sample_rate as f64 / nfft as f64;
        let mut common = vec![Complex::<f64>::default(); bins];
        let mut total = vec![0.0f64; bins];
        for i in 0..n {
            spectrum(&fft, &hrtf.left[i], &mut buf, &mut spec_l)?;
            spectrum(&fft, &hrtf.right[i], &mut buf, &mut spec_r)?;
            mag_l.extend(smoothed_magnitude(&spec_l));
            mag_r.extend(smoothed_magnitude(&spec_r));
            // The arrival from each ear's own phase, the difference from
            // the interaural phase (each ear's phase carries its
            // minimum-phase part too, which spoils the difference).
            let mean = 0.5 * (phase_delay(&spec_l, df) + phase_delay(&spec_r, df));
            let cross: Vec<Complex<f64>> = spec_r
                .iter()
                .zip(&spec_l)
                .map(|(r, l)| r * l.conj())
                .collect();
            let itd = phase_delay(&cross, df);
            let (tl, tr) = (mean - 0.5 * itd, mean + 0.5 * itd);
            delay_l.push(tl as f32);
            delay_r.push(tr as f32);
            add_undelayed(&mut common, &mut total, &spec_l, tl, df);
            add_undelayed(&mut common, &mut total, &spec_r, tr, df);
        }
        let common = common
            .iter()
            .zip(&total)
            .map(|(c, t)| shared_phase(*c, *t))
            .collect();
        Ok(DirectionTable {
            bins,
            mag_l,
            mag_r,
            delay_l,
            delay_r,
            common,
            lookup: build_lookup(&hrtf.dirs),
        })
    }

    /// The grid directions around unit vector `u` (x front, y left, z up).
    pub(crate) fn neighbours(&self, u: [f64; 3]) -> Neighbours {
        let az = u[1].atan2(u[0]).to_degrees().rem_euclid(360.0);
        let el = u[2].clamp(-1.0, 1.0).asin().to_degrees();
        let a = ((az / STEP_DEG).round() as usize) % AZ_CELLS;
        let e = (((el + 90.0) / STEP_DEG).round() as usize).min(EL_CELLS - 1);
        self.lookup[e * AZ_CELLS + a]
    }
}

fn spectrum(
    fft: &Arc<dyn realfft::RealToComplex<f64>>,
    ir: &[f32],
    buf: &mut [f64],
    out: &mut [Complex<f64>],
) -> Result<()> {
    buf.fill(0.0);
    for (b, x) in buf.iter_mut().zip(ir) {
        *b = f64::from(*x);
    }
    fft.process(buf, out)
        .map_err(|e| SpatialError::Design(e.to_string()))
}

/// Adds to `acc` the response `spec` with its delay `tau` (s) taken out,
/// and to `total` its magnitude: summed over every direction and ear (the
/// louder weighing more), what remains in `acc` is the phase they share.
fn add_undelayed(
    acc: &mut [Complex<f64>],
    total: &mut [f64],
    spec: &[Complex<f64>],
    tau: f64,
    df: f64,
) {
    for (k, ((a, t), h)) in acc.iter_mut().zip(total.iter_mut()).zip(spec).enumerate() {
        let w = std::f64::consts::TAU * k as f64 * df;
        *a += h * Complex::from_polar(1.0, w * tau);
        *t += h.norm();
    }
}

/// One bin's shared phase from the sum `c` of the undelayed responses and
/// the sum `total` of their magnitudes: the phase of `c`, as far as the
/// responses agree on it (|c| / total, their coherence), blended towards
/// none as they stop agreeing. MIT KEMAR's agree to 0.98 up to 2 kHz, 0.82
/// at 3 kHz, 0.56 at 4 kHz and 0.1–0.3 above 5 kHz, where the phase of `c`
/// is a different accident in every bin, and taking it whole would give
/// the correction a response spread over the frame. (A straight blend of
/// the phasors: where the phase nears half a turn and the agreement one
/// half, it keeps or drops the phase more abruptly than a blend of angles
/// would; those are bins where the directions disagree anyway.)
fn shared_phase(c: Complex<f64>, total: f64) -> Complex<f32> {
    let m = c.norm();
    if m <= 0.0 || total <= 0.0 {
        return Complex::new(1.0, 0.0);
    }
    let rho = (m / total).min(1.0);
    let v = Complex::new(1.0 - rho, 0.0) + c / total;
    let n = v.norm();
    if n < 1e-9 {
        return Complex::new(1.0, 0.0);
    }
    Complex::new((v.re / n) as f32, (v.im / n) as f32)
}

/// Magnitude averaged over ±2 bins (about ±100 Hz at 48 kHz and 1024
/// points): the fine ripple of a measured response would otherwise give a
/// zero-phase response long enough to wrap around the frame.
fn smoothed_magnitude(spec: &[Complex<f64>]) -> Vec<f32> {
    let m: Vec<f64> = spec.iter().map(|c| c.norm()).collect();
    (0..m.len())
        .map(|b| {
            let lo = b.saturating_sub(2);
            let hi = (b + 2).min(m.len() - 1);
            // Averaged in power, so the energy is kept.
            let p: f64 = m[lo..=hi].iter().map(|x| x * x).sum::<f64>() / (hi - lo + 1) as f64;
            p.sqrt() as f32
        })
        .collect()
}

/// Least-squares slope (through the origin) of the unwrapped phase over
/// [`ITD_BAND_HZ`], as a delay: between the two ears, what a
/// cross-correlation of them below 1.5 kHz finds.
fn phase_delay(h: &[Complex<f64>], df: f64) -> f64 {
    let (mut phase, mut prev) = (0.0f64, 0.0f64);
    let (mut num, mut den) = (0.0, 0.0);
    for (b, c) in h.iter().enumerate().skip(1) {
        let f = b as f64 * df;
        if f > ITD_BAND_HZ.1 {
            break;
        }
        let p = c.arg();
        let mut d = p - prev;
        d -= (d / std::f64::consts::TAU).round() * std::f64::consts::TAU;
        phase += d;
        prev = p;
        if f >= ITD_BAND_HZ.0 {
            // (For the cross-spectrum, the geometric mean of the ears.)
            let w = c.norm().sqrt();
            num += w * f * phase;
            den += w * f * f;
        }
    }
    if den > 0.0 {
        -num / (std::f64::consts::TAU * den)
    } else {
        0.0
    }
}

/// For every cell of a 2° azimuth–elevation grid, the three nearest grid
/// directions weighted by inverse angle (one alone when within 0.5°).
fn build_lookup(dirs: &[[f64; 3]]) -> Vec<Neighbours> {
    let mut out = Vec::with_capacity(AZ_CELLS * EL_CELLS);
    for e in 0..EL_CELLS {
        let el = (e as f64 * STEP_DEG - 90.0).to_radians();
        for a in 0..AZ_CELLS {
            let az = (a as f64 * STEP_DEG).to_radians();
            let u = [el.cos() * az.cos(), el.cos() * az.sin(), el.sin()];
            out.push(nearest_three(dirs, u));
        }
    }
    out
}

fn nearest_three(dirs: &[[f64; 3]], u: [f64; 3]) -> Neighbours {
    let mut best = [(f64::NEG_INFINITY, 0usize); 3];
    for (i, d) in dirs.iter().enumerate() {
        let dot = d[0] * u[0] + d[1] * u[1] + d[2] * u[2];
        if dot > best[2].0 {
            best[2] = (dot, i);
            best.sort_by(|x, y| y.0.total_cmp(&x.0));
        }
    }
    let angle = |dot: f64| dot.clamp(-1.0, 1.0).acos();
    let mut n = Neighbours::default();
    if angle(best[0].0) < SNAP_RAD || dirs.len() < 3 {
        n.idx = [best[0].1 as u32; 3];
        n.w = [1.0, 0.0, 0.0];
        return n;
    }
    let inv: Vec<f64> = best
        .iter()
        .map(|(d, _)| 1.0 / angle(*d).max(1e-6))
        .collect();
    let sum: f64 = inv.iter().sum();
    for k in 0..3 {
        n.idx[k] = best[k].1 as u32;
        n.w[k] = (inv[k] / sum) as f32;
    }
    n
}
