//! A parametric renderer for first-order ambisonics (AmbiX: ACN, SN3D) to
//! binaural, in the manner of DirAC: an STFT filter bank estimates, per
//! band and frame, the direction of arrival from the active intensity
//! vector and a diffuseness from how much of the energy that vector
//! carries. The direct part (the omni signal, weighted by √(1−ψ)) is
//! rendered with the HRTF at that direction, interpolated from the SOFA
//! set: each ear's magnitude and the set's interaural delay, so the ITD is
//! the set's, not a first-order approximation of it. The diffuse part is
//! the linear first-order MagLS rendering (whose design holds the set's
//! diffuse-field coherence between the ears) of the residual, the input
//! less the direct part's plane wave, brought to ψ times the power the
//! linear rendering of the whole input has; it is delayed per band by
//! 0.2–1.5 ms after the direct part so that the two neither comb nor let
//! the diffuse part arrive first.
//!
//! Real time and allocation-free: every buffer is made in [`new`]
//! (ParametricRenderer::new). Latency: [`ParametricRenderer::latency`].

mod table;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::design::ShFilters;
use crate::error::{Result, SpatialError};
use crate::hrtf::HrtfSet;
use crate::rotation::{Quat, SceneRotator};
use table::{DirectionTable, Neighbours};

/// Analysis window (Hann), samples.
pub const FRAME: usize = 512;
/// Frame advance: half the window, where Hann windows sum to one.
pub const HOP: usize = FRAME / 2;
/// FFT length: the window zero-padded to twice its length, room for the
/// filters' responses (no circular wrap).
pub const NFFT: usize = 2 * FRAME;
const BINS: usize = NFFT / 2 + 1;
/// Taps of the linear filters used for the diffuse part, and its
/// decorrelation delays after the direct part's common delay: together
/// within the padding with room to spare (512 + 320 + 96 + 72 = 1000 of
/// 1024 at 48 kHz: the delay glides from band to band, and that glide
/// spreads the response a little; at 2 ms, with no room left, the spread
/// wrapped round the frame and a diffuse field lost 0.5 dB). The delays
/// shrink at higher rates, see [`decorrelator`].
const LIN_TAPS: usize = 320;
const DECOR_MS: (f64, f64) = (0.2, 1.5);
/// Delay added to both ears of the direct part, beyond each ear's own
/// (the zero-phase HRTF magnitudes spread a little either side of it).
const COMMON_DELAY: usize = 96;

/// A frame this many times the band's running energy is an onset.
const ONSET: f64 = 4.0;
/// The narrowest band, bins (about 190 Hz): fewer leave the diffuseness
/// of a diffuse field too noisy to tell from a source at low frequencies.
const MIN_BAND_BINS: usize = 4;

/// Time constants of the parameter smoothing.
#[derive(Debug, Clone, Copy)]
pub struct ParametricOptions {
    /// While a band's energy rises (an onset: a piano note, a pluck).
    pub attack_ms: f64,
    /// While it falls: slow enough that the diffuseness does not flutter
    /// (musical noise) in reverberant tails, and that a diffuse field's
    /// net intensity averages out.
    pub release_ms: f64,
    /// The direction's own release: short, so that where two sources
    /// take turns in a band (speech and a piano, say) the direction
    /// follows whichever leads, rather than settling between them.
    pub direction_ms: f64,
}

impl Default for ParametricOptions {
    fn default() -> Self {
        ParametricOptions {
            attack_ms: 5.0,
            release_ms: 80.0,
            direction_ms: 10.0,
        }
    }
}

/// One band's parameters after the latest frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct BandParams {
    /// First and one past the last FFT bin.
    pub bins: (usize, usize),
    /// Direction of arrival (unit vector, x front, y left, z up).
    pub direction: [f64; 3],
    /// 0: one plane wave; 1: fully diffuse.
    pub diffuseness: f64,
    /// Smoothed energy.
    pub energy: f64,
}

