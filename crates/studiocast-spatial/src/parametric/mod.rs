//! A parametric renderer for first-order ambisonics (AmbiX: ACN, SN3D) to
//! binaural, in the manner of DirAC: an STFT filter bank estimates, per
//! band and frame, the direction of arrival from the active intensity
//! vector and a diffuseness ψ from how much of the energy that vector
//! carries.
//!
//! The output is the linear first-order MagLS rendering, each ear and bin
//! corrected towards the HRTF at the estimated direction, as far as the
//! band is direct. The correction is the ratio G = h / (Q·a) of the set's
//! response h at the direction (each ear's magnitude, interpolated from
//! the SOFA set, and the set's interaural delay) to what the linear
//! filters Q make of a plane wave a from there: its magnitude raised to
//! (1 − ψ)², its phase turned by the share 1 − ψ of the way (a normalised
//! blend, which turns less than the full share when G's phase is near
//! half a turn), a share that fades out below 1 kHz, where first order's
//! phase is already the set's. h carries the phase every direction of the
//! set shares (its measurement chain's), as the linear filters do, so that
//! G compares like with like. A plane wave (ψ = 0) comes out as h, with
//! the set's ITD, not a first-order approximation of it (below 300 Hz with
//! the linear rendering's phase, which is the set's there); a diffuse
//! field (ψ = 1) as the linear rendering, whose design holds the set's
//! diffuse-field coherence.
//!
//! Why not a direct part plus a decorrelated diffuse part (as DirAC): a
//! frame of a diffuse field reaches the ears with its own fluctuations,
//! which the linear rendering keeps; a split renders part of them through
//! the direct part's HRTF instead and, with the parts decorrelated by
//! delays the frame can hold (under 2 ms), adds a comb of their cross
//! terms in narrow bands. Both cost about 0.5 dB of spectral error in a
//! diffuse field (README, Accuracy), which this form does not pay. It is
//! covariance-domain mixing in the sense of Vilkamo et al. (2013),
//! restricted to a per-ear gain on the linear rendering as prototype.
//!
//! Real time and allocation-free: every buffer is made in [`new`]
//! (ParametricRenderer::new). Latency: [`ParametricRenderer::latency`].

mod fastmath;
mod kernels;
mod layout;
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
use crate::simd::Kernel;
use fastmath::fast_sincos;
use kernels::{band_sum, correct};
use layout::{band_edges, linear_spectra, phase_ramp, split_delayed, spread};
use table::{DirectionTable, Neighbours};

/// Analysis window (Hann), samples.
pub const FRAME: usize = 512;
/// Frame advance: half the window, where Hann windows sum to one.
pub const HOP: usize = FRAME / 2;
/// FFT length: the window zero-padded to twice its length, room for the
/// filters' responses (no circular wrap).
pub const NFFT: usize = 2 * FRAME;
const BINS: usize = NFFT / 2 + 1;
/// Taps of the linear filters, cut to fit the padding with the common
/// delay and the correction's spread (512 + 384 + 96 of 1024, 32 left for
/// the spread's causal side). MIT KEMAR's first-order filters hold −43 dB
/// of their energy past 320 taps, and cutting it there cost the diffuse
/// scenes 0.01–0.02 dB of spectral error.
const LIN_TAPS: usize = 384;
/// Delay added to both ears, beyond each ear's own (the HRTF magnitudes,
/// zero-phase but for the set's common phase, spread a little either side
/// of it); the linear filters get it too, so that G compares like with
/// like.
const COMMON_DELAY: usize = 96;
/// Largest correction of the linear rendering's magnitude, either way
/// (18 dB): where Q·a nearly vanishes, G would be unbounded.
const MAX_CORRECTION: f32 = 8.0;
/// Largest power gain of the energy normalisation (6 dB). It only ever
/// raises: what the correction takes from the diffuse part of a mixed band
/// is what it restores. Where the model asks for less than the output has,
/// that is the model's own error (its ψ and direction in a diffuse field);
/// following it down cost the diffuse scenes 0.05 dB of spectral error.
const MAX_NORM: f64 = 4.0;

/// Largest input sample magnitude taken as it is (120 dB over full
/// scale): the band powers of anything larger could overflow `f32`.
const MAX_SAMPLE: f32 = 1e6;

