//! Binaural decoder design: SH-domain FIR filters from an HRTF set.
//!
//! * `MagLs` (Schörkhuber, Zaunschirm & Höldrich 2018; Zotter & Frank,
//!   *Ambisonics*, §4.11): least squares below an order-dependent cutoff,
//!   magnitude-only fit with phase continuation above it, then the
//!   diffuse-field covariance constraint (a 2×2 Procrustes step per bin) that
//!   restores diffuse-field level and interaural coherence.
//!   By default the perceptually weighted variant in `fit.rs` is used
//!   (relative weighting, ERB-smoothed targets, IPD-constrained phase
//!   retrieval in full to 1.7 kHz, tapering to 1.9 kHz – towards a
//!   saturated 2πf·ITD at orders ≤ 2 –,
//!   a lowered cutoff, refinement towards the final FIR length, Gauss–Newton
//!   reweighting towards the dB error at orders ≤ 3) with a level-only
//!   diffuse-field equalisation instead of the covariance step (which can be
//!   switched on, blended and band-limited).
//! * `Ls`: plain weighted least squares, for comparison.
//! * `Vls`: virtual loudspeakers (mode-matching decoder to a quasi-uniform
//!   set of measured directions), folded into SH filters, for comparison.
//!
//! Filters come out in the AmbiX (ACN/SN3D) input convention, time-aligned
//! with the HRIRs: no delay is added.

mod fit;
mod magls;

use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;

use crate::error::{Result, SpatialError};
use crate::hrtf::HrtfSet;
use crate::linalg::weighted_pinv;
use crate::sh::{check_order, degree_order, max_re_weights, Normalisation, ShEvaluator};

/// Speed of sound, m/s.
pub const SPEED_OF_SOUND: f64 = 343.0;
/// Head radius used for the MagLS cutoff, m.
pub const HEAD_RADIUS: f64 = 0.0875;
/// Perceptual MagLS cutoff relative to N·c/(2π·r), for orders ≤ 3 and
/// above. Just below N·c/(2π·r) the LS fit already loses level on the
/// contralateral side (up to −9 dB at order 5); with the interaural phase
/// kept by the magnitude fit up to 1.7–1.9 kHz, a lower LS band costs no ITD
/// and gains ILD and spectral accuracy. The band above the cutoff has a
/// free common (interaural-mean) phase, though, and when it starts below
/// ~2.2 kHz the skirt of a 1.5 kHz low-pass sees it: the low-passed onset
/// moves by 3–7 samples (`tests/engine.rs` checks ±1 at order 5). Orders
/// ≤ 3 need the low cutoff for their spectral target; from order 4 the
/// higher one meets every target with the onset intact.
pub const PERCEPTUAL_CUTOFF_SCALE: [f64; 2] = [0.5, 0.75];
/// Lowest default perceptual MagLS cutoff, Hz (orders ≥ 2).
pub const PERCEPTUAL_MIN_CUTOFF_HZ: f64 = 700.0;
/// Longest SH filter we will design.
pub const MAX_FILTER_LEN: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderMethod {
    MagLs,
    Ls,
    Vls,
}

impl std::str::FromStr for DecoderMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "magls" => Ok(Self::MagLs),
            "ls" => Ok(Self::Ls),
            "vls" => Ok(Self::Vls),
            other => Err(format!("unknown method '{other}' (magls, ls, vls)")),
        }
    }
}

impl std::fmt::Display for DecoderMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MagLs => "magls",
            Self::Ls => "ls",
            Self::Vls => "vls",
        })
    }
}