#[derive(Clone, Copy, Default)]
struct BandState {
    intensity: [f64; 3],
    /// The real part of the input's covariance (W Y Z X), smoothed with
    /// the energy's constants.
    cov: [[f64; 4]; 4],
    /// How the linear filters turn a covariance into output power (both
    /// ears, over the band): Re Σ Qᴴ Q, fixed.
    gram: [[f64; 4]; 4],
    /// What the diffuse part takes out of each input channel, times W:
    /// the direct part's share of the plane wave at the direction.
    takeout: [f64; 4],
    /// The diffuse part's power gain: what brings the residual to the
    /// diffuse share of the band's energy.
    diffuse_gain: f64,
    /// The same, averaged over [`ParametricOptions::direction_ms`].
    heading: [f64; 3],
    energy: f64,
    params: BandParams,
    nb: Neighbours,
    /// Each ear's delay at the direction, seconds.
    delay: (f64, f64),
}

pub struct ParametricRenderer {
    rate: f64,
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    window: Vec<f32>,
    /// Per input channel, the last FRAME samples (newest last).
    frame: [Vec<f32>; 4],
    fill: usize,
    spec: [Vec<Complex<f32>>; 4],
    out_spec: [Vec<Complex<f32>>; 2],
    time: Vec<f32>,
    acc: [Vec<f32>; 2],
    ready: [Vec<f32>; 2],
    /// Linear first-order filters for the diffuse part with the
    /// decorrelating delays folded in, split into real and imaginary parts
    /// (`[ear][channel]`) so the per-bin sums vectorise.
    lin_re: [[Vec<f32>; 4]; 2],
    lin_im: [[Vec<f32>; 4]; 2],
    /// This frame's input spectra, split the same way.
    spec_re: [Vec<f32>; 4],
    spec_im: [Vec<f32>; 4],
    /// This frame's diffuse-part spectra per ear (before the √ψ gain).
    amb_re: [Vec<f32>; 2],
    amb_im: [Vec<f32>; 2],
    /// This frame's gains of the direct and the diffuse part per bin.
    gain_d: Vec<f32>,
    gain_a: Vec<f32>,
    /// Per bin, [`BandState::takeout`] (W Y Z X), spread like the gains.
    takeout: [Vec<f32>; 4],
    bands: Vec<BandState>,
    table: DirectionTable,
    alpha: (f64, f64),
    alpha_dir: f64,
    rotator: SceneRotator,
    /// Orientation at the start of the next call, and the one to reach by
    /// its end (the rotator is driven slice by slice in between).
    rot_now: Quat,
    rot_target: Quat,
    rotated: Vec<f32>,
}