/// A frame this many times the band's running energy is an onset.
const ONSET: f64 = 4.0;
/// The narrowest band, bins (about 190 Hz): fewer leave the diffuseness
/// of a diffuse field too noisy to tell from a source at low frequencies.
const MIN_BAND_BINS: usize = 4;
/// The correction's phase share rises from none to all of 1 − ψ between
/// these frequencies (raised cosine). Below, the linear rendering's phase
/// is already the set's (first order is accurate there: G turns the phase
/// by at most 25° from 140 to 500 Hz, tested), and the model's single
/// delay per ear is not (its slope is fitted over 100–1500 Hz); above,
/// first order's phase departs from the set's and the correction carries
/// the ITD. Measured on the scenes when it came: ITD error with two
/// sources 90° apart 50 → 32 µs, spectral error of one source 0.31 →
/// 0.29 dB.
const PHASE_RAMP_HZ: (f64, f64) = (300.0, 1000.0);

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
    /// follows whichever leads, rather than settling between them. It
    /// lengthens towards [`Self::release_ms`] as the band grows diffuse
    /// (see `analyse`).
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
    /// The same, averaged over [`ParametricOptions::direction_ms`] when
    /// the band is direct, longer as it grows diffuse.
    heading: [f64; 3],
    energy: f64,
    params: BandParams,
    nb: Neighbours,
    /// Each ear's delay at the direction, seconds.
    delay: (f64, f64),
    /// This frame's smoothing constant (attack or release).
    alpha: f64,
    /// Per ear, smoothed over frames: the band's power in the linear
    /// rendering, in the corrected output, and of W through the HRTF at
    /// the direction.
    lin_pow: [f64; 2],
    out_pow: [f64; 2],
    dir_pow: [f64; 2],
    /// The power gain that brings the output to its share (both ears).
    norm: f64,
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
    /// Linear first-order filters with the common delay folded in, split
    /// into real and imaginary parts (`[ear][channel]`) so the per-bin
    /// sums vectorise.
    lin_re: [[Vec<f32>; 4]; 2],
    lin_im: [[Vec<f32>; 4]; 2],
    /// This frame's input spectra, split the same way.
    spec_re: [Vec<f32>; 4],
    spec_im: [Vec<f32>; 4],
    /// This frame's linear rendering per ear.
    amb_re: [Vec<f32>; 2],
    amb_im: [Vec<f32>; 2],
    /// Per ear and bin: the HRTF at the band's direction (h), and the
    /// linear filters' response to a plane wave from there (Q·a).
    h_re: [Vec<f32>; 2],
    h_im: [Vec<f32>; 2],
    qa_re: [Vec<f32>; 2],
    qa_im: [Vec<f32>; 2],
    /// This frame's directness 1 − ψ per bin (the correction's magnitude
    /// share is its square).
    gain_d: Vec<f32>,
    /// The correction's phase share per bin: the directness times
    /// [`Self::phase_ramp`].
    gain_p: Vec<f32>,
    /// Per bin, 0 below [`PHASE_RAMP_HZ`], 1 above, a raised cosine
    /// between.
    phase_ramp: Vec<f32>,
    /// This frame's power gain per bin from [`BandState::norm`].
    norm: Vec<f32>,
    /// Per ear and bin, this frame's power: of the linear rendering, of
    /// the corrected output, and of W through h.
    pow_lin: [Vec<f32>; 2],
    pow_out: [Vec<f32>; 2],
    pow_dir: [Vec<f32>; 2],
    /// Whether the synthesis runs its AVX2 + FMA build (detected once).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    kernel: Kernel,
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
    /// rendering the renderer corrects), as [`crate::design`] makes them.
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
        let (lin_re, lin_im) = split_delayed(&lin);
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
            h_re: std::array::from_fn(|_| flat()),
            h_im: std::array::from_fn(|_| flat()),
            qa_re: std::array::from_fn(|_| flat()),
            qa_im: std::array::from_fn(|_| flat()),
            gain_d: flat(),
            gain_p: flat(),
            phase_ramp: phase_ramp(rate),
            norm: flat(),
            pow_lin: std::array::from_fn(|_| flat()),
            pow_out: std::array::from_fn(|_| flat()),
            pow_dir: std::array::from_fn(|_| flat()),
            kernel: Kernel::detect(),
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
            (b.lin_pow, b.out_pow, b.dir_pow) = ([0.0; 2], [0.0; 2], [0.0; 2]);
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
            // A non-finite sample (a damaged float file) is silence, and
            // an absurd one is held at 120 dB over full scale: once in the
            // smoothed intensity and powers, a NaN (or a power overflowing
            // single precision) would stay there, leaving every band
            // diffuse until a reset.
            for v in &mut self.rotated[..4 * m] {
                *v = if v.is_finite() {
                    v.clamp(-MAX_SAMPLE, MAX_SAMPLE)
                } else {
                    0.0
                };
            }
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
            let mut norms = [0.0f64; 4];
            for k in lo..hi {
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
            b.alpha = a;
            // The direction's average lengthens with the band's
            // diffuseness (last frame's), from `direction_ms` when direct
            // to `release_ms` when diffuse: there a frame's intensity is
            // mostly the field's random net flow, and a short average
            // makes the direction, and the correction with it, wander
            // (the diffuse scenes' ILD error: 1.82 → 1.80 dB at DRR 0).
            // The smoothing constants themselves are interpolated, so the
            // time constant grows faster near ψ = 1 (about 20 ms at ψ = ½,
            // 50 ms at 0.9): a half-diffuse band still follows a source.
            let psi = b.params.diffuseness.clamp(0.0, 1.0);
            let ad = if onset {
                self.alpha.0
            } else {
                self.alpha_dir + (self.alpha.1 - self.alpha_dir) * psi
            };
            for ((s, h), v) in b.intensity.iter_mut().zip(&mut b.heading).zip(i3) {
                *s = a * *s + (1.0 - a) * v;
                *h = ad * *h + (1.0 - ad) * v;
            }
            b.energy = a * b.energy + (1.0 - a) * e;
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

    /// Per bin: the linear rendering, corrected towards the HRTF at the
    /// band's direction as far as the band is direct.
    fn synthesise(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.kernel.is_avx2() {
            // SAFETY: an AVX2 + FMA kernel exists only once the processor
            // was found to have both (`Kernel::detect`), which is all
            // `synthesise_avx2` requires.
            unsafe { self.synthesise_avx2() };
            return;
        }
        self.synthesise_body();
    }

    /// The synthesis on `kernel` (tests: the portable build against the
    /// AVX2 one).
    #[cfg(test)]
    pub(crate) fn set_kernel(&mut self, kernel: Kernel) {
        self.kernel = kernel;
    }

    /// [`Self::synthesise`] compiled for AVX2 and FMA: its loops over bins
    /// vectorise eight bins at a time (the result differs only in
    /// rounding).
    ///
    /// # Safety
    /// The processor must have AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn synthesise_avx2(&mut self) {
        self.synthesise_body();
    }

    #[inline(always)]
    fn synthesise_body(&mut self) {
        self.bin_gains();
        self.linear_part();
        self.responses();
        for ear in 0..2 {
            correct(
                [&self.amb_re[ear], &self.amb_im[ear]],
                [&self.h_re[ear], &self.h_im[ear]],
                [&self.qa_re[ear], &self.qa_im[ear]],
                [&self.gain_d, &self.gain_p],
                &mut self.out_spec[ear],
            );
        }
        self.normalise();
        // A real signal: DC and Nyquist bins are real.
        for s in &mut self.out_spec {
            s[0].im = 0.0;
            s[BINS - 1].im = 0.0;
        }
    }

    /// Per ear and bin, h (the interpolated magnitude with each ear's
    /// delay and the common one) and Q·a at each band's direction.
    #[inline(always)]
    fn responses(&mut self) {
        let t = &self.table;
        let tau0 = COMMON_DELAY as f64 / self.rate;
        let dw = std::f64::consts::TAU * self.rate / NFFT as f64;
        for b in &self.bands {
            let (lo, hi) = b.params.bins;
            // Each ear's delay as a phasor stepped bin by bin.
            let (tl, tr) = (tau0 + b.delay.0, tau0 + b.delay.1);
            let phasor = |tau: f64, k: usize| {
                let (s, c) = fast_sincos(-(k as f64) * dw * tau);
                Complex::new(c as f32, s as f32)
            };
            let [r0, r1, r2] = b.nb.idx.map(|i| i as usize * t.bins);
            let [w0, w1, w2] = b.nb.w;
            let u = b.params.direction;
            // The plane wave's encoding, W Y Z X.
            let a = [1.0, u[1] as f32, u[2] as f32, u[0] as f32];
            for (ear, (tau, mag)) in [(tl, &t.mag_l), (tr, &t.mag_r)].into_iter().enumerate() {
                let (m0, m1, m2) = (
                    &mag[r0 + lo..r0 + hi],
                    &mag[r1 + lo..r1 + hi],
                    &mag[r2 + lo..r2 + hi],
                );
                // Four phasors a bin apart, each stepped four bins at a
                // time: four short chains of products instead of one long
                // one, which the processor overlaps.
                let step = phasor(tau, 1);
                let step2 = step * step;
                let p0 = phasor(tau, lo);
                let mut p = [p0, p0 * step, p0 * step2, p0 * step2 * step];
                let step4 = step2 * step2;
                let (hr, hi_) = (&mut self.h_re[ear][lo..hi], &mut self.h_im[ear][lo..hi]);
                let common = &t.common[lo..hi];
                for j0 in (0..hi - lo).step_by(4) {
                    for (lane, pl) in p.iter_mut().enumerate() {
                        let j = j0 + lane;
                        if j < hi - lo {
                            let m = w0 * m0[j] + w1 * m1[j] + w2 * m2[j];
                            let c = *pl * common[j];
                            hr[j] = c.re * m;
                            hi_[j] = c.im * m;
                        }
                        *pl *= step4;
                    }
                }
                let (qr, qi) = (&mut self.qa_re[ear][lo..hi], &mut self.qa_im[ear][lo..hi]);
                qr.fill(0.0);
                qi.fill(0.0);
                for (ac, (fr, fi)) in a.iter().zip(self.lin_re[ear].iter().zip(&self.lin_im[ear])) {
                    let (fr, fi) = (&fr[lo..hi], &fi[lo..hi]);
                    for j in 0..hi - lo {
                        qr[j] += ac * fr[j];
                        qi[j] += ac * fi[j];
                    }
                }
            }
        }
    }

    /// Each ear's band power to its share, as DirAC's energy model has it:
    /// 1 − ψ of W's power through the HRTF at the direction, ψ of the
    /// linear rendering's. The correction alone misses it where the field
    /// is mixed: it scales the diffuse part too, by |G|^((1−ψ)²) (a source
    /// in a diffuse field at ψ ≈ ½ lost 1 dB). All three powers are
    /// smoothed like the energy, so the gain moves slowly and each frame's
    /// own fluctuations stay the linear rendering's.
    #[inline(always)]
    fn normalise(&mut self) {
        // Per bin first, in whole-array loops that vectorise.
        let w = &self.spec[0];
        for ear in 0..2 {
            let n = BINS;
            let (pl, po, pd) = (
                &mut self.pow_lin[ear][..n],
                &mut self.pow_out[ear][..n],
                &mut self.pow_dir[ear][..n],
            );
            let (hr, hi) = (&self.h_re[ear][..n], &self.h_im[ear][..n]);
            let (ar, ai, out) = (
                &self.amb_re[ear][..n],
                &self.amb_im[ear][..n],
                &self.out_spec[ear][..n],
            );
            for k in 0..n {
                pl[k] = ar[k] * ar[k] + ai[k] * ai[k];
                po[k] = out[k].norm_sqr();
                pd[k] = w[k].norm_sqr() * (hr[k] * hr[k] + hi[k] * hi[k]);
            }
        }
        for b in &mut self.bands {
            let (lo, hi) = b.params.bins;
            let (a, psi) = (b.alpha, b.params.diffuseness);
            for ear in 0..2 {
                let smooth = |s: &mut f64, v: &[f32]| {
                    *s = a * *s + (1.0 - a) * f64::from(band_sum(&v[lo..hi]));
                };
                smooth(&mut b.lin_pow[ear], &self.pow_lin[ear]);
                smooth(&mut b.out_pow[ear], &self.pow_out[ear]);
                smooth(&mut b.dir_pow[ear], &self.pow_dir[ear]);
            }
            // Both ears together: the correction's ILD is what the scenes
            // judge better than the model's (per ear, the diffuse scenes'
            // ILD error rose from 1.78 to 1.83 dB).
            let want: f64 = (0..2)
                .map(|e| (1.0 - psi) * b.dir_pow[e] + psi * b.lin_pow[e])
                .sum();
            let have: f64 = b.out_pow.iter().sum();
            b.norm = if have > 1e-30 && want > 1e-30 {
                (want / have).clamp(1.0, MAX_NORM)
            } else {
                1.0
            };
        }
        spread(&self.bands, |b| b.norm, &mut self.norm);
        for g in self.norm.iter_mut() {
            *g = g.max(0.0).sqrt();
        }
        for ear in 0..2 {
            for (o, g) in self.out_spec[ear].iter_mut().zip(&self.norm) {
                *o *= *g;
            }
        }
    }

    /// Each bin's directness 1 − ψ, moving linearly from one band's centre
    /// to the next: values that stepped at band edges would make a
    /// response too long for the frame's padding (it wraps round, and the
    /// level errs by frame wherever the diffuseness differs from band to
    /// band).
    #[inline(always)]
    fn bin_gains(&mut self) {
        spread(&self.bands, |b| b.params.diffuseness, &mut self.gain_d);
        for d in self.gain_d.iter_mut() {
            *d = 1.0 - d.clamp(0.0, 1.0);
        }
        for ((p, d), r) in self
            .gain_p
            .iter_mut()
            .zip(&self.gain_d)
            .zip(&self.phase_ramp)
        {
            *p = d * r;
        }
    }

    /// The linear rendering of every bin, in split real and imaginary
    /// arrays: straight loops the compiler vectorises.
    #[inline(always)]
    fn linear_part(&mut self) {
        for c in 0..4 {
            for ((r, i), x) in self.spec_re[c]
                .iter_mut()
                .zip(self.spec_im[c].iter_mut())
                .zip(&self.spec[c])
            {
                *r = x.re;
                *i = x.im;
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