#[derive(Debug, Clone)]
pub struct DesignOptions {
    pub method: DecoderMethod,
    pub order: usize,
    /// FIR length of each SH filter, samples. `None`: the HRIR length rounded
    /// up to a multiple of 64, at most 512 at 48 kHz-equivalent.
    pub filter_len: Option<usize>,
    /// MagLS cutoff, Hz. `None`: N·c / (2π·r).
    pub cutoff_hz: Option<f64>,
    /// Diffuse-field covariance constraint (off by default; see `new`).
    pub covariance_constraint: bool,
    /// Strength of the covariance correction, 0..1 (1: the full constraint).
    pub covariance_blend: f64,
    /// Apply the correction only up to here, Hz (fading out over the octave
    /// above); 0: all frequencies.
    pub covariance_max_hz: f64,
    /// max-rE weighting above the cutoff.
    pub max_re: bool,
    /// Tikhonov regularisation, relative to the mean Gram diagonal.
    pub regularisation: f64,
    /// MagLS keeps the measured interaural phase difference up to here, Hz
    /// (0: off). Perceptual MagLS: the IPD weight reaches zero here.
    pub ipd_limit_hz: f64,
    /// Perceptual MagLS: full IPD weight up to here, Hz, then a raised-cosine
    /// taper to `ipd_limit_hz`.
    pub ipd_full_hz: f64,
    /// MagLS variant: `true` for the perceptually weighted fit in `fit.rs`
    /// (relative weighting, ERB-smoothed targets, iterated IPD-constrained
    /// phase retrieval, FIR-length refinement); `false` for textbook MagLS.
    pub perceptual: bool,
    /// Perceptual MagLS: width of the magnitude-target smoothing, ERBs (0: raw bins).
    pub smoothing_erb: f64,
    /// Perceptual MagLS: exponent γ of the fit weights 1/(|H|² + floor)^γ
    /// (0: plain linear LS, 1: relative error ≈ dB error).
    pub weight_exponent: f64,
    /// Perceptual MagLS: weight floor, dB relative to the band's diffuse-field power.
    pub weight_floor_db: f64,
    /// Perceptual MagLS: alternating projections per bin in the forward pass.
    pub iterations: usize,
    /// Perceptual MagLS: FIR-length / magnitude-fit refinement passes.
    pub refinements: usize,
    /// Perceptual MagLS: extrapolation factor of the refinement (fast Griffin–Lim).
    pub momentum: f64,
    /// Perceptual MagLS: extra group delay of the magnitude-fitted band,
    /// samples at 48 kHz. Keeps its symmetric ringing inside the FIR.
    pub hf_extra_delay: f64,
    /// Perceptual MagLS: width of the LS→MagLS crossover (ratio of its edges,
    /// geometrically centred on the cutoff; 1: hard switch).
    pub transition: f64,
    /// Level-only diffuse-field equalisation (per-ear real gain, ERB-smoothed),
    /// applied after the covariance constraint if both are on.
    pub diffuse_level_eq: bool,
    /// Perceptual MagLS: exponent of the iteratively reweighted (towards
    /// least absolute dB error) magnitude fit, 0: off.
    pub irls_exponent: f64,
    /// Perceptual MagLS: error floor of the reweighting, dB.
    pub irls_eps_db: f64,
    /// Perceptual MagLS: Gauss–Newton reweighting towards the dB error.
    pub log_fit: bool,
    /// Perceptual MagLS: reweightings (after the first refinement passes).
    pub reweights: usize,
    /// Perceptual MagLS: steer the IPD towards 2πf·ITD (reference ITD per
    /// direction), saturated at ± this many radians; 0: measured IPD.
    pub ipd_saturation: f64,
    /// Perceptual MagLS: scale of the reference ITD behind those targets.
    pub ipd_gain: f64,
}

impl DesignOptions {
    pub fn new(method: DecoderMethod, order: usize) -> Self {
        let magls = method == DecoderMethod::MagLs;
        // Perceptual MagLS keeps the interaural phase in full up to 1.7 kHz,
        // tapering to none at 1.9 kHz, at every order, so the LS band can
        // stop low (see `cutoff`). The ITD is judged below 1.5 kHz, but a
        // real estimator's low-pass has a skirt: with the phase kept only to
        // 1.5–1.6 kHz, an 8th-order Butterworth let the band above in and
        // order 3 measured 25.9 µs (order 1: 111 µs) against 10.4 µs with
        // an ideal low-pass. Keeping it to 1.7–1.9 kHz holds both (order 3:
        // 10.9 and 13.3 µs; order 1: 55 and 74 µs) for 0.03 dB of order-3
        // ILD and 0.02 dB of spectral error; further (2.4 kHz) the
        // spectral error passes 1 dB. Orders 1–2 cannot wind the IPD past
        // ±π across the sphere: they steer towards 2πf·ITD, saturated below
        // π and with the ITD doubled to pre-compensate the compression of
        // the fit. (Textbook MagLS, `perceptual = false`, keeps the phase
        // to `ipd_limit_hz` too.)
        let (ipd_full_hz, ipd_limit_hz) = if magls { (1700.0, 1900.0) } else { (0.0, 0.0) };
        let (ipd_saturation, ipd_gain) = if magls && order <= 2 {
            (3.0, 2.0)
        } else {
            (0.0, 1.0)
        };
        DesignOptions {
            method,
            order,
            filter_len: None,
            cutoff_hz: None,
            // The 2×2 covariance constraint mixes the ears, which costs up to
            // 1.7 dB of ILD at order 1; the level-only equalisation meets the
            // diffuse-field target without touching interaural cues.
            covariance_constraint: false,
            covariance_blend: 1.0,
            covariance_max_hz: 0.0,
            max_re: false,
            regularisation: 1e-4,
            ipd_limit_hz,
            ipd_full_hz,
            perceptual: true,
            smoothing_erb: 1.0,
            weight_exponent: 1.0,
            weight_floor_db: -20.0,
            iterations: 4,
            refinements: 8,
            momentum: 0.9,
            hf_extra_delay: 32.0,
            transition: 1.0,
            diffuse_level_eq: magls,
            irls_exponent: 0.0,
            irls_eps_db: 0.5,
            // Gains ~0.2 dB ILD at order 1, 0.02 dB spectral at order 3,
            // nothing measurable from order 5, where it would cost ~1 s.
            log_fit: magls && order <= 3,
            reweights: 3,
            ipd_saturation,
            ipd_gain,
        }
    }