impl ParametricRenderer {
    /// `linear`: the first-order filters of the same set and rate (the
    /// diffuse part's), as [`crate::design`] makes them.
    pub fn new(hrtf: &HrtfSet, linear: &ShFilters, opts: &ParametricOptions) -> Result<Self> {
        if linear.order != 1 || linear.channels() != 4 {
            return Err(SpatialError::UnsupportedOrder {
                order: linear.order,
                max: 1,
            });
        }
        if linear.sample_rate != hrtf.sample_rate {
            return Err(SpatialError::Design(format!(
                "filters at {} Hz for an HRTF set at {} Hz",
                linear.sample_rate, hrtf.sample_rate
            )));
        }
        let rate = f64::from(hrtf.sample_rate);
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(NFFT);
        let ifft = planner.plan_fft_inverse(NFFT);
        let scratch = fft.get_scratch_len().max(ifft.get_scratch_len());
        let lin = linear_spectra(&fft, linear)?;
        let hop_s = HOP as f64 / rate;
        let alpha = |ms: f64| (-hop_s / (ms.max(0.1) * 1e-3)).exp();
        let bands: Vec<BandState> = band_edges(rate)
            .into_iter()
            .map(|bins| BandState {
                params: BandParams {
                    bins,
                    diffuseness: 1.0,
                    direction: [1.0, 0.0, 0.0],
                    energy: 0.0,
                },
                ..Default::default()
            })
            .collect();
        let mut bands = bands;
        for b in &mut bands {
            b.gram = gram(&lin, b.params.bins);
        }
        let decor = decorrelator(&bands, rate);
        let mut lin_re: [[Vec<f32>; 4]; 2] = Default::default();
        let mut lin_im: [[Vec<f32>; 4]; 2] = Default::default();
        for ear in 0..2 {
            for c in 0..4 {
                let l: Vec<Complex<f32>> =
                    lin[ear][c].iter().zip(&decor).map(|(a, d)| a * d).collect();
                lin_re[ear][c] = l.iter().map(|x| x.re).collect();
                lin_im[ear][c] = l.iter().map(|x| x.im).collect();
            }
        }
        let zeros = || vec![Complex::<f32>::default(); BINS];
        let flat = || vec![0.0f32; BINS];
        Ok(ParametricRenderer {
            rate,
            fft_scratch: vec![Complex::default(); scratch],
            window: (0..FRAME)
                .map(|n| {
                    let x = std::f64::consts::PI * n as f64 / FRAME as f64;
                    (x.sin() * x.sin()) as f32
                })
                .collect(),
            frame: std::array::from_fn(|_| vec![0.0; FRAME]),
            fill: 0,
            spec: std::array::from_fn(|_| zeros()),
            out_spec: std::array::from_fn(|_| zeros()),
            time: vec![0.0; NFFT],
            acc: std::array::from_fn(|_| vec![0.0; NFFT]),
            ready: std::array::from_fn(|_| vec![0.0; HOP]),
            lin_re,
            lin_im,
            spec_re: std::array::from_fn(|_| flat()),
            spec_im: std::array::from_fn(|_| flat()),
            amb_re: std::array::from_fn(|_| flat()),
            amb_im: std::array::from_fn(|_| flat()),
            gain_d: flat(),
            gain_a: flat(),
            takeout: std::array::from_fn(|_| flat()),
            bands,
            table: DirectionTable::new(hrtf, NFFT)?,
            alpha: (alpha(opts.attack_ms), alpha(opts.release_ms)),
            alpha_dir: alpha(opts.direction_ms),
            rotator: SceneRotator::new(1),
            rot_now: Quat::IDENTITY,
            rot_target: Quat::IDENTITY,
            rotated: vec![0.0; 4 * HOP],
            fft,
            ifft,
        })
    }

    /// Added latency, samples: the analysis window and the direct part's
    /// common delay (the linear renderer's filters have their own onset).
    pub fn latency(&self) -> usize {
        FRAME + COMMON_DELAY
    }

