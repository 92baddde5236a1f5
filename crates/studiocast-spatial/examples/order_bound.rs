//! How good can any linear (time-invariant) ambisonic binaural decoder of a
//! given order be on the accuracy report's level metrics?
//!
//! For a linear decoder the rendered band energy of a plane wave from Ω is
//! Σ_f |c(f)·Y(Ω)|² = Y(Ω)ᵀ A Y(Ω) with A = Σ_f Re(c c^H) positive
//! semi-definite, whatever the filters (phase, ITD and FIR length ignored,
//! which only makes the decoder's job easier). So per ear and ERB band the
//! best achievable level pattern is a PSD quadratic form in the real SH
//! vector. This fits A = B·Bᵀ directly to the measured band levels in dB
//! (smoothed absolute error, Adam, several starts) and reports the report's
//! medians for those optimal levels: a floor no linear decoder of that order
//! goes below (up to the optimiser's reach).
//!
//! `order_bound [orders]`, e.g. `order_bound 1,3`; `STARTS` and `ITERS`
//! (default 4 and 1500) set the optimiser's effort; `CAP=T` caps the loss
//! at T dB per band (robust fit, for the medians).
use realfft::RealFftPlanner;
use studiocast_spatial::design::{design, DecoderMethod, DesignOptions};
use studiocast_spatial::hrtf::{HrtfSet, DEFAULT_SOFA};
use studiocast_spatial::metrics::erb_bands;
use studiocast_spatial::sh::{Normalisation, ShEvaluator};

fn band_db(h: &HrtfSet, bands: &[(usize, usize)], nfft: usize) -> [Vec<Vec<f64>>; 2] {
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(nfft);
    let levels = |ir: &[f32]| -> Vec<f64> {
        let mut buf = vec![0.0; nfft];
        for (b, s) in buf.iter_mut().zip(ir) {
            *b = *s as f64;
        }
        let mut out = fft.make_output_vec();
        let _ = fft.process(&mut buf, &mut out);
        bands
            .iter()
            .map(|&(lo, hi)| {
                let e: f64 = out[lo..hi].iter().map(|c| c.norm_sqr()).sum();
                10.0 * e.max(1e-30).log10()
            })
            .collect()
    };
    [
        h.left.iter().map(|ir| levels(ir)).collect(),
        h.right.iter().map(|ir| levels(ir)).collect(),
    ]
}

/// Σ over the band's bins of Re(c cᴴ) for one ear of a designed decoder:
/// its own level pattern, as a starting point (so the optimum found is never
/// worse than what the decoder already does).
fn decoder_gram(filters: &[Vec<f32>], bands: &[(usize, usize)], nfft: usize) -> Vec<Vec<f64>> {
    let k = filters.len();
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(nfft);
    let spectra: Vec<_> = filters
        .iter()
        .map(|f| {
            let mut buf = vec![0.0; nfft];
            for (b, s) in buf.iter_mut().zip(f) {
                *b = *s as f64;
            }
            let mut out = fft.make_output_vec();
            let _ = fft.process(&mut buf, &mut out);
            out
        })
        .collect();
    bands
        .iter()
        .map(|&(lo, hi)| {
            let mut a = vec![0.0; k * k];
            for (i, si) in spectra.iter().enumerate() {
                for (j, sj) in spectra.iter().enumerate() {
                    a[i * k + j] += si[lo..hi]
                        .iter()
                        .zip(&sj[lo..hi])
                        .map(|(x, y)| (x * y.conj()).re)
                        .sum::<f64>();
                }
            }
            a
        })
        .collect()
}

/// Lower Cholesky factor of a (loaded) PSD matrix, row-major.
fn cholesky(a: &[f64], k: usize) -> Vec<f64> {
    let load = 1e-9 * (0..k).map(|i| a[i * k + i]).sum::<f64>().max(1e-300) / k as f64;
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let mut s = a[i * k + j] + if i == j { load } else { 0.0 };
            for m in 0..j {
                s -= l[i * k + m] * l[j * k + m];
            }
            l[i * k + j] = if i == j {
                s.max(1e-300).sqrt()
            } else {
                s / l[j * k + j]
            };
        }
    }
    l
}

