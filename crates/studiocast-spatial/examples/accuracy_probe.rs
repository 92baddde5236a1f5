//! Accuracy of the binaural decoder designs on the default HRTF set.
//!
//! `accuracy_probe [orders] [methods]`, e.g. `accuracy_probe 1,3,5 magls`.
//! Environment overrides of the design options: LEN, FC, COV, MAXRE, REG,
//! IPD, IPDF, PERC, SMOOTH, WEXP, WFLOOR, ITER, LEQ, REFINE, MOM, XD, TRANS, IRLS,
//! IRLSEPS, LOGFIT, REW, ISAT, IGAIN, COVB,
//! COVF.
//! ITDDIAG=1 prints the ITD per lateral angle.
//! TDIAG=1 prints the bulk delay and the energy envelope of the first filters. DIAG=1 also prints the
//! per-band diffuse-field error and median level error.
use realfft::RealFftPlanner;
use studiocast_spatial::design::{design, DecoderMethod, DesignOptions};
use studiocast_spatial::hrtf::{HrtfSet, DEFAULT_SOFA};
use studiocast_spatial::metrics::{erb_bands, evaluate, evaluate_with, rendered_irs, ItdLowpass};

fn env<T: std::str::FromStr>(k: &str) -> Option<T> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

/// Per ERB band: diffuse-field error (dB, left ear) and the median over
/// directions of the left-ear level error (dB, signed).
fn diagnose(h: &HrtfSet, f: &studiocast_spatial::design::ShFilters) {
    let (rl, _) = rendered_irs(f, &h.dirs);
    let nfft = 4096;
    let rate = h.sample_rate as f64;
    let bands = erb_bands(200.0, 16000.0, nfft, rate);
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(nfft);
    let energies = |ir: &[f32]| -> Vec<f64> {
        let mut buf = vec![0.0; nfft];
        for (b, s) in buf.iter_mut().zip(ir) {
            *b = *s as f64;
        }
        let mut out = fft.make_output_vec();
        let _ = fft.process(&mut buf, &mut out);
        bands
            .iter()
            .map(|&(lo, hi)| {
                out[lo..hi]
                    .iter()
                    .map(|c| c.norm_sqr())
                    .sum::<f64>()
                    .max(1e-30)
            })
            .collect()
    };
    let nb = bands.len();
    let mut df = [vec![0.0; nb], vec![0.0; nb]];
    let mut err: Vec<Vec<f64>> = vec![Vec::new(); nb];
    for ((ir, r), w) in h.left.iter().zip(&rl).zip(&h.weights) {
        let (a, b) = (energies(ir), energies(r));
        for i in 0..nb {
            df[0][i] += w * a[i];
            df[1][i] += w * b[i];
            err[i].push(10.0 * (b[i] / a[i]).log10());
        }
    }
    for i in 0..nb {
        err[i].sort_by(|a, b| a.total_cmp(b));
        let med_abs = {
            let mut v: Vec<f64> = err[i].iter().map(|x| x.abs()).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let f0 = bands[i].0 as f64 * rate / nfft as f64;
        println!(
            "  {:6.0} Hz  DF {:+5.2}  med err {:+5.2}  med|err| {:4.2}  p10 {:+5.2} p90 {:+5.2}",
            f0,
            10.0 * (df[1][i] / df[0][i]).log10(),
            err[i][err[i].len() / 2],
            med_abs,
            err[i][err[i].len() / 10],
            err[i][err[i].len() * 9 / 10]
        );
    }
}

/// ITD (µs, ideal 1.5 kHz low-pass cross-correlation peak, integer lag
/// plus parabolic interpolation) of one response pair.
fn itd_us(l: &[f32], r: &[f32], rate: f64) -> f64 {
    let nfft = 4096;
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(nfft);
    let ifft = planner.plan_fft_inverse(nfft);
    let spec = |ir: &[f32]| {
        let mut buf = vec![0.0; nfft];
        for (b, s) in buf.iter_mut().zip(ir) {
            *b = *s as f64;
        }
        let mut out = fft.make_output_vec();
        let _ = fft.process(&mut buf, &mut out);
        out
    };
    let (a, b) = (spec(l), spec(r));
    let mut x: Vec<_> = a
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (a, c))| {
            a.conj() * c * f64::from(u8::from(i as f64 * rate / nfft as f64 <= 1500.0))
        })
        .collect();
    x[0].im = 0.0;
    let last = x.len() - 1;
    x[last].im = 0.0;
    let mut cc = vec![0.0; nfft];
    let _ = ifft.process(&mut x, &mut cc);
    let max_lag = (0.0015 * rate) as isize;
    let at = |lag: isize| cc[lag.rem_euclid(nfft as isize) as usize];
    let best = (-max_lag..=max_lag)
        .max_by(|p, q| at(*p).total_cmp(&at(*q)))
        .unwrap_or(0);
    let (a, b, c) = (at(best - 1), at(best), at(best + 1));
    let den = a - 2.0 * b + c;
    let frac = if den.abs() > 1e-30 {
        0.5 * (a - c) / den
    } else {
        0.0
    };
    (best as f64 + frac.clamp(-0.5, 0.5)) / rate * 1e6
}

