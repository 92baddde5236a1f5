//! Accuracy of a binaural decoder against direct HRIR convolution on every
//! direction of the HRTF grid.
//!
//! * |ΔILD|: mean over 1-ERB bands from 1.5 to 16 kHz of the absolute
//!   difference of interaural level differences.
//! * |ΔITD|: from the peak of the interaural cross-correlation after a
//!   1.5 kHz low-pass, with parabolic sub-sample interpolation: ideal
//!   (brick-wall, lags within ±1.5 ms), or each ear through the magnitude
//!   of an 8th-order Butterworth (zero phase, lags within ±1 ms).
//! * Spectral difference: mean over 1-ERB bands from 0.2 to 16 kHz of the
//!   absolute level difference, averaged over both ears.
//! * Diffuse-field magnitude error: per ear and band, the power average over
//!   directions (quadrature-weighted), mean absolute dB error over bands.
//! * Diffuse-field interaural coherence error: mean absolute difference of
//!   the band-wise diffuse-field coherence.

use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;

use crate::design::ShFilters;
use crate::hrtf::HrtfSet;
use crate::sh::{Normalisation, ShEvaluator};

#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    pub median: f64,
    pub p95: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Accuracy {
    pub directions: usize,
    /// dB
    pub ild: Stat,
    /// µs
    pub itd: Stat,
    /// dB
    pub spectral: Stat,
    /// dB, mean over bands and ears
    pub diffuse_magnitude: f64,
    /// absolute coherence difference, mean over bands
    pub diffuse_coherence: f64,
}

fn erb_number(f: f64) -> f64 {
    21.4 * (1.0 + 0.00437 * f).log10()
}

fn erb_freq(e: f64) -> f64 {
    (10f64.powf(e / 21.4) - 1.0) / 0.00437
}

/// Bins (start, end exclusive) of 1-ERB bands between f_lo and f_hi.
pub fn erb_bands(f_lo: f64, f_hi: f64, nfft: usize, rate: f64) -> Vec<(usize, usize)> {
    let f_hi = f_hi.min(rate / 2.0);
    let (e0, e1) = (erb_number(f_lo), erb_number(f_hi));
    let n = (e1 - e0).floor().max(1.0) as usize;
    let bin = |f: f64| ((f * nfft as f64 / rate).round() as usize).min(nfft / 2);
    let mut bands = Vec::with_capacity(n);
    for i in 0..n {
        let lo = bin(erb_freq(e0 + i as f64));
        let hi = bin(erb_freq(e0 + (i + 1) as f64)).max(lo + 1);
        bands.push((lo, hi));
    }
    bands
}

pub(crate) fn stat(mut v: Vec<f64>) -> Stat {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return Stat::default();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Stat {
        median: at(0.5),
        p95: at(0.95),
    }
}

/// Rendered binaural impulse responses of a plane wave from each grid
/// direction: Σ_k Y_k(θ) B_k.
pub fn rendered_irs(filters: &ShFilters, dirs: &[[f64; 3]]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let k = filters.channels();
    let mut ev = ShEvaluator::new(filters.order);
    let mut y = vec![0.0; k];
    let mut l_out = Vec::with_capacity(dirs.len());
    let mut r_out = Vec::with_capacity(dirs.len());
    for d in dirs {
        ev.eval(*d, Normalisation::Sn3d, &mut y);
        let mut l = vec![0.0f32; filters.taps];
        let mut r = vec![0.0f32; filters.taps];
        for (c, yc) in y.iter().enumerate().take(k) {
            let g = *yc as f32;
            for (o, f) in l.iter_mut().zip(&filters.left[c]) {
                *o += g * f;
            }
            for (o, f) in r.iter_mut().zip(&filters.right[c]) {
                *o += g * f;
            }
        }
        l_out.push(l);
        r_out.push(r);
    }
    (l_out, r_out)
}