    /// The bands' parameters after the latest frame.
    pub fn bands(&self) -> impl Iterator<Item = BandParams> + '_ {
        self.bands.iter().map(|b| b.params)
    }

    /// New scene orientation, reached smoothly by the end of the next call
    /// (applied to the input before analysis).
    pub fn set_rotation(&mut self, q: Quat) {
        self.rot_target = q;
    }

    pub fn reset_rotation(&mut self, q: Quat) {
        self.rotator.reset(q);
        (self.rot_now, self.rot_target) = (q, q);
    }

    /// Forget the signal (a new stream).
    pub fn reset(&mut self) {
        self.frame.iter_mut().for_each(|f| f.fill(0.0));
        self.acc.iter_mut().for_each(|f| f.fill(0.0));
        self.ready.iter_mut().for_each(|f| f.fill(0.0));
        self.fill = 0;
        for b in &mut self.bands {
            b.intensity = [0.0; 3];
            b.heading = [0.0; 3];
            b.energy = 0.0;
            b.cov = [[0.0; 4]; 4];
        }
    }

    /// Render AmbiX first order (4 planar channels of equal length, any
    /// length) to the two ears.
    pub fn process(&mut self, input: &[&[f32]], left: &mut [f32], right: &mut [f32]) -> Result<()> {
        if input.len() != 4 {
            return Err(SpatialError::ChannelMismatch {
                expected: 4,
                actual: input.len(),
            });
        }
        let n = left.len();
        if right.len() != n || input.iter().any(|c| c.len() != n) {
            return Err(SpatialError::BlockMismatch {
                expected: n,
                actual: right
                    .len()
                    .min(input.iter().map(|c| c.len()).min().unwrap_or(0)),
            });
        }
        let mut i = 0;
        while i < n {
            let m = (HOP - self.fill).min(n - i);
            for (c, ch) in input.iter().enumerate() {
                self.rotated[c * m..(c + 1) * m].copy_from_slice(&ch[i..i + m]);
            }
            // The turn spreads over the whole call: each slice ramps to
            // its share of it (one slice must not take it all: a click).
            let share = (i + m) as f64 / n as f64;
            self.rotator
                .set_target(self.rot_now.slerp(self.rot_target, share));
            self.rotator.process(&mut self.rotated[..4 * m], m);
            let at = FRAME - HOP + self.fill;
            for c in 0..4 {
                self.frame[c][at..at + m].copy_from_slice(&self.rotated[c * m..(c + 1) * m]);
            }
            left[i..i + m].copy_from_slice(&self.ready[0][self.fill..self.fill + m]);
            right[i..i + m].copy_from_slice(&self.ready[1][self.fill..self.fill + m]);
            self.fill += m;
            i += m;
            if i == n {
                self.rot_now = self.rot_target;
            }
            if self.fill == HOP {
                self.run_frame()?;
                for f in &mut self.frame {
                    f.copy_within(HOP.., 0);
                }
                self.fill = 0;
            }
        }
        Ok(())
    }

    /// One hop: analyse the window, render it, overlap-add.
    fn run_frame(&mut self) -> Result<()> {
        for c in 0..4 {
            for ((t, x), w) in self.time.iter_mut().zip(&self.frame[c]).zip(&self.window) {
                *t = x * w;
            }
            self.time[FRAME..].fill(0.0);
            self.fft
                .process_with_scratch(&mut self.time, &mut self.spec[c], &mut self.fft_scratch)
                .map_err(|e| SpatialError::Design(e.to_string()))?;
        }
        self.analyse();
        self.synthesise();
        for ear in 0..2 {
            self.ifft
                .process_with_scratch(
                    &mut self.out_spec[ear],
                    &mut self.time,
                    &mut self.fft_scratch,
                )
                .map_err(|e| SpatialError::Design(e.to_string()))?;
            let acc = &mut self.acc[ear];
            let scale = 1.0 / NFFT as f32;
            for (a, t) in acc.iter_mut().zip(&self.time) {
                *a += t * scale;
            }
            self.ready[ear].copy_from_slice(&acc[..HOP]);
            acc.copy_within(HOP.., 0);
            acc[NFFT - HOP..].fill(0.0);
        }
        Ok(())
    }

    /// Per band: intensity and energy of this frame, smoothed; direction,
    /// diffuseness, and the HRTF neighbours of the direction.
    fn analyse(&mut self) {
        let [w, y, z, x] = &self.spec;
        for b in &mut self.bands {
            let (lo, hi) = b.params.bins;
            let (mut i3, mut e) = ([0.0f64; 3], 0.0f64);
            // The products the intensity leaves out, for the covariance.
            let (mut yz, mut yx, mut zx) = (0.0f64, 0.0f64, 0.0f64);
            let mut norms = [0.0f64; 4];
            for k in lo..hi {
                let re = |a: Complex<f32>, b: Complex<f32>| f64::from(a.re * b.re + a.im * b.im);
                yz += re(y[k], z[k]);
                yx += re(y[k], x[k]);
                zx += re(z[k], x[k]);
                norms[0] += f64::from(w[k].norm_sqr());
                norms[1] += f64::from(y[k].norm_sqr());
                norms[2] += f64::from(z[k].norm_sqr());
                norms[3] += f64::from(x[k].norm_sqr());
                let wc = w[k].conj();
                i3[0] += f64::from((wc * x[k]).re);
                i3[1] += f64::from((wc * y[k]).re);
                i3[2] += f64::from((wc * z[k]).re);
            }
            e += 0.5 * norms.iter().sum::<f64>();
            // Only an onset (6 dB over the running energy) takes the fast
            // constant: a steady noisy band rises above its mean every
            // other frame, and averaging that short leaves the intensity
            // of a diffuse field far from zero.
            let onset = e > ONSET * b.energy;
            let a = if onset { self.alpha.0 } else { self.alpha.1 };
            let ad = if onset { self.alpha.0 } else { self.alpha_dir };
            for ((s, h), v) in b.intensity.iter_mut().zip(&mut b.heading).zip(i3) {
                *s = a * *s + (1.0 - a) * v;
                *h = ad * *h + (1.0 - ad) * v;
            }
            b.energy = a * b.energy + (1.0 - a) * e;
            // W Y Z X; the intensity is (x, y, z).
            let frame = [
                [norms[0], i3[1], i3[2], i3[0]],
                [i3[1], norms[1], yz, yx],
                [i3[2], yz, norms[2], zx],
                [i3[0], yx, zx, norms[3]],
            ];
            for (row, f) in b.cov.iter_mut().zip(frame) {
                for (c, v) in row.iter_mut().zip(f) {
                    *c = a * *c + (1.0 - a) * v;
                }
            }
            let norm = b.intensity.iter().map(|v| v * v).sum::<f64>().sqrt();
            let p = &mut b.params;
            p.energy = b.energy;
            let hn = b.heading.iter().map(|v| v * v).sum::<f64>().sqrt();
            if b.energy > 1e-20 && norm > 0.0 && hn > 0.0 {
                p.diffuseness = (1.0 - norm / b.energy).clamp(0.0, 1.0);
                p.direction = b.heading.map(|v| v / hn);
            } else {
                p.diffuseness = 1.0;
            }
            residual(b);
            b.nb = self.table.neighbours(b.params.direction);
            let t = &self.table;
            let at = |d: &[f32]| -> f64 {
                (0..3)
                    .map(|j| f64::from(b.nb.w[j]) * f64::from(d[b.nb.idx[j] as usize]))
                    .sum()
            };
            b.delay = (at(&t.delay_l), at(&t.delay_r));
        }
    }

    /// Per bin: the direct part through the interpolated HRTF, plus the
    /// decorrelated linear rendering of the diffuse part.
    fn synthesise(&mut self) {
        // The gains and take-outs first: the diffuse part uses this
        // frame's.
        self.bin_gains();
        self.diffuse_part();
        let t = &self.table;
        let tau0 = COMMON_DELAY as f64 / self.rate;
        let dw = std::f64::consts::TAU * self.rate / NFFT as f64;
        let [ol, or] = &mut self.out_spec;
        let w = &self.spec[0];
        let ([al, ar], [bl, br]) = (&self.amb_re, &self.amb_im);
        for b in &self.bands {
            let (lo, hi) = b.params.bins;
            // Each ear's delay as a phasor stepped bin by bin.
            let (tl, tr) = (tau0 + b.delay.0, tau0 + b.delay.1);
            let phasor = |tau: f64, k: usize| {
                let (s, c) = (-(k as f64) * dw * tau).sin_cos();
                Complex::new(c as f32, s as f32)
            };
            let (mut pl, mut pr) = (phasor(tl, lo), phasor(tr, lo));
            let (sl, sr) = (phasor(tl, 1), phasor(tr, 1));
            let [r0, r1, r2] = b.nb.idx.map(|i| i as usize * t.bins);
            let [w0, w1, w2] = b.nb.w;
            fn row(m: &[f32], r: usize, (lo, hi): (usize, usize)) -> &[f32] {
                &m[r + lo..r + hi]
            }
            let span = (lo, hi);
            let (l0, l1, l2) = (
                row(&t.mag_l, r0, span),
                row(&t.mag_l, r1, span),
                row(&t.mag_l, r2, span),
            );
            let (q0, q1, q2) = (
                row(&t.mag_r, r0, span),
                row(&t.mag_r, r1, span),
                row(&t.mag_r, r2, span),
            );
            for k in lo..hi {
                let j = k - lo;
                let ml = w0 * l0[j] + w1 * l1[j] + w2 * l2[j];
                let mr = w0 * q0[j] + w1 * q1[j] + w2 * q2[j];
                let (gd, ga) = (self.gain_d[k], self.gain_a[k]);
                let wk = w[k] * gd;
                ol[k] = wk * pl * ml + Complex::new(al[k], bl[k]) * ga;
                or[k] = wk * pr * mr + Complex::new(ar[k], br[k]) * ga;
                pl *= sl;
                pr *= sr;
            }
        }
        // A real signal: DC and Nyquist bins are real.
        for s in [ol, or] {
            s[0].im = 0.0;
            s[BINS - 1].im = 0.0;
        }
    }

    /// Each bin's gains and the diffuse part's take-out, each moving
    /// linearly from one band's centre to the next (ψ as a share of
    /// energy, so the two parts' energies still sum to the band's): values
    /// that stepped at band edges would make a response too long for the
    /// frame's padding (it wraps round, and the level errs by frame
    /// wherever the diffuseness differs from band to band).
    fn bin_gains(&mut self) {
        let bands = &self.bands;
        spread(bands, |b| b.params.diffuseness, &mut self.gain_d);
        spread(bands, |b| b.diffuse_gain, &mut self.gain_a);
        for (c, t) in self.takeout.iter_mut().enumerate() {
            spread(bands, |b| b.takeout[c], t);
        }
        // Then the gains, in a loop the compiler vectorises.
        for (d, a) in self.gain_d.iter_mut().zip(self.gain_a.iter_mut()) {
            *d = (1.0 - d.clamp(0.0, 1.0)).sqrt();
            *a = a.max(0.0).sqrt();
        }
    }

    /// The linear rendering of every bin (decorrelated), in split real and
    /// imaginary arrays: straight loops the compiler vectorises.
    fn diffuse_part(&mut self) {
        // The residual: each channel less its take-out of W.
        let w = &self.spec[0];
        for c in 0..4 {
            for (((r, i), x), (t, w)) in self.spec_re[c]
                .iter_mut()
                .zip(self.spec_im[c].iter_mut())
                .zip(&self.spec[c])
                .zip(self.takeout[c].iter().zip(w))
            {
                *r = x.re - t * w.re;
                *i = x.im - t * w.im;
            }
        }
        for ear in 0..2 {
            let (or, oi) = (&mut self.amb_re[ear], &mut self.amb_im[ear]);
            or.fill(0.0);
            oi.fill(0.0);
            for c in 0..4 {
                let (fr, fi) = (&self.lin_re[ear][c], &self.lin_im[ear][c]);
                let (xr, xi) = (&self.spec_re[c], &self.spec_im[c]);
                // Every slice cut to the same length: no bounds checks in
                // the loop, so it vectorises.
                let n = BINS;
                let (or, oi) = (&mut or[..n], &mut oi[..n]);
                let (fr, fi, xr, xi) = (&fr[..n], &fi[..n], &xr[..n], &xi[..n]);
                for k in 0..n {
                    or[k] += fr[k] * xr[k] - fi[k] * xi[k];
                    oi[k] += fr[k] * xi[k] + fi[k] * xr[k];
                }
            }
        }
    }
}

