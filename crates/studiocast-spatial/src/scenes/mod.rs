//! Scene-based evaluation of binaural renderers: plane waves flatter a
//! parametric method (a single plane wave is what it assumes), so this
//! renders synthetic scenes at 48 kHz (one source; two sources 30° and 90°
//! apart; one source in a diffuse field at direct-to-reverberant ratios of
//! 0 and −6 dB; three sources in a diffuse field) with speech-like,
//! piano-like and noise signals at many directions, and compares each
//! renderer with the direct HRIR convolution of every component, per
//! time-frequency frame (see [`measure`]). Sources and the diffuse field's
//! directions are measured directions of the set, so the reference is
//! exact. The diffuse field is 48 directions of decorrelated noise.

pub mod measure;
pub mod signals;

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

use crate::design::ShFilters;
use crate::error::{Result, SpatialError};
use crate::hrtf::HrtfSet;
use crate::metrics::{stat, Stat};
use crate::parametric::{ParametricOptions, ParametricRenderer};
use crate::renderer::BinauralRenderer;
use crate::sh::{unit_vector, Normalisation, ShEvaluator};
pub use measure::Frames;
use measure::Meter;
pub use signals::Signal;

/// Seconds of each case.
const SECONDS: f64 = 2.0;
const DIFFUSE_DIRECTIONS: usize = 48;
const BLOCK: usize = 512;

/// One scene: sources (signal, grid direction) and the diffuse field's
/// level relative to the direct sound (`None`: no diffuse field).
struct Case {
    sources: Vec<(Vec<f32>, usize)>,
    drr_db: Option<f64>,
}

/// The renderers compared.
pub struct Renderers<'a> {
    pub hrtf: &'a HrtfSet,
    /// First-order MagLS (also the parametric renderer's diffuse part).
    pub foa: &'a ShFilters,
    /// Third-order MagLS, fed the scene encoded at order 3.
    pub hoa: &'a ShFilters,
}

/// Medians (P95) of each metric, per scene type and renderer.
#[derive(Debug, Clone)]
pub struct SceneRow {
    pub scene: &'static str,
    pub renderer: &'static str,
    pub ild: Stat,
    pub itd_ideal: Stat,
    pub itd_bw8: Stat,
    pub spectral: Stat,
    pub coherence: Stat,
    pub artifact: Stat,
}

pub const RENDERERS: [&str; 3] = ["parametric FOA", "MagLS FOA", "MagLS order 3"];

/// Every scene type through every renderer.
pub fn evaluate(r: &Renderers) -> Result<Vec<SceneRow>> {
    let rate = f64::from(r.hrtf.sample_rate);
    let n = (SECONDS * rate) as usize;
    let meter = Meter::new(rate);
    let mut rows = Vec::new();
    for (scene, cases) in scene_types(r.hrtf, n, rate) {
        let mut pooled: [Frames; 3] = Default::default();
        for case in &cases {
            let (refl, refr) = reference(r.hrtf, case, n)?;
            for (k, (l, rr)) in render_all(r, case, n)?.into_iter().enumerate() {
                pooled[k].extend(meter.compare((&refl, &refr), (&l, &rr)));
            }
        }
        // No frame judged is NaN, not 0 (which would look like a win).
        let st = |v: Vec<f64>| {
            if v.is_empty() {
                Stat {
                    median: f64::NAN,
                    p95: f64::NAN,
                }
            } else {
                stat(v)
            }
        };
        for (k, f) in pooled.into_iter().enumerate() {
            rows.push(SceneRow {
                scene,
                renderer: RENDERERS[k],
                ild: st(f.ild),
                itd_ideal: st(f.itd_ideal),
                itd_bw8: st(f.itd_bw8),
                spectral: st(f.spectral),
                coherence: st(f.coherence),
                artifact: st(f.artifact),
            });
        }
    }
    Ok(rows)
}

/// The grid direction nearest (azimuth, elevation) in degrees.
fn at(h: &HrtfSet, az: f64, el: f64) -> usize {
    h.nearest(unit_vector(az.to_radians(), el.to_radians()))
}