/// Reference vs rendered ITD per 10° lateral-angle bin (median over directions).
fn itd_diag(h: &HrtfSet, f: &studiocast_spatial::design::ShFilters) {
    let (rl, rr) = rendered_irs(f, &h.dirs);
    let rate = h.sample_rate as f64;
    let mut bins: Vec<Vec<(f64, f64)>> = vec![Vec::new(); 19];
    for q in 0..h.len() {
        let lat = h.dirs[q][1].clamp(-1.0, 1.0).asin().to_degrees();
        let i = ((lat + 90.0) / 10.0).round() as usize;
        bins[i].push((
            itd_us(&h.left[q], &h.right[q], rate),
            itd_us(&rl[q], &rr[q], rate),
        ));
    }
    for (i, v) in bins.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let mut r: Vec<f64> = v.iter().map(|p| p.0).collect();
        let mut d: Vec<f64> = v.iter().map(|p| p.1).collect();
        let mut e: Vec<f64> = v.iter().map(|p| (p.1 - p.0).abs()).collect();
        for x in [&mut r, &mut d, &mut e] {
            x.sort_by(|a, b| a.total_cmp(b));
        }
        println!(
            "  lat {:+4}°  n {:3}  ref {:+7.1}  rend {:+7.1}  med|err| {:6.1}",
            i as i32 * 10 - 90,
            v.len(),
            r[r.len() / 2],
            d[d.len() / 2],
            e[e.len() / 2]
        );
    }
}

fn main() {
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000)
        .expect("MIT KEMAR SOFA from Debian's libmysofa1 is required (apt-get install libmysofa1)");
    let args: Vec<String> = std::env::args().collect();
    let orders: Vec<usize> = args
        .get(1)
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![1, 3, 5]);
    let methods: Vec<DecoderMethod> = args
        .get(2)
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![
            DecoderMethod::MagLs,
            DecoderMethod::Ls,
            DecoderMethod::Vls,
        ]);
    for &method in &methods {
        for &order in &orders {
            let t = std::time::Instant::now();
            let mut o = DesignOptions::new(method, order);
            o.filter_len = env("LEN");
            o.cutoff_hz = env("FC");
            if let Some(c) = env::<u8>("COV") {
                o.covariance_constraint = c == 1;
            }
            if let Some(c) = env::<u8>("MAXRE") {
                o.max_re = c == 1;
            }
            if let Some(c) = env("REG") {
                o.regularisation = c;
            }
            if let Some(c) = env("IPD") {
                o.ipd_limit_hz = c;
            }
            if let Some(c) = env("IPDF") {
                o.ipd_full_hz = c;
            }
            if let Some(c) = env::<u8>("PERC") {
                o.perceptual = c == 1;
            }
            if let Some(c) = env("SMOOTH") {
                o.smoothing_erb = c;
            }
            if let Some(c) = env("WEXP") {
                o.weight_exponent = c;
            }
            if let Some(c) = env("WFLOOR") {
                o.weight_floor_db = c;
            }
            if let Some(c) = env("ITER") {
                o.iterations = c;
            }
            if let Some(c) = env("REFINE") {
                o.refinements = c;
            }
            if let Some(c) = env("TRANS") {
                o.transition = c;
            }
            if let Some(c) = env("MOM") {
                o.momentum = c;
            }
            if let Some(c) = env("XD") {
                o.hf_extra_delay = c;
            }
            if let Some(c) = env("IRLS") {
                o.irls_exponent = c;
            }
            if let Some(c) = env("IRLSEPS") {
                o.irls_eps_db = c;
            }
            if let Some(c) = env("COVB") {
                o.covariance_blend = c;
            }
            if let Some(c) = env("COVF") {
                o.covariance_max_hz = c;
            }
            if let Some(c) = env("IGAIN") {
                o.ipd_gain = c;
            }
            if let Some(c) = env("ISAT") {
                o.ipd_saturation = c;
            }
            if let Some(c) = env("REW") {
                o.reweights = c;
            }
            if let Some(c) = env::<u8>("LOGFIT") {
                o.log_fit = c == 1;
            }
            if let Some(c) = env::<u8>("LEQ") {
                o.diffuse_level_eq = c == 1;
            }
            let f = design(&h, &o).unwrap();
            let dt = t.elapsed();
            let a = evaluate(&h, &f);
            let bw = evaluate_with(&h, &f, ItdLowpass::Butterworth8);
            println!("{method:5} N={order} ILD {:.2}/{:.2} ITD {:.1}/{:.1} BW8 {:.1}/{:.1} SD {:.2}/{:.2} DF {:.2} IC {:.3}  ({:.2}s)",
                a.ild.median, a.ild.p95, a.itd.median, a.itd.p95, bw.itd.median, bw.itd.p95, a.spectral.median, a.spectral.p95, a.diffuse_magnitude, a.diffuse_coherence, dt.as_secs_f64());
            if env::<u8>("TDIAG") == Some(1) {
                println!(
                    "  bulk delay {:.1}",
                    studiocast_spatial::design::bulk_delay(&h)
                );
                for c in 0..f.channels().min(4) {
                    let e: Vec<String> = f.left[c]
                        .chunks(32)
                        .map(|b| {
                            format!(
                                "{:.0}",
                                10.0 * b
                                    .iter()
                                    .map(|v| (*v as f64).powi(2))
                                    .sum::<f64>()
                                    .max(1e-20)
                                    .log10()
                            )
                        })
                        .collect();
                    println!("  ch{c}: {}", e.join(" "));
                }
            }
            if env::<u8>("ITDDIAG") == Some(1) {
                itd_diag(&h, &f);
            }
            if env::<u8>("DIAG") == Some(1) {
                diagnose(&h, &f);
            }
        }
    }
}
