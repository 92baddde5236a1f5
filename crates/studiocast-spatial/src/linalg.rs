//! The few dense linear-algebra routines the decoder design needs. Sizes are
//! at most 64×64 (order 7), so plain Cholesky in f64 is enough.

use realfft::num_complex::Complex64;

/// In-place Cholesky of a symmetric positive-definite n×n matrix (row-major,
/// lower triangle used). Returns false when the matrix is not positive
/// definite.
pub fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d.is_nan() || d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in (j + 1)..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    true
}

/// Solve L Lᵀ x = b in place, with `l` from [`cholesky`].
pub fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in (i + 1)..n {
            s -= l[k * n + i] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

/// Weighted, Tikhonov-regularised pseudo-inverse of the Q×K matrix `y`
/// (row-major): P = (YᵀWY + λ·tr/K·I)⁻¹ YᵀW, returned K×Q row-major.
pub fn weighted_pinv(y: &[f64], q: usize, k: usize, w: &[f64], lambda: f64) -> Option<Vec<f64>> {
    let mut g = vec![0.0; k * k];
    for r in 0..q {
        let row = &y[r * k..(r + 1) * k];
        for i in 0..k {
            let wi = w[r] * row[i];
            for j in 0..=i {
                g[i * k + j] += wi * row[j];
            }
        }
    }
    let tr: f64 = (0..k).map(|i| g[i * k + i]).sum();
    for i in 0..k {
        // The tiny floor keeps an all-zero weight set from dividing by zero.
        g[i * k + i] += lambda * tr / k as f64 + 1e-300;
        for j in 0..i {
            g[j * k + i] = g[i * k + j];
        }
    }
    if !cholesky(&mut g, k) {
        return None;
    }
    let mut p = vec![0.0; k * q];
    let mut col = vec![0.0; k];
    for r in 0..q {
        for i in 0..k {
            col[i] = y[r * k + i] * w[r];
        }
        cholesky_solve(&g, k, &mut col);
        for i in 0..k {
            p[i * q + r] = col[i];
        }
    }
    Some(p)
}

/// 2×2 complex matrix, row-major.
pub type C2 = [[Complex64; 2]; 2];

pub fn c2_mul(a: &C2, b: &C2) -> C2 {
    let mut o = [[Complex64::new(0.0, 0.0); 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            o[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j];
        }
    }
    o
}

pub fn c2_adj(a: &C2) -> C2 {
    [
        [a[0][0].conj(), a[1][0].conj()],
        [a[0][1].conj(), a[1][1].conj()],
    ]
}

pub fn c2_inv(a: &C2) -> Option<C2> {
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    if det.norm() < 1e-300 || !det.is_finite() {
        return None;
    }
    let inv = 1.0 / det;
    Some([
        [a[1][1] * inv, -a[0][1] * inv],
        [-a[1][0] * inv, a[0][0] * inv],
    ])
}

/// Upper-triangular X with XᴴX = R for a Hermitian positive-definite R.
pub fn c2_chol_upper(r: &C2) -> Option<C2> {
    let a = r[0][0].re;
    if a.is_nan() || a <= 0.0 {
        return None;
    }
    let x00 = a.sqrt();
    let x01 = r[0][1] / x00;
    let d = r[1][1].re - x01.norm_sqr();
    if d.is_nan() || d <= 0.0 {
        return None;
    }
    let z = Complex64::new(0.0, 0.0);
    Some([
        [Complex64::new(x00, 0.0), x01],
        [z, Complex64::new(d.sqrt(), 0.0)],
    ])
}

/// Unitary polar factor U of A = U·P (the Procrustes solution), via
/// U = A (AᴴA)^{-1/2} with the closed-form square root of a 2×2 Hermitian.
pub fn c2_polar_unitary(a: &C2) -> Option<C2> {
    let m = c2_mul(&c2_adj(a), a);
    let det = (m[0][0] * m[1][1] - m[0][1] * m[1][0]).re;
    if det.is_nan() || det <= 0.0 {
        return None;
    }
    let s = det.sqrt();
    let t = (m[0][0].re + m[1][1].re + 2.0 * s).sqrt();
    if t.is_nan() || t <= 0.0 {
        return None;
    }
    let one = Complex64::new(1.0, 0.0);
    let sq: C2 = [
        [(m[0][0] + s * one) / t, m[0][1] / t],
        [m[1][0] / t, (m[1][1] + s * one) / t],
    ];
    let inv = c2_inv(&sq)?;
    Some(c2_mul(a, &inv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves() {
        let mut a = vec![4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let orig = a.clone();
        assert!(cholesky(&mut a, 3));
        let mut b = vec![1.0, 2.0, 3.0];
        cholesky_solve(&a, 3, &mut b);
        for i in 0..3 {
            let r: f64 = (0..3).map(|j| orig[i * 3 + j] * b[j]).sum();
            assert!((r - [1.0, 2.0, 3.0][i]).abs() < 1e-12);
        }
    }

    #[test]
    fn polar_factor_is_unitary() {
        let c = |r, i| Complex64::new(r, i);
        let a: C2 = [[c(1.0, 0.3), c(-0.2, 0.5)], [c(0.7, -0.1), c(0.4, 0.9)]];
        let u = c2_polar_unitary(&a).unwrap();
        let p = c2_mul(&c2_adj(&u), &u);
        assert!((p[0][0].re - 1.0).abs() < 1e-12 && p[0][1].norm() < 1e-12);
        assert!((p[1][1].re - 1.0).abs() < 1e-12);
        // UᴴA must be Hermitian positive definite.
        let h = c2_mul(&c2_adj(&u), &a);
        assert!((h[0][1] - h[1][0].conj()).norm() < 1e-12);
    }
}