fn scene_types(h: &HrtfSet, n: usize, rate: f64) -> Vec<(&'static str, Vec<Case>)> {
    let sig = |k: usize, seed: u64| Signal::ALL[k % 3].make(seed, n, rate);
    let one: Vec<Case> = [(0.0, 0.0), (60.0, 0.0), (135.0, 20.0), (-100.0, -20.0)]
        .iter()
        .enumerate()
        .flat_map(|(d, &(az, el))| (0..3).map(move |k| (d, az, el, k)))
        .map(|(d, az, el, k)| Case {
            sources: vec![(sig(k, (10 * d + k) as u64), at(h, az, el))],
            drr_db: None,
        })
        .collect();
    let two = |sep: f64| -> Vec<Case> {
        [0.0, 90.0, -150.0]
            .iter()
            .enumerate()
            .map(|(i, &c)| Case {
                sources: vec![
                    (sig(i, 100 + i as u64), at(h, c - sep / 2.0, 0.0)),
                    (sig(i + 1, 200 + i as u64), at(h, c + sep / 2.0, 0.0)),
                ],
                drr_db: None,
            })
            .collect()
    };
    let diffuse = |drr: f64| -> Vec<Case> {
        [(30.0, 0.0), (-90.0, 10.0), (180.0, 0.0)]
            .iter()
            .enumerate()
            .map(|(i, &(az, el))| Case {
                sources: vec![(sig(i, 300 + i as u64), at(h, az, el))],
                drr_db: Some(drr),
            })
            .collect()
    };
    let three: Vec<Case> = [0.0, 45.0]
        .iter()
        .enumerate()
        .map(|(i, &rot)| Case {
            sources: (0..3)
                .map(|k| {
                    (
                        sig(k + i, 400 + (3 * i + k) as u64),
                        at(h, rot + 120.0 * k as f64, 0.0),
                    )
                })
                .collect(),
            drr_db: Some(0.0),
        })
        .collect();
    vec![
        ("1: one source", one),
        ("2: two sources 30° apart", two(30.0)),
        ("2: two sources 90° apart", two(90.0)),
        ("3: one source, diffuse, DRR 0 dB", diffuse(0.0)),
        ("3: one source, diffuse, DRR -6 dB", diffuse(-6.0)),
        ("4: three sources, diffuse, DRR 0 dB", three),
    ]
}

/// Every component of a case: (signal, grid direction), the diffuse
/// field's included (decorrelated noise from spread directions, its total
/// power `drr` below the direct sound's).
fn components(h: &HrtfSet, case: &Case, n: usize) -> Vec<(Vec<f32>, usize)> {
    let mut out = case.sources.clone();
    if let Some(drr) = case.drr_db {
        let direct: f64 = case
            .sources
            .iter()
            .map(|(s, _)| s.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>())
            .sum();
        let step = (h.len() / DIFFUSE_DIRECTIONS).max(1);
        let dirs: Vec<usize> = (0..h.len())
            .step_by(step)
            .take(DIFFUSE_DIRECTIONS)
            .collect();
        let noises: Vec<Vec<f32>> = dirs
            .iter()
            .map(|&i| signals::noise(7_000 + i as u64, n))
            .collect();
        let diffuse: f64 = noises
            .iter()
            .map(|s| s.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>())
            .sum();
        let g = (direct / diffuse * 10f64.powf(-drr / 10.0)).sqrt() as f32;
        for (s, i) in noises.into_iter().zip(dirs) {
            out.push((s.into_iter().map(|v| v * g).collect(), i));
        }
    }
    out
}