/// Best PSD quadratic-form levels (dB) for one ear and band.
fn fit_band(y: &[Vec<f64>], target: &[f64], k: usize, init: Option<&[f64]>) -> Vec<f64> {
    let q = y.len();
    let mean = target.iter().sum::<f64>() / q as f64;
    let scale = 10f64.powf(mean / 20.0);
    let c = 10.0 / std::f64::consts::LN_10;
    let eps = 0.05; // dB: smoothing of |x| near zero
    let cap: f64 = std::env::var("CAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let mut best: Option<(f64, Vec<f64>)> = None;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let starts: usize = std::env::var("STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let iters: i32 = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    for start in 0..starts {
        // B (k×k, row-major); start 0: W only (omni), others random.
        let mut b = vec![0.0; k * k];
        for (i, v) in b.iter_mut().enumerate() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let r = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            *v = if start == 0 {
                if i == 0 {
                    scale
                } else {
                    0.0
                }
            } else {
                scale * r
            };
        }
        if start == 1 {
            if let Some(a) = init {
                b = cholesky(a, k);
            }
        }
        let (mut m, mut v2) = (vec![0.0; k * k], vec![0.0; k * k]);
        let lr = 0.02 * b.iter().map(|x| x.abs()).fold(0.0, f64::max).max(1e-30);
        for it in 1..=iters {
            let mut grad = vec![0.0; k * k];
            let mut bty = vec![0.0; k];
            for (yq, t) in y.iter().zip(target) {
                for (j, o) in bty.iter_mut().enumerate() {
                    *o = (0..k).map(|i| b[i * k + j] * yq[i]).sum();
                }
                let e: f64 = bty.iter().map(|x| x * x).sum::<f64>().max(1e-300);
                let d = c * e.ln() - t;
                let a = (d * d + eps * eps).sqrt();
                // Optionally cap the loss (T·tanh(|d|/T)), giving up on the
                // worst directions of a band to fit the majority better: the
                // report takes medians.
                let dl = if cap > 0.0 {
                    1.0 - (a / cap).tanh().powi(2)
                } else {
                    1.0
                };
                let g = dl * d / a * c * 2.0 / e;
                for i in 0..k {
                    for j in 0..k {
                        grad[i * k + j] += g * yq[i] * bty[j];
                    }
                }
            }
            for i in 0..k * k {
                let gi = grad[i] / q as f64;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v2[i] = 0.999 * v2[i] + 0.001 * gi * gi;
                let mh = m[i] / (1.0 - 0.9f64.powi(it));
                let vh = v2[i] / (1.0 - 0.999f64.powi(it));
                b[i] -= lr * mh / (vh.sqrt() + 1e-12 * scale);
            }
        }
        // The loss where the optimiser stopped (also with no iterations).
        let loss = y
            .iter()
            .zip(target)
            .map(|(yq, t)| {
                let e: f64 = (0..k)
                    .map(|j| (0..k).map(|i| b[i * k + j] * yq[i]).sum::<f64>().powi(2))
                    .sum();
                let d = c * e.max(1e-300).ln() - t;
                let a = (d * d + eps * eps).sqrt();
                if cap > 0.0 {
                    cap * (a / cap).tanh()
                } else {
                    a
                }
            })
            .sum::<f64>()
            / q as f64;
        if best.as_ref().is_none_or(|(l, _)| loss < *l) {
            let lev = y
                .iter()
                .map(|yq| {
                    let e: f64 = (0..k)
                        .map(|j| (0..k).map(|i| b[i * k + j] * yq[i]).sum::<f64>().powi(2))
                        .sum();
                    c * e.max(1e-300).ln()
                })
                .collect();
            best = Some((loss, lev));
        }
    }
    best.map(|(_, l)| l).unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let orders: Vec<usize> = std::env::args()
        .nth(1)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1]);
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000)
        .expect("MIT KEMAR SOFA from Debian's libmysofa1 is required (apt-get install libmysofa1)");
    let nfft = (2 * h.taps()).next_power_of_two().max(4096);
    let rate = h.sample_rate as f64;
    let spec_bands = erb_bands(200.0, 16000.0, nfft, rate);
    let ild_bands = erb_bands(1500.0, 16000.0, nfft, rate);
    let spec_ref = band_db(&h, &spec_bands, nfft);
    let ild_ref = band_db(&h, &ild_bands, nfft);
    for order in orders {
        let t = std::time::Instant::now();
        let k = (order + 1) * (order + 1);
        let mut ev = ShEvaluator::new(order);
        let y: Vec<Vec<f64>> = h
            .dirs
            .iter()
            .map(|d| ev.eval_vec(*d, Normalisation::Sn3d))
            .collect();
        // SN3D, the designed filters' convention, so that they seed the fit.
        let dec = design(&h, &DesignOptions::new(DecoderMethod::MagLs, order)).expect("design");
        let fit_all = |reference: &[Vec<Vec<f64>>; 2], bands: &[(usize, usize)]| {
            let per_ear = |ear: usize| -> Vec<Vec<f64>> {
                let filters = if ear == 0 { &dec.left } else { &dec.right };
                let grams = decoder_gram(filters, bands, nfft);
                let cols: Vec<Vec<f64>> = (0..bands.len())
                    .map(|b| {
                        let target: Vec<f64> = reference[ear].iter().map(|l| l[b]).collect();
                        fit_band(&y, &target, k, Some(&grams[b]))
                    })
                    .collect();
                (0..h.len())
                    .map(|q| cols.iter().map(|c| c[q]).collect())
                    .collect()
            };
            [per_ear(0), per_ear(1)]
        };
        let spec_fit = fit_all(&spec_ref, &spec_bands);
        let sd: Vec<f64> = (0..h.len())
            .map(|q| {
                (0..2)
                    .map(|ear| {
                        spec_fit[ear][q]
                            .iter()
                            .zip(&spec_ref[ear][q])
                            .map(|(a, b)| (a - b).abs())
                            .sum::<f64>()
                            / spec_bands.len() as f64
                    })
                    .sum::<f64>()
                    / 2.0
            })
            .collect();
        let ild_fit = fit_all(&ild_ref, &ild_bands);
        let ild: Vec<f64> = (0..h.len())
            .map(|q| {
                (0..ild_bands.len())
                    .map(|b| {
                        let have = ild_fit[0][q][b] - ild_fit[1][q][b];
                        let want = ild_ref[0][q][b] - ild_ref[1][q][b];
                        (have - want).abs()
                    })
                    .sum::<f64>()
                    / ild_bands.len() as f64
            })
            .collect();
        println!(
            "order {order}: best linear decoder, median spectral {:.2} dB, median |ΔILD| {:.2} dB (per-ear optimal levels)  ({:.1} s)",
            median(sd),
            median(ild),
            t.elapsed().as_secs_f64()
        );
    }
}
