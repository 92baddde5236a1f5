//! Complex multiply-accumulate kernels for the partitioned convolver, chosen
//! at run time through a closed enum. Data is in split format (separate real
//! and imaginary arrays) and padded to a multiple of `LANES` bins, so each
//! kernel walks 8 bins at a time and keeps its accumulators in registers
//! across all channels and partitions.

use crate::error::{Result, SpatialError};

/// Bins handled per step; spectra are padded to a multiple of this.
pub const LANES: usize = 8;

/// A multiply-accumulate kernel usable on this CPU.
///
/// The variant is private so that safe code cannot name the AVX2 kernel: the
/// only ways to obtain one are [`Kernel::detect`] and [`Kernel::available`],
/// which check the CPU at run time. Running AVX2 instructions on a CPU
/// without them is undefined behaviour, so this is what makes
/// [`Kernel::mac`] and `ShConvolver::with_kernel` sound.
///
/// ```
/// use studiocast_spatial::simd::Kernel;
/// let k = Kernel::detect();
/// assert!(Kernel::available().contains(&k));
/// println!("{}", k.name());
/// ```
///
/// The AVX2 kernel cannot be constructed directly, neither by the old
/// variant path:
///
/// ```compile_fail
/// let k = studiocast_spatial::simd::Kernel::Avx2Fma;
/// ```
///
/// nor through the private field:
///
/// ```compile_fail
/// use studiocast_spatial::simd::Kernel;
/// let k = Kernel::scalar();
/// let _copy = Kernel(k.0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Kernel(Isa);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// Portable code (LLVM vectorises it with the baseline SSE2).
    Scalar,
    /// AVX2 + FMA intrinsics; only ever built after run-time detection.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    /// The portable kernel, usable everywhere.
    pub fn scalar() -> Self {
        Kernel(Isa::Scalar)
    }

    /// The fastest kernel this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernel(Isa::Avx2Fma);
            }
        }
        Kernel::scalar()
    }

    /// All kernels usable on this CPU (for tests and benches).
    pub fn available() -> Vec<Kernel> {
        let mut v = vec![Kernel::scalar()];
        let best = Kernel::detect();
        if best != Kernel::scalar() {
            v.push(best);
        }
        v
    }

    /// Stable name for logs and bench ids.
    pub fn name(self) -> &'static str {
        match self.0 {
            Isa::Scalar => "Scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => "Avx2Fma",
        }
    }

    /// True when this kernel runs the AVX2 code paths (the convolver then
    /// compiles its whole block loop with AVX2 enabled, the parametric
    /// renderer its synthesis): such a kernel exists only after the
    /// run-time check.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn is_avx2(self) -> bool {
        self.0 == Isa::Avx2Fma
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

/// `offset + len` must fit in an array of `available` values.
fn check_span(what: &'static str, offset: usize, len: usize, available: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= available => Ok(()),
        _ => Err(SpatialError::MacOutOfBounds {
            what,
            offset,
            len,
            available,
        }),
    }
}

impl Kernel {
    /// out = Σ_terms x·h (complex, split format). `len` must be a multiple of
    /// LANES and every offset + len within its array; a job that breaks
    /// either rule is refused with an error (never a panic), since the AVX2
    /// kernel reads through raw pointers. Allocation-free, also on error.
    pub fn mac(self, job: &MacJob<'_>, out_re: &mut [f32], out_im: &mut [f32]) -> Result<()> {
        let len = job.len;
        if !len.is_multiple_of(LANES) {
            return Err(SpatialError::MacLength { len, lanes: LANES });
        }
        check_span("out_re", 0, len, out_re.len())?;
        check_span("out_im", 0, len, out_im.len())?;
        for &(xo, ho) in job.terms {
            check_span("x_re", xo, len, job.x_re.len())?;
            check_span("x_im", xo, len, job.x_im.len())?;
            check_span("h_re", ho, len, job.h_re.len())?;
            check_span("h_im", ho, len, job.h_im.len())?;
        }
        match self.0 {
            Isa::Scalar => mac_scalar(job, out_re, out_im),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Avx2Fma kernel only exists after run-time detection
            // of AVX2 and FMA (the variant is private); bounds were checked
            // above.
            Isa::Avx2Fma => unsafe { mac_avx2(job, out_re, out_im) },
        }
        Ok(())
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
            k.mac(&job, &mut or, &mut oi).unwrap();
            for b in 0..len {
                assert!((or[b] as f64 - er[b]).abs() < 1e-4, "{k:?} re {b}");
                assert!((oi[b] as f64 - ei[b]).abs() < 1e-4, "{k:?} im {b}");
            }
        }
    }

    fn job<'a>(v: &'a [f32], terms: &'a [(usize, usize)], len: usize) -> MacJob<'a> {
        MacJob {
            x_re: v,
            x_im: v,
            h_re: v,
            h_im: v,
            terms,
            len,
        }
    }

    #[test]
    fn bad_jobs_are_errors_not_panics() {
        let v = vec![1.0f32; 4 * LANES];
        let mut or = vec![0.0; 4 * LANES];
        let mut oi = vec![0.0; 4 * LANES];
        for k in Kernel::available() {
            // Length not a multiple of the lane count.
            let e = k.mac(&job(&v, &[(0, 0)], 5), &mut or, &mut oi);
            assert!(
                matches!(
                    e,
                    Err(SpatialError::MacLength {
                        len: 5,
                        lanes: LANES
                    })
                ),
                "{k:?}: {e:?}"
            );
            // A term reaching past the spectra.
            let e = k.mac(
                &job(&v, &[(0, 0), (3 * LANES, 0)], 2 * LANES),
                &mut or,
                &mut oi,
            );
            assert!(
                matches!(
                    e,
                    Err(SpatialError::MacOutOfBounds {
                        what: "x_re",
                        offset,
                        len,
                        available,
                    }) if offset == 3 * LANES && len == 2 * LANES && available == 4 * LANES
                ),
                "{k:?}: {e:?}"
            );
            // An offset so large that offset + len overflows.
            let e = k.mac(&job(&v, &[(0, usize::MAX - 1)], LANES), &mut or, &mut oi);
            assert!(
                matches!(e, Err(SpatialError::MacOutOfBounds { what: "h_re", .. })),
                "{k:?}: {e:?}"
            );
            // Output shorter than the job.
            let mut short = vec![0.0; LANES];
            let e = k.mac(&job(&v, &[(0, 0)], 2 * LANES), &mut short, &mut oi);
            assert!(
                matches!(e, Err(SpatialError::MacOutOfBounds { what: "out_re", .. })),
                "{k:?}: {e:?}"
            );
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains("out_re") && msg.contains("16"), "{msg}");
            // A valid job still works.
            k.mac(
                &job(&v, &[(0, 0), (LANES, 2 * LANES)], 2 * LANES),
                &mut or,
                &mut oi,
            )
            .unwrap();
        }
    }

    #[test]
    fn available_kernels_are_detected_ones() {
        let all = Kernel::available();
        assert_eq!(all[0], Kernel::scalar());
        assert!(all.contains(&Kernel::detect()));
        assert_eq!(format!("{:?}", Kernel::scalar()), "Scalar");
        assert_eq!(Kernel::scalar().name(), "Scalar");
    }
}