    /// MagLS cutoff, Hz: `cutoff_hz`, else f_N = N·c/(2π·r); for the
    /// perceptual variant min(f_N, max(s·f_N, [`PERCEPTUAL_MIN_CUTOFF_HZ`]))
    /// with s from [`PERCEPTUAL_CUTOFF_SCALE`].
    pub fn cutoff(&self) -> f64 {
        self.cutoff_hz.unwrap_or_else(|| {
            let fc =
                self.order as f64 * SPEED_OF_SOUND / (2.0 * std::f64::consts::PI * HEAD_RADIUS);
            if self.method == DecoderMethod::MagLs && self.perceptual {
                let scale = PERCEPTUAL_CUTOFF_SCALE[usize::from(self.order > 3)];
                fc.min((scale * fc).max(PERCEPTUAL_MIN_CUTOFF_HZ))
            } else {
                fc
            }
        })
    }
}

/// SH-domain binaural filters: `left[k]`, `right[k]` for ACN channel k,
/// applied to AmbiX (SN3D) signals and summed.
#[derive(Debug, Clone)]
pub struct ShFilters {
    pub order: usize,
    pub sample_rate: u32,
    pub taps: usize,
    /// True when right[k] = ±left[k] (mirror-symmetric HRTF set): the
    /// renderer then needs only the left set.
    pub symmetric: bool,
    pub left: Vec<Vec<f32>>,
    pub right: Vec<Vec<f32>>,
    pub method: DecoderMethod,
}

impl ShFilters {
    pub fn channels(&self) -> usize {
        self.left.len()
    }

    /// Sign relating the right-ear filter of ACN channel `k` to the left one
    /// for mirror-symmetric sets: sin(mφ) terms (m < 0) flip.
    pub fn mirror_sign(k: usize) -> f32 {
        if degree_order(k).1 < 0 {
            -1.0
        } else {
            1.0
        }
    }
}

/// Per-bin spectra of both ears for every grid direction.
pub(crate) struct Spectra {
    pub nfft: usize,
    pub bins: usize,
    /// [ear][q * bins + bin]
    pub h: [Vec<Complex64>; 2],
}

pub(crate) fn spectra(hrtf: &HrtfSet, nfft: usize) -> Spectra {
    let bins = nfft / 2 + 1;
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(nfft);
    let mut buf = fft.make_input_vec();
    let mut out = fft.make_output_vec();
    let mut h = [
        vec![Complex64::new(0.0, 0.0); hrtf.len() * bins],
        vec![Complex64::new(0.0, 0.0); hrtf.len() * bins],
    ];
    for (ear, irs) in [&hrtf.left, &hrtf.right].into_iter().enumerate() {
        for (q, ir) in irs.iter().enumerate() {
            buf.iter_mut().for_each(|v| *v = 0.0);
            for (b, s) in buf.iter_mut().zip(ir.iter()) {
                *b = *s as f64;
            }
            // Lengths always match the plan; an error here is unreachable.
            let _ = fft.process(&mut buf, &mut out);
            h[ear][q * bins..(q + 1) * bins].copy_from_slice(&out);
        }
    }
    Spectra { nfft, bins, h }
}

