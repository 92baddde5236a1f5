#![allow(dead_code)]
use std::path::Path;
use std::sync::OnceLock;

use studiocast_spatial::{design, DecoderMethod, DesignOptions, HrtfSet, ShFilters, DEFAULT_SOFA};

pub fn kemar() -> &'static HrtfSet {
    static H: OnceLock<HrtfSet> = OnceLock::new();
    H.get_or_init(|| {
        HrtfSet::from_sofa(Path::new(DEFAULT_SOFA), 48_000).expect(
            "MIT KEMAR SOFA from Debian's libmysofa1 is required (apt-get install libmysofa1)",
        )
    })
}

pub fn magls(order: usize) -> ShFilters {
    design(kemar(), &DesignOptions::new(DecoderMethod::MagLs, order)).unwrap()
}

pub fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64) * (*v as f64)).sum()
}

pub fn onset(x: &[f32]) -> usize {
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    x.iter().position(|v| v.abs() >= 0.1 * peak).unwrap_or(0)
}

/// Render planar AmbiX input with the given block size.
pub fn render(
    f: &ShFilters,
    input: &[Vec<f32>],
    block: usize,
    mut each_block: impl FnMut(usize, &mut studiocast_spatial::BinauralRenderer),
) -> (Vec<f32>, Vec<f32>) {
    let mut r = studiocast_spatial::BinauralRenderer::new(f, block).unwrap();
    let n = input[0].len() / block * block;
    let (mut l, mut rr) = (vec![0.0; n], vec![0.0; n]);
    for (i, s) in (0..n).step_by(block).enumerate() {
        each_block(i, &mut r);
        let ins: Vec<&[f32]> = input.iter().map(|x| &x[s..s + block]).collect();
        r.process_into_buffer(&ins, &mut l[s..s + block], &mut rr[s..s + block])
            .unwrap();
    }
    (l, rr)
}

/// Plane-wave impulse from `dir` encoded at `order`, `len` samples.
pub fn impulse_from(order: usize, az_deg: f64, el_deg: f64, len: usize) -> Vec<Vec<f32>> {
    let mut ev = studiocast_spatial::sh::ShEvaluator::new(order);
    let y = ev.eval_vec(
        studiocast_spatial::sh::unit_vector(az_deg.to_radians(), el_deg.to_radians()),
        studiocast_spatial::sh::Normalisation::Sn3d,
    );
    y.iter()
        .map(|g| {
            let mut v = vec![0.0f32; len];
            v[0] = *g as f32;
            v
        })
        .collect()
}

fn xcorr_at(a: &[f32], b: &[f32], lag: isize) -> f64 {
    let mut s = 0.0f64;
    for (t, x) in a.iter().enumerate() {
        let j = t as isize + lag;
        if j >= 0 && (j as usize) < b.len() {
            s += *x as f64 * b[j as usize] as f64;
        }
    }
    s
}

/// Lag maximising the summed cross-correlation of two pairs.
pub fn xcorr_lag2(a: [&[f32]; 2], b: [&[f32]; 2], max_lag: isize) -> isize {
    let mut best = (0isize, f64::NEG_INFINITY);
    for lag in -max_lag..=max_lag {
        let s = xcorr_at(a[0], b[0], lag) + xcorr_at(a[1], b[1], lag);
        if s > best.1 {
            best = (lag, s);
        }
    }
    best.0
}

/// Lag (samples) maximising Σ a[t]·b[t+lag]: positive when `b` lags `a`.
pub fn xcorr_lag(a: &[f32], b: &[f32], max_lag: isize) -> isize {
    let mut best = (0isize, f64::NEG_INFINITY);
    for lag in -max_lag..=max_lag {
        let s = xcorr_at(a, b, lag);
        if s > best.1 {
            best = (lag, s);
        }
    }
    best.0
}

/// Zero-phase 1.5 kHz low-pass at 48 kHz (forward-backward one-pole pairs),
/// the band the ear uses for interaural time differences.
pub fn lowpass(x: &[f32]) -> Vec<f32> {
    let a = (-2.0 * std::f64::consts::PI * 1500.0 / 48_000.0).exp();
    let mut v: Vec<f64> = x.iter().map(|s| *s as f64).collect();
    for _ in 0..2 {
        let mut y = 0.0;
        for s in v.iter_mut() {
            y = (1.0 - a) * *s + a * y;
            *s = y;
        }
        let mut y = 0.0;
        for s in v.iter_mut().rev() {
            y = (1.0 - a) * *s + a * y;
            *s = y;
        }
    }
    v.into_iter().map(|s| s as f32).collect()
}
