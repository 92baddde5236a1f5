//! Uniformly partitioned overlap-save convolution of SH signals with
//! SH-domain binaural filters.
//!
//! The first partition equals the host block, so there is no latency beyond
//! the block. For mirror-symmetric HRTF sets the channels are split into the
//! groups whose right-ear filter equals (+) or negates (−) the left one; the
//! two group sums A and B give L = A + B and R = A − B, so one filter set is
//! multiplied per channel and only two inverse FFTs run per block. For
//! asymmetric sets both ears' filters are applied.
//!
//! FFT cost dominates at low orders, so real signals travel in pairs: two
//! input channels share one complex FFT (x₀ + i·x₁) and are separated with
//! the conjugate-symmetry identities, and the two output group spectra are
//! merged into one complex inverse FFT (a + i·b) whose real and imaginary
//! parts are the two groups. Per block that is ⌈K/2⌉ forward and one
//! inverse complex FFT of twice the block.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::RealFftPlanner;
use rustfft::{Fft, FftPlanner};

use crate::design::ShFilters;
use crate::error::{Result, SpatialError};
use crate::simd::{Kernel, MacJob, LANES};

pub const MIN_BLOCK: usize = 16;
pub const MAX_BLOCK: usize = 8192;

pub struct ShConvolver {
    block: usize,
    channels: usize,
    partitions: usize,
    bins: usize,
    bins_pad: usize,
    symmetric: bool,
    kernel: Kernel,
    fft: Arc<dyn Fft<f32>>,
    ifft: Arc<dyn Fft<f32>>,
    /// Filter spectra, [ear][partition][channel][bin], split re/im.
    h_re: Vec<f32>,
    h_im: Vec<f32>,
    /// Frequency-domain delay line, [slot][channel][bin].
    x_re: Vec<f32>,
    x_im: Vec<f32>,
    /// Term lists per current slot, for the two accumulations.
    terms: [Vec<Vec<(usize, usize)>>; 2],
    slot: usize,
    /// Time-domain history of channel pairs, [pair][2·block], channel 2p in
    /// the real part and 2p+1 in the imaginary part.
    hist: Vec<Complex32>,
    buf: Vec<Complex32>,
    zr: Vec<f32>,
    zi: Vec<f32>,
    scratch: Vec<Complex32>,
    acc_re: [Vec<f32>; 2],
    acc_im: [Vec<f32>; 2],
}

impl ShConvolver {
    pub fn new(filters: &ShFilters, block: usize) -> Result<Self> {
        Self::with_kernel(filters, block, Kernel::detect())
    }