/// SH matrix (Q×K, row-major) in N3D for the grid.
pub(crate) fn sh_matrix(dirs: &[[f64; 3]], order: usize) -> Vec<f64> {
    let k = (order + 1) * (order + 1);
    let mut ev = ShEvaluator::new(order);
    let mut y = vec![0.0; dirs.len() * k];
    for (q, d) in dirs.iter().enumerate() {
        ev.eval(*d, Normalisation::N3d, &mut y[q * k..(q + 1) * k]);
    }
    y
}

/// Design SH-domain binaural filters: the filter length, the HRTF
/// spectra, the decoder's SH coefficients per bin (one of the methods, then
/// the optional covariance and diffuse-field steps), and back to taps.
pub fn design(hrtf: &HrtfSet, opts: &DesignOptions) -> Result<ShFilters> {
    let k = check_order(opts.order)?;
    let taps = filter_len(hrtf, opts)?;
    let nfft = (2 * hrtf.taps().max(taps)).next_power_of_two().max(1024);
    let spec = spectra(hrtf, nfft);
    let y = sh_matrix(&hrtf.dirs, opts.order);
    // coeffs[ear][bin * k + c], N3D.
    let mut coeffs = match opts.method {
        DecoderMethod::Vls => vls_coeffs(hrtf, &spec, opts.order)?,
        DecoderMethod::Ls | DecoderMethod::MagLs => {
            fitted_coeffs(hrtf, opts, &spec, &y, nfft, taps)?
        }
    };
    if opts.covariance_constraint && opts.covariance_blend > 0.0 {
        covariance_step(hrtf, opts, &spec, &y, &mut coeffs, nfft);
    }
    if opts.diffuse_level_eq {
        fit::diffuse_level_eq(
            &y,
            &hrtf.weights,
            &spec,
            &mut coeffs,
            k,
            hrtf.sample_rate as f64,
        );
    }
    let (left, right) = to_time_domain(&coeffs, spec.bins, nfft, k, taps)?;
    Ok(ShFilters {
        order: opts.order,
        sample_rate: hrtf.sample_rate,
        taps,
        symmetric: hrtf.symmetric,
        left,
        right,
        method: opts.method,
    })
}

/// The filter length: asked for, or the HRIRs' rounded up to 64 taps and
/// capped at 512 at 48 kHz (scaled with the rate).
fn filter_len(hrtf: &HrtfSet, opts: &DesignOptions) -> Result<usize> {
    let rate_scale = hrtf.sample_rate as f64 / 48_000.0;
    let default_len = ((512.0 * rate_scale).round() as usize).max(64);
    let taps = opts
        .filter_len
        .unwrap_or_else(|| hrtf.taps().div_ceil(64).saturating_mul(64).min(default_len));
    if taps == 0 || taps > MAX_FILTER_LEN {
        return Err(SpatialError::Limit {
            what: "SH filter length",
            value: taps,
            limit: MAX_FILTER_LEN,
        });
    }
    Ok(taps)
}

/// LS, MagLS or perceptual MagLS coefficients, symmetrised and max-rE
/// weighted above the cutoff when asked.
fn fitted_coeffs(
    hrtf: &HrtfSet,
    opts: &DesignOptions,
    spec: &Spectra,
    y: &[f64],
    nfft: usize,
    taps: usize,
) -> Result<[Vec<Complex64>; 2]> {
    let k = (opts.order + 1) * (opts.order + 1);
    let q = hrtf.len();
    let p = weighted_pinv(y, q, k, &hrtf.weights, opts.regularisation)
        .ok_or_else(|| SpatialError::Design("SH matrix is singular on this grid".into()))?;
    let hz = |f: f64| (f * nfft as f64 / hrtf.sample_rate as f64).round() as usize;
    let cutoff_bin = hz(opts.cutoff());
    let mut out = if opts.method == DecoderMethod::Ls {
        [
            magls::ls_fit(&p, spec, 0, q, k),
            magls::ls_fit(&p, spec, 1, q, k),
        ]
    } else if opts.perceptual {
        let signs: Vec<f64> = (0..k).map(|c| ShFilters::mirror_sign(c) as f64).collect();
        let fp = fit_params(hrtf, opts, nfft, taps);
        fit::perceptual_magls(y, &hrtf.weights, spec, k, &signs, &fp).ok_or_else(|| {
            SpatialError::Design("weighted SH matrix is singular on this grid".into())
        })?
    } else {
        let ipd_bin = hz(opts.ipd_limit_hz);
        magls::magls_fit(&p, y, spec, q, k, cutoff_bin, ipd_bin, bulk_delay(hrtf))
    };
    if hrtf.symmetric {
        symmetrise(&mut out, k);
    }
    if opts.max_re {
        let a = max_re_weights(opts.order);
        for ear in &mut out {
            for (i, c) in ear.iter_mut().enumerate() {
                if i / k > cutoff_bin {
                    *c *= a[degree_order(i % k).0];
                }
            }
        }
    }
    Ok(out)
}