/// Direct HRIR convolution of every component, summed (FFT convolution).
fn reference(h: &HrtfSet, case: &Case, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let len = (n + h.taps()).next_power_of_two();
    let mut p = RealFftPlanner::<f64>::new();
    let (fft, ifft) = (p.plan_fft_forward(len), p.plan_fft_inverse(len));
    let err = |e: realfft::FftError| SpatialError::Design(e.to_string());
    let spectrum = |x: &[f32]| -> Result<Vec<Complex<f64>>> {
        let mut buf = vec![0.0f64; len];
        for (b, v) in buf.iter_mut().zip(x) {
            *b = f64::from(*v);
        }
        let mut out = fft.make_output_vec();
        fft.process(&mut buf, &mut out).map_err(err)?;
        Ok(out)
    };
    let mut acc = [
        vec![Complex::new(0.0, 0.0); len / 2 + 1],
        vec![Complex::new(0.0, 0.0); len / 2 + 1],
    ];
    for (s, i) in components(h, case, n) {
        let x = spectrum(&s)?;
        for (ear, ir) in [&h.left[i], &h.right[i]].into_iter().enumerate() {
            let hs = spectrum(ir)?;
            for ((a, x), h) in acc[ear].iter_mut().zip(&x).zip(&hs) {
                *a += x * h;
            }
        }
    }
    let mut ears = Vec::new();
    for mut a in acc {
        let mut out = vec![0.0f64; len];
        ifft.process(&mut a, &mut out).map_err(err)?;
        ears.push(
            out[..n]
                .iter()
                .map(|v| (*v / len as f64) as f32)
                .collect::<Vec<f32>>(),
        );
    }
    let r = ears.pop().unwrap_or_default();
    let l = ears.pop().unwrap_or_default();
    Ok((l, r))
}

/// The case encoded at `order` (AmbiX), planar, padded to whole blocks.
fn encode(h: &HrtfSet, comps: &[(Vec<f32>, usize)], order: usize, n: usize) -> Vec<Vec<f32>> {
    let k = (order + 1) * (order + 1);
    let len = n.div_ceil(BLOCK) * BLOCK;
    let mut ev = ShEvaluator::new(order);
    let mut y = vec![0.0; k];
    let mut out = vec![vec![0.0f32; len]; k];
    for (s, i) in comps {
        ev.eval(h.dirs[*i], Normalisation::Sn3d, &mut y);
        for (o, g) in out.iter_mut().zip(&y) {
            for (o, v) in o.iter_mut().zip(s) {
                *o += v * *g as f32;
            }
        }
    }
    out
}

type Ears = (Vec<f32>, Vec<f32>);

/// The case through the three renderers, each output aligned with the
/// input (the parametric renderer's latency taken out).
fn render_all(r: &Renderers, case: &Case, n: usize) -> Result<Vec<Ears>> {
    let comps = components(r.hrtf, case, n);
    let foa = encode(r.hrtf, &comps, 1, n);
    let hoa = encode(r.hrtf, &comps, 3, n);
    let mut p = ParametricRenderer::new(r.hrtf, r.foa, &ParametricOptions::default())?;
    let lat = p.latency();
    let mut padded = foa.clone();
    padded.iter_mut().for_each(|c| c.resize(c.len() + lat, 0.0));
    let ins: Vec<&[f32]> = padded.iter().map(|c| c.as_slice()).collect();
    let (mut pl, mut pr) = (vec![0.0; ins[0].len()], vec![0.0; ins[0].len()]);
    p.process(&ins, &mut pl, &mut pr)?;
    let par = (pl[lat..lat + n].to_vec(), pr[lat..lat + n].to_vec());
    Ok(vec![par, linear(r.foa, &foa, n)?, linear(r.hoa, &hoa, n)?])
}

fn linear(f: &ShFilters, input: &[Vec<f32>], n: usize) -> Result<Ears> {
    let mut r = BinauralRenderer::new(f, BLOCK)?;
    let len = input[0].len();
    let (mut l, mut rr) = (vec![0.0; len], vec![0.0; len]);
    for at in (0..len).step_by(BLOCK) {
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[at..at + BLOCK]).collect();
        r.process_into_buffer(&ins, &mut l[at..at + BLOCK], &mut rr[at..at + BLOCK])?;
    }
    l.truncate(n);
    rr.truncate(n);
    Ok((l, rr))
}