/// The 1.5 kHz low-pass applied before the interaural cross-correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItdLowpass {
    /// Ideal (brick-wall). With it a plain LS order-3 decoder on MIT KEMAR
    /// measures 11 µs, close to the published 14 µs for such a decoder, so
    /// this is the setting comparable with the anchors.
    Ideal,
    /// Each ear through an 8th-order Butterworth magnitude, zero phase
    /// (the magnitude once per ear, not a forward-backward pass, which
    /// would square it):
    /// stricter, because the energy above 1.5 kHz that the skirt lets in
    /// (where a MagLS design keeps no interaural phase) leaks into the
    /// correlation, as it does in any real estimator.
    Butterworth8,
}

impl ItdLowpass {
    const CUTOFF_HZ: f64 = 1500.0;

    /// The weight of the cross-spectrum at `f` Hz: the product of the two
    /// ears' low-passes, |H(f)|². For the Butterworth of order 8,
    /// |H|² = 1 / (1 + (f/fc)^16): -3 dB at the cutoff, 48 dB down an
    /// octave above it.
    pub fn cross_weight(self, f: f64) -> f64 {
        match self {
            ItdLowpass::Ideal => f64::from(u8::from(f <= Self::CUTOFF_HZ)),
            ItdLowpass::Butterworth8 => 1.0 / (1.0 + (f / Self::CUTOFF_HZ).powi(16)),
        }
    }

    /// Lags searched, seconds either way. The Butterworth estimator's ±1 ms
    /// is the independent review's; the ideal one keeps the ±1.5 ms its
    /// figures (and their calibration against the anchors) were made with.
    pub fn max_lag_s(self) -> f64 {
        match self {
            ItdLowpass::Ideal => 0.0015,
            ItdLowpass::Butterworth8 => 0.001,
        }
    }
}

struct Analyser {
    itd_filter: ItdLowpass,
    nfft: usize,
    rate: f64,
    fft: std::sync::Arc<dyn realfft::RealToComplex<f64>>,
    ifft: std::sync::Arc<dyn realfft::ComplexToReal<f64>>,
}

impl Analyser {
    fn spectrum(&self, ir: &[f32]) -> Vec<Complex64> {
        let mut buf = vec![0.0; self.nfft];
        for (b, s) in buf.iter_mut().zip(ir) {
            *b = *s as f64;
        }
        let mut out = self.fft.make_output_vec();
        let _ = self.fft.process(&mut buf, &mut out);
        out
    }

    /// ITD in seconds: positive when the left ear leads.
    fn itd(&self, l: &[Complex64], r: &[Complex64]) -> f64 {
        let mut x: Vec<Complex64> = l
            .iter()
            .zip(r)
            .enumerate()
            .map(|(b, (a, c))| {
                let f = b as f64 * self.rate / self.nfft as f64;
                a.conj() * c * self.itd_filter.cross_weight(f)
            })
            .collect();
        x[0].im = 0.0;
        let last = x.len() - 1;
        x[last].im = 0.0;
        let mut cc = vec![0.0; self.nfft];
        let _ = self.ifft.process(&mut x, &mut cc);
        let max_lag = (self.itd_filter.max_lag_s() * self.rate) as isize;
        let at = |lag: isize| cc[lag.rem_euclid(self.nfft as isize) as usize];
        let mut best = 0isize;
        let mut best_v = f64::NEG_INFINITY;
        for lag in -max_lag..=max_lag {
            let v = at(lag);
            if v > best_v {
                best_v = v;
                best = lag;
            }
        }
        let (a, b, c) = (at(best - 1), at(best), at(best + 1));
        let den = a - 2.0 * b + c;
        // A peak clipped at the range's edge is reported at the edge: the
        // parabola would lean on a lag outside the range.
        let frac = if best.abs() == max_lag {
            0.0
        } else if den.abs() > 1e-30 {
            0.5 * (a - c) / den
        } else {
            0.0
        };
        // cc[lag] = Σ l[n] r[n+lag]: a positive lag means the right ear lags.
        (best as f64 + frac.clamp(-0.5, 0.5)) / self.rate
    }
}