/// Most the diffuse part's power may be raised to reach its share (6 dB).
const MAX_DIFFUSE_GAIN: f64 = 4.0;

/// The diffuse part renders the residual: the input less the direct
/// part's plane wave (a share 1 − ψ of W along the direction), brought to
/// the power the linear rendering of the whole input would have times ψ
/// (the power through the linear filters, from the band's covariance).
/// Rendering the whole input there instead renders the direct sound a
/// second time, with first order's errors: two sources 30° apart then
/// tied linear first order on ITD.
fn residual(b: &mut BandState) {
    let psi = b.params.diffuseness;
    let u = b.params.direction;
    let a = 1.0 - psi;
    let t = [a, a * u[1], a * u[2], a * u[0]];
    b.takeout = t;
    // x' = x − t·W: R' = R − t·R₀ᵀ − R₀·tᵀ + t·tᵀ·R₀₀.
    let r = &b.cov;
    let (mut full, mut left) = (0.0, 0.0);
    for i in 0..4 {
        for j in 0..4 {
            let g = b.gram[i][j];
            full += g * r[i][j];
            left += g * (r[i][j] - t[i] * r[0][j] - t[j] * r[i][0] + t[i] * t[j] * r[0][0]);
        }
    }
    let want = psi * full;
    b.diffuse_gain = if want <= 0.0 {
        0.0
    } else {
        (want / left.max(1e-30)).min(MAX_DIFFUSE_GAIN)
    };
}