/// The perceptual MagLS fit's settings, in bins and samples.
fn fit_params(hrtf: &HrtfSet, opts: &DesignOptions, nfft: usize, taps: usize) -> fit::FitParams {
    let rate_scale = hrtf.sample_rate as f64 / 48_000.0;
    let hz = |f: f64| (f * nfft as f64 / hrtf.sample_rate as f64).round() as usize;
    let fc = opts.cutoff();
    let tr = opts.transition.max(1.0).sqrt();
    fit::FitParams {
        cutoff_bin: hz(fc / tr),
        transition_bin: hz(fc * tr),
        ipd_full_bin: hz(opts.ipd_full_hz.min(opts.ipd_limit_hz)),
        ipd_zero_bin: hz(opts.ipd_limit_hz),
        bulk_delay: bulk_delay(hrtf) + opts.hf_extra_delay * rate_scale,
        iterations: opts.iterations,
        smoothing_erb: opts.smoothing_erb,
        weight_exponent: opts.weight_exponent,
        weight_floor: 10f64.powf(opts.weight_floor_db / 10.0),
        regularisation: opts.regularisation,
        refinements: opts.refinements,
        momentum: opts.momentum,
        taps,
        sample_rate: hrtf.sample_rate as f64,
        symmetric: hrtf.symmetric,
        irls_exponent: opts.irls_exponent,
        irls_eps_db: opts.irls_eps_db,
        log_fit: opts.log_fit,
        reweights: opts.reweights,
        ipd_saturation: opts.ipd_saturation,
        ipd_gain: opts.ipd_gain,
    }
}

/// Blend towards the HRTF set's covariance: fully up to
/// `covariance_max_hz`, then a raised-cosine fade over one octave.
fn covariance_step(
    hrtf: &HrtfSet,
    opts: &DesignOptions,
    spec: &Spectra,
    y: &[f64],
    coeffs: &mut [Vec<Complex64>; 2],
    nfft: usize,
) {
    let k = (opts.order + 1) * (opts.order + 1);
    let bin_hz = hrtf.sample_rate as f64 / nfft as f64;
    let (cov_blend, cov_max_hz) = (opts.covariance_blend, opts.covariance_max_hz);
    let blend = |b: usize| {
        let f = b as f64 * bin_hz;
        if cov_max_hz <= 0.0 || f <= cov_max_hz {
            cov_blend
        } else if f >= 2.0 * cov_max_hz {
            0.0
        } else {
            let x = (f / cov_max_hz).log2();
            cov_blend * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
        }
    };
    magls::covariance_constraint(y, &hrtf.weights, spec, coeffs, k, blend);
    if hrtf.symmetric {
        symmetrise(coeffs, k);
    }
}

/// Arrival time at the centre of the head, in samples: the median over
/// directions of the mean leading-edge onset of both ears (first sample
/// within 20 dB of the peak).
pub fn bulk_delay(hrtf: &HrtfSet) -> f64 {
    let onset = |v: &[f32]| -> f64 {
        let peak = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        v.iter().position(|x| x.abs() >= 0.1 * peak).unwrap_or(0) as f64
    };
    let mut d: Vec<f64> = hrtf
        .left
        .iter()
        .zip(&hrtf.right)
        .map(|(l, r)| 0.5 * (onset(l) + onset(r)))
        .collect();
    d.sort_by(|a, b| a.total_cmp(b));
    d.get(d.len() / 2).copied().unwrap_or(0.0)
}