fn band_energy(spec: &[Complex64], bands: &[(usize, usize)]) -> Vec<f64> {
    bands
        .iter()
        .map(|&(lo, hi)| {
            spec[lo..hi]
                .iter()
                .map(|c| c.norm_sqr())
                .sum::<f64>()
                .max(1e-30)
        })
        .collect()
}

fn db(x: f64) -> f64 {
    10.0 * x.log10()
}

/// Compare rendered responses with the HRTF set on every grid direction.
pub fn evaluate(hrtf: &HrtfSet, filters: &ShFilters) -> Accuracy {
    evaluate_with(hrtf, filters, ItdLowpass::Ideal)
}

pub fn evaluate_with(hrtf: &HrtfSet, filters: &ShFilters, itd: ItdLowpass) -> Accuracy {
    let (rl, rr) = rendered_irs(filters, &hrtf.dirs);
    evaluate_irs(hrtf, &rl, &rr, itd)
}

/// Compare arbitrary rendered responses (one pair per grid direction).
pub fn evaluate_irs(
    hrtf: &HrtfSet,
    rend_l: &[Vec<f32>],
    rend_r: &[Vec<f32>],
    itd_filter: ItdLowpass,
) -> Accuracy {
    let rate = hrtf.sample_rate as f64;
    let len = hrtf.taps().max(rend_l.first().map_or(0, Vec::len)).max(1);
    let nfft = (2 * len).next_power_of_two().max(4096);
    let mut planner = RealFftPlanner::<f64>::new();
    let an = Analyser {
        itd_filter,
        nfft,
        rate,
        fft: planner.plan_fft_forward(nfft),
        ifft: planner.plan_fft_inverse(nfft),
    };
    let ild_bands = erb_bands(1500.0, 16000.0, nfft, rate);
    let spec_bands = erb_bands(200.0, 16000.0, nfft, rate);
    let nb = spec_bands.len();
    let mut ild = Vec::new();
    let mut itd = Vec::new();
    let mut spectral = Vec::new();
    let mut df = [
        [vec![0.0; nb], vec![0.0; nb]],
        [vec![0.0; nb], vec![0.0; nb]],
    ];
    let mut cross = [
        vec![Complex64::new(0.0, 0.0); nb],
        vec![Complex64::new(0.0, 0.0); nb],
    ];
    for q in 0..hrtf.len() {
        let w = hrtf.weights[q];
        let s = [
            [an.spectrum(&hrtf.left[q]), an.spectrum(&hrtf.right[q])],
            [an.spectrum(&rend_l[q]), an.spectrum(&rend_r[q])],
        ];
        let il = |v: &[Vec<Complex64>; 2]| -> Vec<f64> {
            let el = band_energy(&v[0], &ild_bands);
            let er = band_energy(&v[1], &ild_bands);
            el.iter().zip(&er).map(|(a, b)| db(a / b)).collect()
        };
        let (i0, i1) = (il(&s[0]), il(&s[1]));
        ild.push(i0.iter().zip(&i1).map(|(a, b)| (a - b).abs()).sum::<f64>() / i0.len() as f64);
        itd.push((an.itd(&s[0][0], &s[0][1]) - an.itd(&s[1][0], &s[1][1])).abs() * 1e6);
        let mut sd = 0.0;
        for ear in 0..2 {
            let e0 = band_energy(&s[0][ear], &spec_bands);
            let e1 = band_energy(&s[1][ear], &spec_bands);
            sd += e0
                .iter()
                .zip(&e1)
                .map(|(a, b)| db(b / a).abs())
                .sum::<f64>()
                / nb as f64;
            for (which, e) in [e0, e1].into_iter().enumerate() {
                for (acc, v) in df[which][ear].iter_mut().zip(e) {
                    *acc += w * v;
                }
            }
        }
        spectral.push(sd / 2.0);
        for which in 0..2 {
            for (bi, &(lo, hi)) in spec_bands.iter().enumerate() {
                let c: Complex64 = (lo..hi)
                    .map(|b| s[which][0][b] * s[which][1][b].conj())
                    .sum();
                cross[which][bi] += c * w;
            }
        }
    }
    let mut dfm = 0.0;
    for (reference, rendered) in df[0].iter().zip(&df[1]) {
        dfm += reference
            .iter()
            .zip(rendered)
            .map(|(a, b)| db(b / a).abs())
            .sum::<f64>()
            / nb as f64;
    }
    let coh = |which: usize, b: usize| {
        cross[which][b].norm() / (df[which][0][b] * df[which][1][b]).sqrt().max(1e-30)
    };
    let dfc = (0..nb).map(|b| (coh(0, b) - coh(1, b)).abs()).sum::<f64>() / nb as f64;
    Accuracy {
        directions: hrtf.len(),
        ild: stat(ild),
        itd: stat(itd),
        spectral: stat(spectral),
        diffuse_magnitude: dfm / 2.0,
        diffuse_coherence: dfc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Butterworth weight is the two ears' 8th-order magnitudes
    /// multiplied: -3 dB at 1.5 kHz, 48 dB down an octave above (the
    /// cross-spectrum weighted by 1 / (1 + (f/fc)^8), as the report did
    /// before, is a 4th-order low-pass per ear: only 24 dB down there).
    #[test]
    fn the_butterworth_weight_is_both_ears_of_an_eighth_order_low_pass() {
        let bw = ItdLowpass::Butterworth8;
        assert!((bw.cross_weight(1500.0) - 0.5).abs() < 1e-12);
        let octave_up = 10.0 * bw.cross_weight(3000.0).log10();
        assert!((octave_up - -48.2).abs() < 0.1, "{octave_up} dB");
        let octave_down = 10.0 * bw.cross_weight(750.0).log10();
        assert!(octave_down.abs() < 1e-4, "{octave_down} dB");
        assert_eq!(ItdLowpass::Ideal.cross_weight(1500.0), 1.0);
        assert_eq!(ItdLowpass::Ideal.cross_weight(1501.0), 0.0);
    }

    fn analyser(filter: ItdLowpass) -> Analyser {
        let nfft = 4096;
        let mut planner = RealFftPlanner::<f64>::new();
        Analyser {
            itd_filter: filter,
            nfft,
            rate: 48_000.0,
            fft: planner.plan_fft_forward(nfft),
            ifft: planner.plan_fft_inverse(nfft),
        }
    }

    /// A click at each ear, the right one late by a fraction of a sample:
    /// both estimators find the delay, and neither looks past its range.
    #[test]
    fn both_estimators_find_a_delay_and_keep_to_their_range() {
        // A band-limited click (a windowed sinc) centred at `at` samples.
        let click = |at: f64| -> Vec<f32> {
            (0..512)
                .map(|n| {
                    let x = n as f64 - at;
                    let sinc = if x.abs() < 1e-9 {
                        1.0
                    } else {
                        (std::f64::consts::PI * x * 0.5).sin() / (std::f64::consts::PI * x * 0.5)
                    };
                    let w = (-(x / 40.0).powi(2)).exp();
                    (sinc * w) as f32
                })
                .collect()
        };
        for filter in [ItdLowpass::Ideal, ItdLowpass::Butterworth8] {
            let a = analyser(filter);
            for delay in [0.0, 7.3, -12.6, 30.0, 45.2, -47.0] {
                let (l, r) = (a.spectrum(&click(200.0)), a.spectrum(&click(200.0 + delay)));
                let us = a.itd(&l, &r) * 1e6;
                let want = delay / 48_000.0 * 1e6;
                assert!((us - want).abs() < 2.0, "{filter:?}: {us} µs for {want}");
            }
            // 1.2 ms: inside the ideal estimator's range; the Butterworth
            // one stops at its edge, 1 ms.
            let (l, r) = (a.spectrum(&click(200.0)), a.spectrum(&click(257.6)));
            let us = a.itd(&l, &r) * 1e6;
            match filter {
                ItdLowpass::Ideal => assert!((us - 1200.0).abs() < 2.0, "{us}"),
                ItdLowpass::Butterworth8 => assert!((us - 1000.0).abs() < 1e-6, "{us}"),
            }
        }
    }
}