/// Re Σ Qᴴ Q over a band's bins and both ears: a covariance R of the input
/// comes out of the linear filters with power Σᵢⱼ gramᵢⱼ Rᵢⱼ.
fn gram(lin: &[[Vec<Complex<f32>>; 4]; 2], (lo, hi): (usize, usize)) -> [[f64; 4]; 4] {
    let mut g = [[0.0; 4]; 4];
    for ear in lin {
        for (i, row) in g.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let (a, b) = (&ear[i][lo..hi], &ear[j][lo..hi]);
                *v += a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| f64::from((x.conj() * y).re))
                    .sum::<f64>();
            }
        }
    }
    let n = (hi - lo).max(1) as f64;
    g.map(|row| row.map(|v| v / n))
}

/// Per bin, a value of each band at its centre bin, moving linearly from
/// one centre to the next (flat below the first and above the last).
fn spread(bands: &[BandState], value: impl Fn(&BandState) -> f64, out: &mut [f32]) {
    let mut k = 0usize;
    let mut prev: Option<(f32, f32)> = None;
    for b in bands {
        let c = 0.5 * (b.params.bins.0 + b.params.bins.1 - 1) as f32;
        let p = value(b) as f32;
        let (c0, p0, slope) = match prev {
            Some((c0, p0)) => (c0, p0, (p - p0) / (c - c0)),
            None => (c, p, 0.0),
        };
        while k < out.len() && k as f32 <= c {
            out[k] = p0 + slope * (k as f32 - c0);
            k += 1;
        }
        prev = Some((c, p));
    }
    let last = prev.map_or(0.0, |(_, p)| p);
    out[k..].iter_mut().for_each(|v| *v = last);
}

