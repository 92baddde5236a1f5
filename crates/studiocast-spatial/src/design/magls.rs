//! Least-squares and MagLS fits per frequency bin, and the diffuse-field
//! covariance constraint.

use realfft::num_complex::Complex64;

use super::Spectra;
use crate::linalg::{c2_adj, c2_chol_upper, c2_inv, c2_mul, c2_polar_unitary, C2};

fn apply_pinv(p: &[f64], target: &[Complex64], q: usize, k: usize, out: &mut [Complex64]) {
    for (c, o) in out.iter_mut().enumerate().take(k) {
        let row = &p[c * q..(c + 1) * q];
        let mut acc = Complex64::new(0.0, 0.0);
        for (w, t) in row.iter().zip(target) {
            acc += t * *w;
        }
        *o = acc;
    }
}

/// Plain weighted least squares for every bin.
pub(super) fn ls_fit(p: &[f64], spec: &Spectra, ear: usize, q: usize, k: usize) -> Vec<Complex64> {
    let bins = spec.bins;
    let mut out = vec![Complex64::new(0.0, 0.0); bins * k];
    let mut target = vec![Complex64::new(0.0, 0.0); q];
    for b in 0..bins {
        for (i, t) in target.iter_mut().enumerate() {
            *t = spec.h[ear][i * bins + b];
        }
        apply_pinv(p, &target, q, k, &mut out[b * k..(b + 1) * k]);
    }
    out
}

/// MagLS for both ears at once: LS up to `cutoff_bin`; above it a
/// magnitude fit whose phase is continued from the previous bin and advanced
/// by the set's bulk delay (so the high band stays aligned with the low band
/// instead of collapsing to zero delay). Up to `ipd_bin` the continued phases
/// of the two ears are also steered towards the measured interaural phase
/// difference, which keeps the ITD that plain MagLS loses at low orders.
#[allow(clippy::too_many_arguments)]
pub(super) fn magls_fit(
    p: &[f64],
    y: &[f64],
    spec: &Spectra,
    q: usize,
    k: usize,
    cutoff_bin: usize,
    ipd_bin: usize,
    bulk_delay: f64,
) -> [Vec<Complex64>; 2] {
    let bins = spec.bins;
    let step = Complex64::from_polar(
        1.0,
        -2.0 * std::f64::consts::PI * bulk_delay / (2 * (bins - 1)) as f64,
    );
    let mut out = [
        vec![Complex64::new(0.0, 0.0); bins * k],
        vec![Complex64::new(0.0, 0.0); bins * k],
    ];
    let mut target = [
        vec![Complex64::new(0.0, 0.0); q],
        vec![Complex64::new(0.0, 0.0); q],
    ];
    let unit = |c: Complex64| {
        let n = c.norm();
        if n > 0.0 && n.is_finite() {
            c / n
        } else {
            Complex64::new(1.0, 0.0)
        }
    };
    for b in 0..bins {
        if b <= cutoff_bin || b == 0 {
            for (ear, t) in target.iter_mut().enumerate() {
                for (i, v) in t.iter_mut().enumerate() {
                    *v = spec.h[ear][i * bins + b];
                }
            }
        } else {
            let [t0, t1] = &mut target;
            for (i, (t0, t1)) in t0.iter_mut().zip(t1.iter_mut()).enumerate() {
                let prev = [
                    unit(render(y, &out[0][(b - 1) * k..b * k], i, k)),
                    unit(render(y, &out[1][(b - 1) * k..b * k], i, k)),
                ];
                let hl = spec.h[0][i * bins + b];
                let hr = spec.h[1][i * bins + b];
                let mut rot = [Complex64::new(1.0, 0.0); 2];
                if b <= ipd_bin {
                    // Split the interaural phase error evenly between the ears.
                    let want = unit(hl * hr.conj());
                    let have = prev[0] * prev[1].conj();
                    let half = unit(want * have.conj()).sqrt();
                    rot = [half, half.conj()];
                }
                *t0 = prev[0] * rot[0] * step * hl.norm();
                *t1 = prev[1] * rot[1] * step * hr.norm();
            }
        }
        for ear in 0..2 {
            apply_pinv(p, &target[ear], q, k, &mut out[ear][b * k..(b + 1) * k]);
        }
    }
    out
}

fn render(y: &[f64], coeffs: &[Complex64], q: usize, k: usize) -> Complex64 {
    let row = &y[q * k..(q + 1) * k];
    row.iter().zip(coeffs).map(|(a, c)| c * *a).sum()
}

/// Diffuse-field covariance constraint (Zaunschirm, Schörkhuber & Höldrich
/// 2018): per bin, the 2×2 correction M = X̂⁻¹·U·X that makes the rendered
/// diffuse-field covariance equal the HRTF set's while staying as close as
/// possible to the unconstrained filters (U from a Procrustes problem).
///
/// `blend(b)` in [0, 1] scales the correction of bin `b`: the applied matrix
/// is (1 − β)·I + β·M (β = 1: the full constraint, 0: none).
pub(super) fn covariance_constraint(
    y: &[f64],
    w: &[f64],
    spec: &Spectra,
    coeffs: &mut [Vec<Complex64>; 2],
    k: usize,
    blend: impl Fn(usize) -> f64,
) {
    let bins = spec.bins;
    let z = Complex64::new(0.0, 0.0);
    for b in 1..bins {
        let beta = blend(b).clamp(0.0, 1.0);
        if beta <= 0.0 {
            continue;
        }
        let mut r: C2 = [[z; 2]; 2];
        let mut rh: C2 = [[z; 2]; 2];
        for (q, wq) in w.iter().enumerate() {
            let h = [spec.h[0][q * bins + b], spec.h[1][q * bins + b]];
            let hh = [
                render(y, &coeffs[0][b * k..(b + 1) * k], q, k),
                render(y, &coeffs[1][b * k..(b + 1) * k], q, k),
            ];
            for i in 0..2 {
                for j in 0..2 {
                    r[i][j] += h[i].conj() * h[j] * *wq;
                    rh[i][j] += hh[i].conj() * hh[j] * *wq;
                }
            }
        }
        // Tiny diagonal loading keeps the Cholesky defined for near-silent bins.
        let load = 1e-9 * (r[0][0].re + r[1][1].re).max(1e-30);
        for m in [&mut r, &mut rh] {
            m[0][0].re += load;
            m[1][1].re += load;
        }
        let (Some(x), Some(xh)) = (c2_chol_upper(&r), c2_chol_upper(&rh)) else {
            continue;
        };
        let Some(u) = c2_polar_unitary(&c2_mul(&xh, &c2_adj(&x))) else {
            continue;
        };
        let Some(xh_inv) = c2_inv(&xh) else { continue };
        let mut m = c2_mul(&c2_mul(&xh_inv, &u), &x);
        if m.iter().flatten().any(|v| !v.is_finite()) {
            continue;
        }
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let id = if i == j { 1.0 } else { 0.0 };
                *v = *v * beta + Complex64::new(id * (1.0 - beta), 0.0);
            }
        }
        for c in 0..k {
            let bl = coeffs[0][b * k + c];
            let br = coeffs[1][b * k + c];
            coeffs[0][b * k + c] = bl * m[0][0] + br * m[1][0];
            coeffs[1][b * k + c] = bl * m[0][1] + br * m[1][1];
        }
    }
}
