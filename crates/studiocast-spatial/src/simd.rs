//! Complex multiply-accumulate kernels for the partitioned convolver, chosen
//! at run time through a closed enum. Data is in split format (separate real
//! and imaginary arrays) and padded to a multiple of `LANES` bins, so each
//! kernel walks 8 bins at a time and keeps its accumulators in registers
//! across all channels and partitions.

/// Bins handled per step; spectra are padded to a multiple of this.
pub const LANES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Portable code (LLVM vectorises it with the baseline SSE2).
    Scalar,
    /// AVX2 + FMA intrinsics.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernel::Avx2Fma;
            }
        }
        Kernel::Scalar
    }

    /// All kernels usable on this CPU (for tests and benches).
    pub fn available() -> Vec<Kernel> {
        let mut v = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        if Kernel::detect() == Kernel::Avx2Fma {
            v.push(Kernel::Avx2Fma);
        }
        v
    }
}

/// One accumulation job: Σ_t x_t · h_t over `terms` (pairs of offsets into
/// the spectra arrays), written to `out`.
pub struct MacJob<'a> {
    pub x_re: &'a [f32],
    pub x_im: &'a [f32],
    pub h_re: &'a [f32],
    pub h_im: &'a [f32],
    /// (x offset, h offset) of each term; each term covers `len` bins.
    pub terms: &'a [(usize, usize)],
    pub len: usize,
}

impl Kernel {
    /// out = Σ_terms x·h (complex, split format). `len` must be a multiple of
    /// LANES and every offset + len within its array (checked).
    pub fn mac(self, job: &MacJob<'_>, out_re: &mut [f32], out_im: &mut [f32]) {
        let len = job.len;
        assert!(len.is_multiple_of(LANES) && out_re.len() >= len && out_im.len() >= len);
        for &(xo, ho) in job.terms {
            assert!(xo + len <= job.x_re.len() && xo + len <= job.x_im.len());
            assert!(ho + len <= job.h_re.len() && ho + len <= job.h_im.len());
        }
        match self {
            Kernel::Scalar => mac_scalar(job, out_re, out_im),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2Fma is only constructed after run-time detection;
            // bounds were checked above.
            Kernel::Avx2Fma => unsafe { mac_avx2(job, out_re, out_im) },
        }
    }
}

fn mac_scalar(job: &MacJob<'_>, out_re: &mut [f32], out_im: &mut [f32]) {
    let mut c = 0;
    while c < job.len {
        let mut ar = [0.0f32; LANES];
        let mut ai = [0.0f32; LANES];
        for &(xo, ho) in job.terms {
            let xr = &job.x_re[xo + c..xo + c + LANES];
            let xi = &job.x_im[xo + c..xo + c + LANES];
            let hr = &job.h_re[ho + c..ho + c + LANES];
            let hi = &job.h_im[ho + c..ho + c + LANES];
            for l in 0..LANES {
                ar[l] += xr[l] * hr[l] - xi[l] * hi[l];
                ai[l] += xr[l] * hi[l] + xi[l] * hr[l];
            }
        }
        out_re[c..c + LANES].copy_from_slice(&ar);
        out_im[c..c + LANES].copy_from_slice(&ai);
        c += LANES;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn mac_avx2(job: &MacJob<'_>, out_re: &mut [f32], out_im: &mut [f32]) {
    use std::arch::x86_64::*;
    let (xr_p, xi_p) = (job.x_re.as_ptr(), job.x_im.as_ptr());
    let (hr_p, hi_p) = (job.h_re.as_ptr(), job.h_im.as_ptr());
    let mut c = 0;
    while c < job.len {
        let mut ar = _mm256_setzero_ps();
        let mut ai = _mm256_setzero_ps();
        for &(xo, ho) in job.terms {
            // SAFETY: offsets + len were bounds-checked by the caller.
            unsafe {
                let xr = _mm256_loadu_ps(xr_p.add(xo + c));
                let xi = _mm256_loadu_ps(xi_p.add(xo + c));
                let hr = _mm256_loadu_ps(hr_p.add(ho + c));
                let hi = _mm256_loadu_ps(hi_p.add(ho + c));
                ar = _mm256_fmadd_ps(xr, hr, ar);
                ar = _mm256_fnmadd_ps(xi, hi, ar);
                ai = _mm256_fmadd_ps(xr, hi, ai);
                ai = _mm256_fmadd_ps(xi, hr, ai);
            }
        }
        // SAFETY: out slices hold at least len values (checked by caller).
        unsafe {
            _mm256_storeu_ps(out_re.as_mut_ptr().add(c), ar);
            _mm256_storeu_ps(out_im.as_mut_ptr().add(c), ai);
        }
        c += LANES;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift, fixed seed: reproducible without a dependency.
    fn rng(seed: &mut u64) -> f32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn kernels_match_naive_reference() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let len = 5 * LANES;
        let n = 12;
        let v = |s: &mut u64| (0..n * len).map(|_| rng(s)).collect::<Vec<f32>>();
        let (xr, xi, hr, hi) = (v(&mut s), v(&mut s), v(&mut s), v(&mut s));
        let terms: Vec<(usize, usize)> = (0..n).map(|t| (t * len, ((t * 7) % n) * len)).collect();
        let job = MacJob {
            x_re: &xr,
            x_im: &xi,
            h_re: &hr,
            h_im: &hi,
            terms: &terms,
            len,
        };
        let mut er = vec![0.0f64; len];
        let mut ei = vec![0.0f64; len];
        for &(xo, ho) in &terms {
            for b in 0..len {
                let (a, bb) = (xr[xo + b] as f64, xi[xo + b] as f64);
                let (c, d) = (hr[ho + b] as f64, hi[ho + b] as f64);
                er[b] += a * c - bb * d;
                ei[b] += a * d + bb * c;
            }
        }
        for k in Kernel::available() {
            let mut or = vec![0.0; len];
            let mut oi = vec![0.0; len];
            k.mac(&job, &mut or, &mut oi);
            for b in 0..len {
                assert!((or[b] as f64 - er[b]).abs() < 1e-4, "{k:?} re {b}");
                assert!((oi[b] as f64 - ei[b]).abs() < 1e-4, "{k:?} im {b}");
            }
        }
    }
}