/// Left and right impulse responses, one pair per direction.
pub type EarResponses = (Vec<Vec<f32>>, Vec<Vec<f32>>);

impl ParametricRenderer {
    /// The response to a click from each of `dirs` (a plane wave: the
    /// analysis finds its direction exactly and no diffuseness), `len`
    /// samples from [`COMMON_DELAY`] before the direct part's centre: what
    /// the accuracy tables evaluate. Allocates; not for the audio path.
    pub fn plane_wave_irs(&mut self, dirs: &[[f64; 3]], len: usize) -> Result<EarResponses> {
        let n = FRAME + len;
        let (mut ls, mut rs) = (
            Vec::with_capacity(dirs.len()),
            Vec::with_capacity(dirs.len()),
        );
        let mut foa: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0.0; n]);
        let (mut l, mut r) = (vec![0.0; n], vec![0.0; n]);
        for u in dirs {
            self.reset();
            for (c, g) in [1.0, u[1], u[2], u[0]].into_iter().enumerate() {
                foa[c].fill(0.0);
                foa[c][0] = g as f32;
            }
            let ins: [&[f32]; 4] = std::array::from_fn(|c| foa[c].as_slice());
            self.process(&ins, &mut l, &mut r)?;
            ls.push(l[FRAME..].to_vec());
            rs.push(r[FRAME..].to_vec());
        }
        Ok((ls, rs))
    }
}

/// Bands one ERB wide (at least one bin), covering every bin.
fn band_edges(rate: f64) -> Vec<(usize, usize)> {
    let erb = |f: f64| 21.4 * (1.0 + 0.00437 * f).log10();
    let mut out = Vec::new();
    let mut lo = 0;
    for k in 1..=BINS {
        let f = |b: usize| b as f64 * rate / NFFT as f64;
        if k == BINS || (erb(f(k)) - erb(f(lo)) >= 1.0 && k - lo >= MIN_BAND_BINS) {
            out.push((lo, k));
            lo = k;
        }
    }
    out
}

