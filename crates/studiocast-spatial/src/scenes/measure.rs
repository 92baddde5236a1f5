//! Per time-frequency frame comparison of a binaural rendering with its
//! reference: ILD, ITD under both estimators, spectral error, interaural
//! coherence, and the artifact measure (band levels fluctuating from frame
//! to frame beyond the reference's: musical noise).

use std::sync::Arc;

use realfft::num_complex::Complex64;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::metrics::{erb_bands, ItdLowpass};

/// 2048-sample Hann frames (43 ms at 48 kHz), hop 1024.
const N: usize = 2048;
const HOP: usize = N / 2;
/// Frames and bands quieter than this (relative) are not judged.
const FRAME_FLOOR: f64 = 1e-4;
const BAND_FLOOR: f64 = 1e-3;

/// Per-frame values of each metric, pooled over a scene type.
#[derive(Debug, Default, Clone)]
pub struct Frames {
    pub ild: Vec<f64>,
    pub itd_ideal: Vec<f64>,
    pub itd_bw8: Vec<f64>,
    pub spectral: Vec<f64>,
    pub coherence: Vec<f64>,
    pub artifact: Vec<f64>,
}

impl Frames {
    pub fn extend(&mut self, o: Frames) {
        self.ild.extend(o.ild);
        self.itd_ideal.extend(o.itd_ideal);
        self.itd_bw8.extend(o.itd_bw8);
        self.spectral.extend(o.spectral);
        self.coherence.extend(o.coherence);
        self.artifact.extend(o.artifact);
    }
}

pub struct Meter {
    rate: f64,
    fft: Arc<dyn RealToComplex<f64>>,
    ifft: Arc<dyn ComplexToReal<f64>>,
    window: Vec<f64>,
    ild_bands: Vec<(usize, usize)>,
    bands: Vec<(usize, usize)>,
}

/// One frame's spectra of both ears.
struct Spectra {
    l: Vec<Complex64>,
    r: Vec<Complex64>,
}

impl Meter {
    pub fn new(rate: f64) -> Self {
        let mut p = RealFftPlanner::<f64>::new();
        Meter {
            rate,
            fft: p.plan_fft_forward(N),
            ifft: p.plan_fft_inverse(N),
            window: (0..N)
                .map(|n| (std::f64::consts::PI * n as f64 / N as f64).sin().powi(2))
                .collect(),
            ild_bands: erb_bands(1500.0, 16000.0, N, rate),
            bands: erb_bands(200.0, 16000.0, N, rate),
        }
    }

    fn spectrum(&self, x: &[f32], at: usize) -> Vec<Complex64> {
        let mut buf: Vec<f64> = (0..N)
            .map(|n| f64::from(x.get(at + n).copied().unwrap_or(0.0)) * self.window[n])
            .collect();
        let mut out = self.fft.make_output_vec();
        let _ = self.fft.process(&mut buf, &mut out);
        out
    }

    /// Compare `rend` with `refr` (left, right each), frame by frame.
    pub fn compare(&self, refr: (&[f32], &[f32]), rend: (&[f32], &[f32])) -> Frames {
        let n = refr.0.len().min(rend.0.len());
        let starts: Vec<usize> = (0..n.saturating_sub(N)).step_by(HOP).collect();
        let energy = |s: &Spectra| -> f64 { s.l.iter().chain(&s.r).map(|c| c.norm_sqr()).sum() };
        let frames: Vec<(Spectra, Spectra)> = starts
            .iter()
            .map(|&at| {
                let a = Spectra {
                    l: self.spectrum(refr.0, at),
                    r: self.spectrum(refr.1, at),
                };
                let b = Spectra {
                    l: self.spectrum(rend.0, at),
                    r: self.spectrum(rend.1, at),
                };
                (a, b)
            })
            .collect();
        let loudest = frames.iter().map(|(a, _)| energy(a)).fold(0.0, f64::max);
        let mut out = Frames::default();
        let mut prev: Option<(Vec<f64>, Vec<f64>)> = None;
        for (a, b) in &frames {
            if energy(a) < loudest * FRAME_FLOOR {
                prev = None;
                continue;
            }
            self.frame(a, b, &mut out, &mut prev);
        }
        out
    }