/// Enforce right = mirror(left) exactly for a mirror-symmetric set, so the
/// renderer can use the two-IFFT symmetric path.
fn symmetrise(c: &mut [Vec<Complex64>; 2], k: usize) {
    for i in 0..c[0].len() {
        let s = ShFilters::mirror_sign(i % k) as f64;
        let l = 0.5 * (c[0][i] + c[1][i] * s);
        c[0][i] = l;
        c[1][i] = l * s;
    }
}

/// Virtual loudspeakers: a quasi-uniform (Fibonacci) set snapped to the
/// nearest measured directions, a mode-matching decoder to them, and their
/// HRTFs summed per SH channel.
fn vls_coeffs(hrtf: &HrtfSet, spec: &Spectra, order: usize) -> Result<[Vec<Complex64>; 2]> {
    let k = (order + 1) * (order + 1);
    let want = (2 * k).max(12);
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    let mut idx: Vec<usize> = (0..want)
        .map(|i| {
            let z = 1.0 - 2.0 * (i as f64 + 0.5) / want as f64;
            let r = (1.0 - z * z).sqrt();
            let phi = golden * i as f64;
            hrtf.nearest([r * phi.cos(), r * phi.sin(), z])
        })
        .collect();
    idx.sort_unstable();
    idx.dedup();
    let dirs: Vec<[f64; 3]> = idx.iter().map(|&i| hrtf.dirs[i]).collect();
    let ys = sh_matrix(&dirs, order);
    let ones = vec![1.0; dirs.len()];
    let p = weighted_pinv(&ys, dirs.len(), k, &ones, 1e-3)
        .ok_or_else(|| SpatialError::Design("virtual loudspeaker set is degenerate".into()))?;
    let bins = spec.bins;
    let mut out = [
        vec![Complex64::new(0.0, 0.0); bins * k],
        vec![Complex64::new(0.0, 0.0); bins * k],
    ];
    for (ear, o) in out.iter_mut().enumerate() {
        for (l, &gi) in idx.iter().enumerate() {
            for c in 0..k {
                // Mode matching: speaker gains g = Ys (YsᵀYs)⁻¹ a, i.e. Pᵀ.
                let d = p[c * dirs.len() + l];
                for b in 0..bins {
                    o[b * k + c] += spec.h[ear][gi * bins + b] * d;
                }
            }
        }
    }
    Ok(out)
}

type Taps = Vec<Vec<f32>>;

/// Window applied when cutting the designed responses to `taps` samples:
/// flat, with a raised-cosine fade over the last taps/8 (at most 64).
pub(crate) fn fir_window(taps: usize) -> Vec<f64> {
    let fade = (taps / 8).clamp(1, 64);
    let mut w = vec![1.0; taps];
    for i in 0..fade.min(taps) {
        w[taps - fade + i] =
            0.5 * (1.0 + (std::f64::consts::PI * (i + 1) as f64 / fade as f64).cos());
    }
    w
}

fn to_time_domain(
    coeffs: &[Vec<Complex64>; 2],
    bins: usize,
    nfft: usize,
    k: usize,
    taps: usize,
) -> Result<(Taps, Taps)> {
    let mut planner = RealFftPlanner::<f64>::new();
    let ifft = planner.plan_fft_inverse(nfft);
    let mut spec = ifft.make_input_vec();
    let mut time = ifft.make_output_vec();
    let win = fir_window(taps);
    let mut ears: [Taps; 2] = [Vec::new(), Vec::new()];
    for (ear, out) in ears.iter_mut().enumerate() {
        for c in 0..k {
            for b in 0..bins {
                spec[b] = coeffs[ear][b * k + c];
            }
            // A real signal needs real DC and Nyquist bins.
            spec[0].im = 0.0;
            spec[bins - 1].im = 0.0;
            ifft.process(&mut spec, &mut time)
                .map_err(|e| SpatialError::Design(e.to_string()))?;
            let (n, _) = degree_order(c);
            let g = ((2 * n + 1) as f64).sqrt() / nfft as f64;
            let f: Vec<f32> = time[..taps]
                .iter()
                .zip(&win)
                .map(|(v, w)| (v * g * w) as f32)
                .collect();
            if f.iter().any(|v| !v.is_finite()) {
                return Err(SpatialError::Design(
                    "non-finite filter coefficients".into(),
                ));
            }
            out.push(f);
        }
    }
    let [l, r] = ears;
    Ok((l, r))
}
