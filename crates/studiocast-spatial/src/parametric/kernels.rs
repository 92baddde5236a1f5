//! The per-bin loops of the synthesis: whole-array arithmetic without
//! branches or library calls, so that the compiler vectorises them (with
//! AVX2 and FMA inside `ParametricRenderer::synthesise_avx2`).

use realfft::num_complex::Complex;

use super::fastmath::{fast_exp2, fast_log2};
use super::MAX_CORRECTION;

/// One ear's output: the linear rendering `lin` corrected by G = h/(Q·a)
/// (see the module's notes). `share`: per bin, the directness 1 − ψ (whose
/// square is the share of G's magnitude, in dB) and the share of G's
/// phase (the directness, faded out below 1 kHz). Branch-free
/// arithmetic over whole arrays, so the compiler vectorises it.
#[inline(always)]
pub(super) fn correct(
    lin: [&[f32]; 2],
    h: [&[f32]; 2],
    qa: [&[f32]; 2],
    share: [&[f32]; 2],
    out: &mut [Complex<f32>],
) {
    let n = out.len();
    let (lr, li, hr, hi, qr, qi, d, dp) = (
        &lin[0][..n],
        &lin[1][..n],
        &h[0][..n],
        &h[1][..n],
        &qa[0][..n],
        &qa[1][..n],
        &share[0][..n],
        &share[1][..n],
    );
    let (lo, hi_lim) = (
        1.0 / (MAX_CORRECTION * MAX_CORRECTION),
        MAX_CORRECTION * MAX_CORRECTION,
    );
    for k in 0..n {
        // G = h / (Q·a): its phase is that of h · conj(Q·a), its squared
        // magnitude |h|² / |Q·a|².
        let (pr, pi) = (hr[k] * qr[k] + hi[k] * qi[k], hi[k] * qr[k] - hr[k] * qi[k]);
        let h2 = (hr[k] * hr[k] + hi[k] * hi[k]).max(1e-30);
        let q2 = (qr[k] * qr[k] + qi[k] * qi[k]).max(1e-30);
        let l2 = fast_log2((h2 / q2).clamp(lo, hi_lim));
        // |G|^((1−ψ)²): the magnitude's share, geometric (in dB).
        let e = d[k];
        let mag = fast_exp2(0.5 * e * e * l2);
        // The phase: the unit phasor blended from 1 towards G's by its
        // share, then normalised (with the magnitude in the same step).
        // Where the blend vanishes (G's phase half a turn and the share
        // one half), no turn: `keep` is 0 or 1, arithmetic rather than a
        // branch so that the loop vectorises.
        let e = dp[k];
        let inv = 1.0 / (pr * pr + pi * pi).max(1e-30).sqrt();
        let (vr, vi) = (1.0 - e + e * pr * inv, e * pi * inv);
        let v2 = vr * vr + vi * vi;
        let keep = f32::from(u8::from(v2 > 1e-12));
        let s = keep * mag / v2.max(1e-12).sqrt();
        let (cr, ci) = (s * vr + (1.0 - keep) * mag, s * vi);
        out[k] = Complex::new(lr[k] * cr - li[k] * ci, lr[k] * ci + li[k] * cr);
    }
}

/// The sum of `v` in eight interleaved partial sums: independent chains
/// of additions (one vector register), where a single running sum waits
/// on each addition in turn.
#[inline(always)]
pub(super) fn band_sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest
}
