//! Fixed layouts of the renderer, made once in `ParametricRenderer::new`:
//! its bands (and how a band's value spreads over bins), the per-bin
//! phase ramp, and the linear filters' spectra.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::RealToComplex;

use super::{BandState, BINS, COMMON_DELAY, LIN_TAPS, MIN_BAND_BINS, NFFT, PHASE_RAMP_HZ};
use crate::design::ShFilters;
use crate::error::{Result, SpatialError};

/// Bands one ERB wide (at least one bin), covering every bin.
pub(super) fn band_edges(rate: f64) -> Vec<(usize, usize)> {
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

/// [`PHASE_RAMP_HZ`] per bin.
pub(super) fn phase_ramp(rate: f64) -> Vec<f32> {
    let (f0, f1) = PHASE_RAMP_HZ;
    (0..BINS)
        .map(|k| {
            let f = k as f64 * rate / NFFT as f64;
            raised_cosine(((f - f0) / (f1 - f0)).clamp(0.0, 1.0))
        })
        .collect()
}

/// 0 at `t` = 0 rising to 1 at `t` = 1, flat at both ends.
fn raised_cosine(t: f64) -> f32 {
    (0.5 - 0.5 * (std::f64::consts::PI * t).cos()) as f32
}

/// [`COMMON_DELAY`] as a phasor per bin, for the linear filters.
fn common_delay() -> Vec<Complex<f32>> {
    (0..BINS)
        .map(|k| {
            let phase = -std::f64::consts::TAU / NFFT as f64 * (k * COMMON_DELAY) as f64;
            let (s, c) = phase.sin_cos();
            Complex::new(c as f32, s as f32)
        })
        .collect()
}

/// Split real and imaginary parts per ear and channel.
pub(super) type Split = [[Vec<f32>; 4]; 2];

/// The linear filters' spectra with [`COMMON_DELAY`] folded in, split into
/// real and imaginary parts (`[ear][channel]`) so the per-bin sums
/// vectorise.
pub(super) fn split_delayed(lin: &[[Vec<Complex<f32>>; 4]; 2]) -> (Split, Split) {
    let delay = common_delay();
    let (mut re, mut im): (Split, Split) = Default::default();
    for ear in 0..2 {
        for c in 0..4 {
            let l: Vec<Complex<f32>> = lin[ear][c].iter().zip(&delay).map(|(a, d)| a * d).collect();
            re[ear][c] = l.iter().map(|x| x.re).collect();
            im[ear][c] = l.iter().map(|x| x.im).collect();
        }
    }
    (re, im)
}

/// The linear filters' spectra at [`NFFT`], cut to [`LIN_TAPS`] with a
/// raised-cosine fade over the last 64 taps.
pub(super) fn linear_spectra(
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
                    raised_cosine((n - i) as f64 / fade as f64)
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

/// Per bin, a value of each band at its centre bin, moving linearly from
/// one centre to the next (flat below the first and above the last).
pub(super) fn spread(bands: &[BandState], value: impl Fn(&BandState) -> f64, out: &mut [f32]) {
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