    /// One frame's metrics into `out`; `prev`: the last judged frame's band
    /// levels (reference, rendering), for the artifact measure.
    fn frame(
        &self,
        a: &Spectra,
        b: &Spectra,
        out: &mut Frames,
        prev: &mut Option<(Vec<f64>, Vec<f64>)>,
    ) {
        let pow = |s: &[Complex64], (lo, hi): (usize, usize)| -> f64 {
            s[lo..hi].iter().map(|c| c.norm_sqr()).sum::<f64>() + 1e-30
        };
        let db = |x: f64| 10.0 * x.log10();
        let mean_band = self
            .bands
            .iter()
            .map(|&bd| pow(&a.l, bd) + pow(&a.r, bd))
            .sum::<f64>()
            / self.bands.len() as f64;
        let live = |bd: (usize, usize)| pow(&a.l, bd) + pow(&a.r, bd) >= mean_band * BAND_FLOOR;
        // Spectral error, coherence, and the levels for the artifact measure.
        let (mut spec, mut coh, mut m) = (0.0, 0.0, 0usize);
        let (mut lev_a, mut lev_b) = (Vec::new(), Vec::new());
        for &bd in &self.bands {
            let ok = live(bd);
            for (x, y) in [(&a.l, &b.l), (&a.r, &b.r)] {
                let (pa, pb) = (db(pow(x, bd)), db(pow(y, bd)));
                lev_a.push(if ok { pa } else { f64::NAN });
                lev_b.push(pb);
                if ok {
                    spec += (pb - pa).abs() / 2.0;
                }
            }
            if ok {
                coh += (coherence(&a.l, &a.r, bd) - coherence(&b.l, &b.r, bd)).abs();
                m += 1;
            }
        }
        if m > 0 {
            out.spectral.push(spec / m as f64);
            out.coherence.push(coh / m as f64);
        }
        let (mut ild, mut k) = (0.0, 0usize);
        for &bd in self.ild_bands.iter().filter(|&&bd| live(bd)) {
            let da = db(pow(&a.l, bd)) - db(pow(&a.r, bd));
            let dbb = db(pow(&b.l, bd)) - db(pow(&b.r, bd));
            ild += (da - dbb).abs();
            k += 1;
        }
        if k > 0 {
            out.ild.push(ild / k as f64);
        }
        for (est, v) in [
            (ItdLowpass::Ideal, &mut out.itd_ideal),
            (ItdLowpass::Butterworth8, &mut out.itd_bw8),
        ] {
            if let (Some(ta), Some(tb)) = (self.itd(a, est), self.itd(b, est)) {
                v.push((ta - tb).abs() * 1e6);
            }
        }
        if let Some((pa, pb)) = prev.as_ref() {
            let (mut f, mut j) = (0.0, 0usize);
            for i in 0..lev_a.len() {
                let (da, dbb) = (lev_a[i] - pa[i], lev_b[i] - pb[i]);
                if da.is_finite() {
                    f += (dbb - da).abs();
                    j += 1;
                }
            }
            if j > 0 {
                out.artifact.push(f / j as f64);
            }
        }
        *prev = Some((lev_a, lev_b));
    }

    /// The frame's ITD (s) under `est`; `None` when there is too little
    /// below 1.5 kHz to tell.
    fn itd(&self, s: &Spectra, est: ItdLowpass) -> Option<f64> {
        let df = self.rate / N as f64;
        let mut x: Vec<Complex64> =
            s.l.iter()
                .zip(&s.r)
                .enumerate()
                .map(|(k, (l, r))| l.conj() * r * est.cross_weight(k as f64 * df))
                .collect();
        let low: f64 = x.iter().map(|c| c.norm()).sum();
        if low <= 1e-12 {
            return None;
        }
        x[0].im = 0.0;
        let last = x.len() - 1;
        x[last].im = 0.0;
        let mut cc = vec![0.0; N];
        let _ = self.ifft.process(&mut x, &mut cc);
        let max_lag = (est.max_lag_s() * self.rate) as isize;
        let at = |lag: isize| cc[lag.rem_euclid(N as isize) as usize];
        let best = (-max_lag..=max_lag).max_by(|a, b| at(*a).total_cmp(&at(*b)))?;
        let (p, q, r) = (at(best - 1), at(best), at(best + 1));
        let den = p - 2.0 * q + r;
        let frac = if best.abs() == max_lag || den.abs() < 1e-30 {
            0.0
        } else {
            (0.5 * (p - r) / den).clamp(-0.5, 0.5)
        };
        Some((best as f64 + frac) / self.rate)
    }
}

/// |Σ L R*| / √(Σ|L|² Σ|R|²) over a band's bins.
fn coherence(l: &[Complex64], r: &[Complex64], (lo, hi): (usize, usize)) -> f64 {
    let mut x = Complex64::new(0.0, 0.0);
    let (mut pl, mut pr) = (0.0, 0.0);
    for k in lo..hi {
        x += l[k] * r[k].conj();
        pl += l[k].norm_sqr();
        pr += r[k].norm_sqr();
    }
    x.norm() / (pl * pr).sqrt().max(1e-30)
}