/// A pure delay per band, [`COMMON_DELAY`] plus [`DECOR_MS`] (a fixed sequence: the
/// same on every run), the same for both ears so the diffuse part keeps
/// the linear rendering's interaural coherence.
fn decorrelator(bands: &[BandState], rate: f64) -> Vec<Complex<f32>> {
    let golden = 0.618_033_988_749_895f64;
    // After the direct part's common delay, so the diffuse part never
    // arrives first (nor within 0.2 ms of it, where the two would comb).
    // The range is in ms but the padding is in samples: above 48 kHz the
    // longest delay is what still fits (1 ms at 96 kHz), so the diffuse
    // part never wraps round the frame.
    let room = (NFFT - FRAME - LIN_TAPS - COMMON_DELAY) as f64 / rate;
    let (lo, hi) = (DECOR_MS.0 * 1e-3, (DECOR_MS.1 * 1e-3).min(room));
    // One delay (samples) per band, at its centre bin.
    let knots: Vec<(f64, f64)> = bands
        .iter()
        .enumerate()
        .map(|(n, b)| {
            let frac = (n as f64 * golden).fract();
            let d = COMMON_DELAY as f64 / rate + lo + frac * (hi - lo).max(0.0);
            let (b0, b1) = b.params.bins;
            (0.5 * (b0 + b1 - 1) as f64, d * rate)
        })
        .collect();
    // The delay moves linearly from one band's centre to the next, and
    // the phase is its running integral: a delay that jumped at band edges
    // would be a response too long for the frame's padding (it wraps, and
    // the diffuse part's level errs by frame).
    let delay_at = |k: f64| -> f64 {
        match knots.iter().position(|&(c, _)| c >= k) {
            None => knots.last().map_or(0.0, |x| x.1),
            Some(0) => knots[0].1,
            Some(i) => {
                let ((c0, d0), (c1, d1)) = (knots[i - 1], knots[i]);
                d0 + (d1 - d0) * (k - c0) / (c1 - c0).max(1e-9)
            }
        }
    };
    let mut out = vec![Complex::default(); BINS];
    let mut phase = 0.0f64;
    for (k, o) in out.iter_mut().enumerate() {
        if k > 0 {
            phase -= std::f64::consts::TAU / NFFT as f64 * delay_at(k as f64 - 0.5);
        }
        let (s, c) = phase.sin_cos();
        *o = Complex::new(c as f32, s as f32);
    }
    out
}

/// The linear filters' spectra at [`NFFT`], cut to [`LIN_TAPS`] with a
/// raised-cosine fade over the last 64 taps.
fn linear_spectra(
    fft: &Arc<dyn RealToComplex<f32>>,
    f: &ShFilters,
) -> Result<[[Vec<Complex<f32>>; 4]; 2]> {
    let fade = 64usize;
    let mut out: [[Vec<Complex<f32>>; 4]; 2] =
        std::array::from_fn(|_| std::array::from_fn(|_| vec![Complex::default(); BINS]));
    let mut buf = vec![0.0f32; NFFT];
    for (ear, set) in [&f.left, &f.right].into_iter().enumerate() {
        for (c, ir) in set.iter().enumerate().take(4) {
            buf.fill(0.0);
            let n = ir.len().min(LIN_TAPS);
            for (i, (b, x)) in buf.iter_mut().zip(ir).take(n).enumerate() {
                let g = if i + fade >= n {
                    let t = (n - i) as f64 / fade as f64;
                    (0.5 - 0.5 * (std::f64::consts::PI * t).cos()) as f32
                } else {
                    1.0
                };
                *b = x * g;
            }
            fft.process(&mut buf, &mut out[ear][c])
                .map_err(|e| SpatialError::Design(e.to_string()))?;
        }
    }
    Ok(out)
}