    pub fn with_kernel(filters: &ShFilters, block: usize, kernel: Kernel) -> Result<Self> {
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&block) {
            return Err(SpatialError::BadBlockSize {
                block,
                max: MAX_BLOCK,
            });
        }
        let channels = filters.channels();
        let n = 2 * block;
        let bins = block + 1;
        let bins_pad = bins.div_ceil(LANES) * LANES;
        let taps = filters.taps.max(1);
        let partitions = taps.div_ceil(block);
        let mut rplanner = RealFftPlanner::<f32>::new();
        let rfft = rplanner.plan_fft_forward(n);
        let mut planner = FftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n);
        let ifft = planner.plan_fft_inverse(n);
        let ears = if filters.symmetric { 1 } else { 2 };
        let hlen = ears * partitions * channels * bins_pad;
        let mut h_re = vec![0.0f32; hlen];
        let mut h_im = vec![0.0f32; hlen];
        let mut buf = rfft.make_input_vec();
        let mut spec = rfft.make_output_vec();
        // 1/n for the unnormalised inverse FFT, 1/2 for the pair separation.
        let scale = 0.5 / n as f32;
        for ear in 0..ears {
            let set = if ear == 0 {
                &filters.left
            } else {
                &filters.right
            };
            for p in 0..partitions {
                for (c, f) in set.iter().enumerate() {
                    buf.iter_mut().for_each(|v| *v = 0.0);
                    let lo = (p * block).min(f.len());
                    let hi = ((p + 1) * block).min(f.len());
                    buf[..hi - lo].copy_from_slice(&f[lo..hi]);
                    rfft.process(&mut buf, &mut spec)
                        .map_err(|e| SpatialError::Design(e.to_string()))?;
                    let off = ((ear * partitions + p) * channels + c) * bins_pad;
                    for (b, v) in spec.iter().enumerate() {
                        h_re[off + b] = v.re * scale;
                        h_im[off + b] = v.im * scale;
                    }
                }
            }
        }
        let x_off = |slot: usize, c: usize| (slot * channels + c) * bins_pad;
        let h_off =
            |ear: usize, p: usize, c: usize| ((ear * partitions + p) * channels + c) * bins_pad;
        let mut terms: [Vec<Vec<(usize, usize)>>; 2] = [Vec::new(), Vec::new()];
        for cur in 0..partitions {
            let mut t = [Vec::new(), Vec::new()];
            for p in 0..partitions {
                let slot = (cur + partitions - p) % partitions;
                for c in 0..channels {
                    if filters.symmetric {
                        let g = usize::from(ShFilters::mirror_sign(c) < 0.0);
                        t[g].push((x_off(slot, c), h_off(0, p, c)));
                    } else {
                        t[0].push((x_off(slot, c), h_off(0, p, c)));
                        t[1].push((x_off(slot, c), h_off(1, p, c)));
                    }
                }
            }
            let [a, b] = t;
            terms[0].push(a);
            terms[1].push(b);
        }
        let scratch_len = fft
            .get_inplace_scratch_len()
            .max(ifft.get_inplace_scratch_len());
        Ok(ShConvolver {
            block,
            channels,
            partitions,
            bins,
            bins_pad,
            symmetric: filters.symmetric,
            kernel,
            fft,
            ifft,
            h_re,
            h_im,
            x_re: vec![0.0; partitions * channels * bins_pad],
            x_im: vec![0.0; partitions * channels * bins_pad],
            terms,
            slot: 0,
            hist: vec![Complex32::new(0.0, 0.0); channels.div_ceil(2) * n],
            buf: vec![Complex32::new(0.0, 0.0); n],
            zr: vec![0.0; n],
            zi: vec![0.0; n],
            scratch: vec![Complex32::new(0.0, 0.0); scratch_len],
            acc_re: [vec![0.0; bins_pad], vec![0.0; bins_pad]],
            acc_im: [vec![0.0; bins_pad], vec![0.0; bins_pad]],
        })
    }

    pub fn block(&self) -> usize {
        self.block
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn partitions(&self) -> usize {
        self.partitions
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Clear all state (for a flush or seek).
    pub fn reset(&mut self) {
        self.hist
            .iter_mut()
            .for_each(|v| *v = Complex32::new(0.0, 0.0));
        self.x_re.iter_mut().for_each(|v| *v = 0.0);
        self.x_im.iter_mut().for_each(|v| *v = 0.0);
        self.slot = 0;
    }

    /// Convolve one block. `input` holds one slice of `block` samples per SH
    /// channel (AmbiX). Non-finite samples are treated as silence. No
    /// allocation, lock or I/O.
    pub fn process_into_buffer(
        &mut self,
        input: &[&[f32]],
        left: &mut [f32],
        right: &mut [f32],
    ) -> Result<()> {
        let b = self.block;
        if input.len() != self.channels {
            return Err(SpatialError::ChannelMismatch {
                expected: self.channels,
                actual: input.len(),
            });
        }
        for s in input
            .iter()
            .map(|s| s.len())
            .chain([left.len(), right.len()])
        {
            if s != b {
                return Err(SpatialError::BlockMismatch {
                    expected: b,
                    actual: s,
                });
            }
        }
        #[cfg(target_arch = "x86_64")]
        if self.kernel.is_avx2() {
            // SAFETY: an AVX2 kernel can only be obtained through run-time
            // detection of AVX2 and FMA (its variant is private to `simd`).
            return unsafe { self.run_avx2(input, left, right) };
        }
        self.run(input, left, right)
    }

    /// The whole block compiled again with AVX2 enabled, so the packing and
    /// separation loops vectorise 8-wide as well as the MAC kernel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(
        &mut self,
        input: &[&[f32]],
        left: &mut [f32],
        right: &mut [f32],
    ) -> Result<()> {
        self.run(input, left, right)
    }

    /// One block: history, spectra of the new inputs, the partitioned
    /// multiply-accumulate, and the inverse transform to the two ears.
    #[inline(always)]
    fn run(&mut self, input: &[&[f32]], left: &mut [f32], right: &mut [f32]) -> Result<()> {
        self.slot = (self.slot + 1) % self.partitions;
        self.load_history(input);
        self.input_spectra();
        self.accumulate()?;
        self.write_ears(left, right);
        Ok(())
    }

    /// Slide each channel pair's 2-block history and pack the new block of
    /// two real channels into one complex signal.
    #[inline(always)]
    fn load_history(&mut self, input: &[&[f32]]) {
        let b = self.block;
        let n = 2 * b;
        // Branch-free so it vectorises: NaN/Inf become silence.
        let clean = |s: f32| {
            if (s.to_bits() & 0x7f80_0000) != 0x7f80_0000 {
                s
            } else {
                0.0
            }
        };
        for p in 0..self.channels.div_ceil(2) {
            let h = &mut self.hist[p * n..(p + 1) * n];
            h.copy_within(b.., 0);
            let x0 = input[2 * p];
            if let Some(x1) = input.get(2 * p + 1) {
                for ((d, a), bb) in h[b..].iter_mut().zip(x0.iter()).zip(x1.iter()) {
                    *d = Complex32::new(clean(*a), clean(*bb));
                }
            } else {
                for (d, a) in h[b..].iter_mut().zip(x0.iter()) {
                    *d = Complex32::new(clean(*a), 0.0);
                }
            }
        }
    }

    /// One FFT per channel pair, split into the two channels' spectra in
    /// this slot of the frequency-domain delay line.
    #[inline(always)]
    fn input_spectra(&mut self) {
        let n = 2 * self.block;
        let mut c = 0;
        while c < self.channels {
            let pair = c + 1 < self.channels;
            self.buf
                .copy_from_slice(&self.hist[(c / 2) * n..(c / 2 + 1) * n]);
            self.fft
                .process_with_scratch(&mut self.buf, &mut self.scratch);
            // X₀[k] = Z[k] + Z*[n−k], X₁[k] = −i (Z[k] − Z*[n−k]); the 1/2
            // is folded into the filters.
            let o0 = (self.slot * self.channels + c) * self.bins_pad;
            let o1 = o0 + self.bins_pad;
            // Split re/im first (a stride-2 gather LLVM vectorises), then
            // combine bin k with bin n−k through reversed iterators, which
            // also vectorise; indexing with n−k would not.
            for ((r, i), z) in self.zr.iter_mut().zip(self.zi.iter_mut()).zip(&self.buf) {
                *r = z.re;
                *i = z.im;
            }
            let nb = self.bins;
            let (zr, zi) = (&self.zr, &self.zi);
            self.x_re[o0] = 2.0 * zr[0];
            self.x_im[o0] = 0.0;
            for ((xr, a), bb) in self.x_re[o0 + 1..o0 + nb]
                .iter_mut()
                .zip(&zr[1..nb])
                .zip(zr[nb - 1..].iter().rev())
            {
                *xr = a + bb;
            }
            for ((xi, a), bb) in self.x_im[o0 + 1..o0 + nb]
                .iter_mut()
                .zip(&zi[1..nb])
                .zip(zi[nb - 1..].iter().rev())
            {
                *xi = a - bb;
            }
            if pair {
                self.x_re[o1] = 2.0 * zi[0];
                self.x_im[o1] = 0.0;
                for ((xr, a), bb) in self.x_re[o1 + 1..o1 + nb]
                    .iter_mut()
                    .zip(&zi[1..nb])
                    .zip(zi[nb - 1..].iter().rev())
                {
                    *xr = a + bb;
                }
                for ((xi, a), bb) in self.x_im[o1 + 1..o1 + nb]
                    .iter_mut()
                    .zip(&zr[1..nb])
                    .zip(zr[nb - 1..].iter().rev())
                {
                    *xi = bb - a;
                }
            }
            c += 2;
        }
    }

    /// Both ears' spectra: every term of the filters against the delay line.
    #[inline(always)]
    fn accumulate(&mut self) -> Result<()> {
        for g in 0..2 {
            let job = MacJob {
                x_re: &self.x_re,
                x_im: &self.x_im,
                h_re: &self.h_re,
                h_im: &self.h_im,
                terms: &self.terms[g][self.slot],
                len: self.bins_pad,
            };
            // The term lists are built to fit in `new`, so this cannot fail;
            // if it ever did, the error is returned rather than a panic.
            self.kernel
                .mac(&job, &mut self.acc_re[g], &mut self.acc_im[g])?;
        }
        Ok(())
    }

    /// One inverse FFT of both ears at once, then the block's output.
    #[inline(always)]
    fn write_ears(&mut self, left: &mut [f32], right: &mut [f32]) {
        let b = self.block;
        // Z = A + iB over the full circle, so one inverse FFT yields a + i·b.
        let [ar, br] = &self.acc_re;
        let [ai, bi] = &self.acc_im;
        let last = self.bins - 1;
        self.buf[0] = Complex32::new(ar[0], br[0]);
        self.buf[last] = Complex32::new(ar[last], br[last]);
        for (((z, r), i), (rb, ib)) in self.buf[1..last]
            .iter_mut()
            .zip(&ar[1..last])
            .zip(&ai[1..last])
            .zip(br[1..last].iter().zip(&bi[1..last]))
        {
            *z = Complex32::new(r - ib, i + rb);
        }
        for (((z, r), i), (rb, ib)) in self.buf[last + 1..]
            .iter_mut()
            .zip(ar[1..last].iter().rev())
            .zip(ai[1..last].iter().rev())
            .zip(br[1..last].iter().rev().zip(bi[1..last].iter().rev()))
        {
            *z = Complex32::new(r + ib, rb - i);
        }
        self.ifft
            .process_with_scratch(&mut self.buf, &mut self.scratch);
        let out = &self.buf[b..];
        if self.symmetric {
            for i in 0..b {
                left[i] = out[i].re + out[i].im;
                right[i] = out[i].re - out[i].im;
            }
        } else {
            for i in 0..b {
                left[i] = out[i].re;
                right[i] = out[i].im;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::DecoderMethod;

    fn rng(seed: &mut u64) -> f32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn random_filters(order: usize, taps: usize, symmetric: bool) -> ShFilters {
        let k = (order + 1) * (order + 1);
        let mut s = 42u64;
        let left: Vec<Vec<f32>> = (0..k)
            .map(|_| (0..taps).map(|_| rng(&mut s)).collect())
            .collect();
        let right = if symmetric {
            left.iter()
                .enumerate()
                .map(|(c, f)| f.iter().map(|v| v * ShFilters::mirror_sign(c)).collect())
                .collect()
        } else {
            (0..k)
                .map(|_| (0..taps).map(|_| rng(&mut s)).collect())
                .collect()
        };
        ShFilters {
            order,
            sample_rate: 48_000,
            taps,
            symmetric,
            left,
            right,
            method: DecoderMethod::Ls,
        }
    }

    fn direct(filters: &ShFilters, input: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
        let n = input[0].len();
        let mut l = vec![0.0f64; n];
        let mut r = vec![0.0f64; n];
        for (c, x) in input.iter().enumerate() {
            for t in 0..n {
                for (j, (fl, fr)) in filters.left[c].iter().zip(&filters.right[c]).enumerate() {
                    if j > t {
                        break;
                    }
                    l[t] += (*fl as f64) * x[t - j] as f64;
                    r[t] += (*fr as f64) * x[t - j] as f64;
                }
            }
        }
        (
            l.into_iter().map(|v| v as f32).collect(),
            r.into_iter().map(|v| v as f32).collect(),
        )
    }

    fn run(
        f: &ShFilters,
        input: &[Vec<f32>],
        block: usize,
        kernel: Kernel,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut c = ShConvolver::with_kernel(f, block, kernel).unwrap();
        let n = input[0].len();
        let (mut l, mut r) = (vec![0.0; n], vec![0.0; n]);
        for s in (0..n).step_by(block) {
            let ins: Vec<&[f32]> = input.iter().map(|x| &x[s..s + block]).collect();
            c.process_into_buffer(&ins, &mut l[s..s + block], &mut r[s..s + block])
                .unwrap();
        }
        (l, r)
    }

    #[test]
    fn matches_direct_convolution_any_block_and_kernel() {
        for symmetric in [true, false] {
            let f = random_filters(2, 150, symmetric);
            let mut s = 7u64;
            let input: Vec<Vec<f32>> = (0..9)
                .map(|_| (0..1024).map(|_| rng(&mut s)).collect())
                .collect();
            let (el, er) = direct(&f, &input);
            for block in [16, 64, 128, 256, 512] {
                for k in Kernel::available() {
                    let (l, r) = run(&f, &input, block, k);
                    let err = l
                        .iter()
                        .zip(&el)
                        .chain(r.iter().zip(&er))
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max);
                    assert!(err < 2e-3, "block {block} {k:?} sym {symmetric}: {err}");
                }
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let f = random_filters(1, 64, true);
        let mut c = ShConvolver::new(&f, 64).unwrap();
        let x = vec![0.0f32; 64];
        let (mut l, mut r) = (vec![0.0; 64], vec![0.0; 64]);
        let three: Vec<&[f32]> = vec![&x, &x, &x];
        assert!(matches!(
            c.process_into_buffer(&three, &mut l, &mut r),
            Err(SpatialError::ChannelMismatch {
                expected: 4,
                actual: 3
            })
        ));
        let short = vec![0.0f32; 32];
        let bad: Vec<&[f32]> = vec![&short, &x, &x, &x];
        assert!(c.process_into_buffer(&bad, &mut l, &mut r).is_err());
        assert!(ShConvolver::new(&f, 3).is_err());
    }

    #[test]
    fn non_finite_input_does_not_poison_output() {
        let f = random_filters(1, 64, true);
        let mut c = ShConvolver::new(&f, 64).unwrap();
        let mut x = vec![0.1f32; 64];
        x[3] = f32::NAN;
        x[9] = f32::INFINITY;
        let ins: Vec<&[f32]> = vec![&x, &x, &x, &x];
        let (mut l, mut r) = (vec![0.0; 64], vec![0.0; 64]);
        for _ in 0..4 {
            c.process_into_buffer(&ins, &mut l, &mut r).unwrap();
            assert!(l.iter().chain(&r).all(|v| v.is_finite()));
        }
    }
}
