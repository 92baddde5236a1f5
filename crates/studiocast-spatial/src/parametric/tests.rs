//! The parametric renderer against plane waves and a diffuse field built
//! from the measured set itself (MIT KEMAR, 48 kHz).

use std::sync::OnceLock;

use super::*;
use crate::design::{design, DecoderMethod, DesignOptions};
use crate::hrtf::DEFAULT_SOFA;

fn set() -> &'static (HrtfSet, ShFilters) {
    static SET: OnceLock<(HrtfSet, ShFilters)> = OnceLock::new();
    SET.get_or_init(|| {
        let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
        let f = design(&h, &DesignOptions::new(DecoderMethod::MagLs, 1)).unwrap();
        (h, f)
    })
}

/// White noise, deterministic, unit variance-ish.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.46
        })
        .collect()
}

/// First-order AmbiX (SN3D) of sources (signal, unit direction).
fn encode(sources: &[(Vec<f32>, [f64; 3])], n: usize) -> [Vec<f32>; 4] {
    let mut out: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0.0; n]);
    for (s, u) in sources {
        let g = [1.0, u[1], u[2], u[0]];
        for (c, o) in out.iter_mut().enumerate() {
            for (o, x) in o.iter_mut().zip(s) {
                *o += x * g[c] as f32;
            }
        }
    }
    out
}

struct Run {
    left: Vec<f32>,
    right: Vec<f32>,
    /// Per frame after the first 100 ms, every band's parameters.
    frames: Vec<Vec<BandParams>>,
}

fn run(r: &mut ParametricRenderer, foa: &[Vec<f32>; 4], block: usize) -> Run {
    let n = foa[0].len();
    let (mut left, mut right) = (vec![0.0; n], vec![0.0; n]);
    let mut frames = Vec::new();
    let mut i = 0;
    while i < n {
        let m = block.min(n - i);
        let ins: Vec<&[f32]> = foa.iter().map(|c| &c[i..i + m]).collect();
        let (l, rr) = (&mut left[i..i + m], &mut right[i..i + m]);
        r.process(&ins, l, rr).unwrap();
        i += m;
        if i > 4800 {
            frames.push(r.bands().collect());
        }
    }
    Run {
        left,
        right,
        frames,
    }
}

fn angle_deg(a: [f64; 3], b: [f64; 3]) -> f64 {
    (a[0] * b[0] + a[1] * b[1] + a[2] * b[2])
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

/// Bands between 100 Hz and 16 kHz.
fn audible(p: &BandParams) -> bool {
    let f = |k: usize| k as f64 * 48_000.0 / NFFT as f64;
    f(p.bins.0) >= 100.0 && f(p.bins.1) <= 16_000.0
}

const DIRS: [(f64, f64); 6] = [
    (0.0, 0.0),
    (30.0, 0.0),
    (90.0, 0.0),
    (-135.0, 20.0),
    (200.0, -30.0),
    (45.0, 60.0),
];

#[test]
fn a_plane_wave_is_found_within_3_degrees_and_not_diffuse() {
    let (h, f) = set();
    let n = 24_000;
    for (az, el) in DIRS {
        let u = crate::sh::unit_vector(az.to_radians(), el.to_radians());
        let foa = encode(&[(noise(7, n), u)], n);
        let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
        let out = run(&mut r, &foa, 480);
        for frame in &out.frames {
            for p in frame.iter().filter(|p| audible(p)) {
                let err = angle_deg(p.direction, u);
                assert!(err <= 3.0, "({az}, {el}): band {:?} at {err:.2}°", p.bins);
                assert!(p.diffuseness <= 0.1, "({az}, {el}): ψ {}", p.diffuseness);
            }
        }
    }
}

#[test]
fn rotation_turns_the_field_before_analysis() {
    let (h, f) = set();
    let n = 12_000;
    let foa = encode(&[(noise(3, n), [1.0, 0.0, 0.0])], n);
    let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    // A scene turned 90° to the left: the front source comes from the left.
    r.reset_rotation(Quat::from_ypr_degrees(90.0, 0.0, 0.0));
    let out = run(&mut r, &foa, 256);
    let last = out.frames.last().unwrap();
    for p in last.iter().filter(|p| audible(p)) {
        assert!(angle_deg(p.direction, [0.0, 1.0, 0.0]) <= 3.0, "{p:?}");
    }
}

/// Sources at measured directions (every 9th of the grid): a diffuse field
/// whose binaural reference is exact.
fn diffuse_sources(h: &HrtfSet, n: usize) -> Vec<(Vec<f32>, [f64; 3])> {
    (0..h.len())
        .step_by(9)
        .map(|i| (noise(100 + i as u64, n), h.dirs[i]))
        .collect()
}

#[test]
fn a_diffuse_field_is_diffuse() {
    let (h, f) = set();
    let n = 24_000;
    // Isotropic: 128 directions on a Fibonacci sphere (the measured grid
    // has nothing below -40° and is denser near the horizon, so a field
    // from its directions carries a net intensity upwards).
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    let sources: Vec<(Vec<f32>, [f64; 3])> = (0..128)
        .map(|i| {
            let z = 1.0 - (2 * i + 1) as f64 / 128.0;
            let r = (1.0 - z * z).sqrt();
            let a = golden * i as f64;
            (noise(500 + i as u64, n), [r * a.cos(), r * a.sin(), z])
        })
        .collect();
    let foa = encode(&sources, n);
    let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let out = run(&mut r, &foa, 480);
    let mut psi: Vec<f64> = out
        .frames
        .iter()
        .flat_map(|fr| fr.iter().filter(|p| audible(p)).map(|p| p.diffuseness))
        .collect();
    psi.sort_by(f64::total_cmp);
    let median = psi[psi.len() / 2];
    let mean = psi.iter().sum::<f64>() / psi.len() as f64;
    eprintln!(
        "diffuseness: median {median:.3}, mean {mean:.3}, P10 {:.3}",
        psi[psi.len() / 10]
    );
    assert!(mean >= 0.9, "mean diffuseness {mean}");
}

/// Each ear's energy (dB re direct HRIR convolution) of the diffuse field
/// from the measured directions, after `skip` samples.
fn diffuse_energy_db(h: &HrtfSet, f: &ShFilters, n: usize, skip: usize) -> (f64, f64) {
    let sources = diffuse_sources(h, n);
    let foa = encode(&sources, n);
    let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let out = run(&mut r, &foa, 512);
    let lat = r.latency();
    let src: Vec<(Vec<f32>, usize)> = sources
        .iter()
        .enumerate()
        .map(|(j, (s, _))| (s[..n - lat].to_vec(), j * 9))
        .collect();
    (
        energy_db(
            &out.left[lat..],
            skip,
            reference_energy(&src, &h.left, skip),
        ),
        energy_db(
            &out.right[lat..],
            skip,
            reference_energy(&src, &h.right, skip),
        ),
    )
}

/// Energy of white noise through an impulse response: the variance times
/// the response's energy.
fn reference_energy(sources: &[(Vec<f32>, usize)], irs: &[Vec<f32>], skip: usize) -> f64 {
    sources
        .iter()
        .map(|(s, i)| {
            let var = s[skip..].iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
            var * irs[*i].iter().map(|x| f64::from(*x).powi(2)).sum::<f64>()
        })
        .sum()
}

fn energy_db(out: &[f32], skip: usize, reference: f64) -> f64 {
    let e: f64 = out[skip..].iter().map(|x| f64::from(*x).powi(2)).sum();
    10.0 * (e / reference).log10()
}

#[test]
fn energy_is_kept_within_half_a_db() {
    let (h, f) = set();
    let n = 48_000;
    let skip = 4_800;
    // Plane waves at measured directions.
    for i in [0, h.len() / 5, h.len() / 3, h.len() / 2, 2 * h.len() / 3] {
        let s = noise(11 + i as u64, n);
        let foa = encode(&[(s.clone(), h.dirs[i])], n);
        let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
        let out = run(&mut r, &foa, 512);
        let lat = r.latency();
        let src = [(s[..n - lat].to_vec(), i)];
        let (el, er) = (
            energy_db(
                &out.left[lat..],
                skip,
                reference_energy(&src, &h.left, skip),
            ),
            energy_db(
                &out.right[lat..],
                skip,
                reference_energy(&src, &h.right, skip),
            ),
        );
        eprintln!(
            "plane wave {:?}: left {el:+.2} dB, right {er:+.2} dB",
            h.dirs[i]
        );
        assert!(
            el.abs() <= 0.5 && er.abs() <= 0.5,
            "{:?}: {el:+.2} / {er:+.2} dB",
            h.dirs[i]
        );
    }
    // The diffuse field.
    let (el, er) = diffuse_energy_db(h, f, n, skip);
    eprintln!("diffuse: left {el:+.2} dB, right {er:+.2} dB");
    assert!(
        el.abs() <= 0.5 && er.abs() <= 0.5,
        "diffuse: {el:+.2} / {er:+.2} dB"
    );
    // Half and half (ψ about 0.5): the correction scales the diffuse part
    // of the band too (without the energy gain this lost 1.0 dB). Judged on
    // both ears together: each ear alone is off by more (measured +0.06 /
    // -0.25 dB; 2.6 dB in an earlier build), because the measured grid's
    // field is not isotropic (nothing below -40°) and its net intensity
    // pulls the estimated direction off the source, so the level goes to
    // the wrong ear (the diffuse scenes' ILD error, in the README).
    let mut mixed = diffuse_sources(h, n);
    let scale = (1.0 / mixed.len() as f32).sqrt();
    for (s, _) in &mut mixed {
        s.iter_mut().for_each(|v| *v *= scale);
    }
    let i = h.len() / 4;
    mixed.push((noise(77, n), h.dirs[i]));
    let foa = encode(&mixed, n);
    let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let out = run(&mut r, &foa, 512);
    let lat = r.latency();
    let last = mixed.len() - 1;
    let src: Vec<(Vec<f32>, usize)> = mixed
        .iter()
        .enumerate()
        .map(|(j, (s, _))| (s[..n - lat].to_vec(), if j == last { i } else { j * 9 }))
        .collect();
    let (rl, rr) = (
        reference_energy(&src, &h.left, skip),
        reference_energy(&src, &h.right, skip),
    );
    let (el, er) = (
        energy_db(&out.left[lat..], skip, rl),
        energy_db(&out.right[lat..], skip, rr),
    );
    let e = |x: &[f32]| x[skip..].iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
    let both = 10.0 * ((e(&out.left[lat..]) + e(&out.right[lat..])) / (rl + rr)).log10();
    eprintln!("source in a diffuse field: left {el:+.2} dB, right {er:+.2} dB, both {both:+.4} dB");
    assert!(
        both.abs() <= 0.5,
        "mixed: {both:+.2} dB ({el:+.2} / {er:+.2})"
    );
}

#[test]
fn any_block_length_gives_the_same_output() {
    let (h, f) = set();
    let n = 9_000;
    let foa = encode(&[(noise(5, n), [0.6, 0.8, 0.0])], n);
    let mut a = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let mut b = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let (x, y) = (run(&mut a, &foa, 256), run(&mut b, &foa, 97));
    assert_eq!(x.left, y.left);
    assert_eq!(x.right, y.right);
}

/// Plane waves from every measured direction through the accuracy
/// evaluation: the direct part carries the set's own magnitudes (smoothed)
/// and interaural delay.
#[test]
fn plane_waves_keep_the_sets_itd_and_ild() {
    use crate::metrics::{evaluate_irs, ItdLowpass};
    let (h, f) = set();
    let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let (pl, pr) = r.plane_wave_irs(&h.dirs, 1024).unwrap();
    for est in [ItdLowpass::Ideal, ItdLowpass::Butterworth8] {
        let a = evaluate_irs(h, &pl, &pr, est);
        let lin = crate::metrics::evaluate_with(h, f, est);
        eprintln!("{est:?}: parametric {a:?}\nlinear {lin:?}");
        // Measured: ILD 0.10 dB, ITD 4.0 µs (ideal) / 9.9 µs (BW8),
        // spectral 0.17 dB; linear first order 2.98, 55 / 74, 2.33. (The
        // ideal ITD was 2.7 µs while the model's phase reached down to DC;
        // below 300 Hz it is now the linear rendering's, which the scenes
        // judge better.)
        assert!(a.ild.median <= 0.2, "{a:?}");
        assert!(a.spectral.median <= 0.3, "{a:?}");
        let bound = match est {
            ItdLowpass::Ideal => 6.0,
            ItdLowpass::Butterworth8 => 12.0,
        };
        assert!(a.itd.median <= bound, "{est:?}: {a:?}");
    }
}

/// At 88.2 kHz (the highest rate at which this set's responses fit the
/// frame; at 96 kHz they are 1115 taps and the renderer refuses them) the
/// same sample budget holds: a diffuse field from the measured directions
/// keeps its energy (measured -0.08 / +0.02 dB).
#[test]
fn a_diffuse_field_keeps_its_energy_at_88k2() {
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 88_200).unwrap();
    let f = design(&h, &DesignOptions::new(DecoderMethod::MagLs, 1)).unwrap();
    let n = 88_200;
    let skip = 8_820;
    let (el, er) = diffuse_energy_db(&h, &f, n, skip);
    eprintln!("diffuse at 88.2 kHz: left {el:+.2} dB, right {er:+.2} dB");
    assert!(el.abs() <= 0.5 && er.abs() <= 0.5, "{el:+.2} / {er:+.2} dB");
}

/// A lone partial (a piano's, a flute's) at the top bin of its band, in a
/// room whose diffuse noise floor is 70 dB below it: its bin stays direct.
/// The per-bin ψ line runs to the next band's centre, so a quiet diffuse
/// neighbour (ψ near 1) could pull the partial's bin back to the linear
/// rendering. It
/// does not: the analysis window's leakage makes the neighbours as
/// directional as the partial (ψ 0.000-0.001 measured two bands away), and
/// only a band with no energy at all (a whole silent frame) reads ψ = 1.
#[test]
fn a_lone_partial_stays_direct() {
    let (h, f) = set();
    let n = 24_000;
    let edges = band_edges(48_000.0);
    // The first band near 1 kHz at least 4 bins wide: its top bin.
    let k = edges
        .iter()
        .find(|(lo, hi)| *lo as f64 * 48_000.0 / NFFT as f64 >= 1000.0 && hi - lo >= 4)
        .unwrap()
        .1
        - 1;
    let w = std::f64::consts::TAU * k as f64 / NFFT as f64;
    let tone: Vec<f32> = (0..n)
        .map(|i| (0.5 * (w * i as f64).sin()) as f32)
        .collect();
    let u = crate::sh::unit_vector(60f64.to_radians(), 0.0);
    let mut sources = diffuse_sources(h, n);
    let floor = 10f32.powf(-70.0 / 20.0) / (sources.len() as f32).sqrt();
    for (s, _) in &mut sources {
        s.iter_mut().for_each(|v| *v *= floor);
    }
    sources.push((tone, u));
    let foa = encode(&sources, n);
    let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    run(&mut r, &foa, 480);
    let psi = 1.0 - r.gain_d[k];
    assert!(psi <= 0.1, "bin {k}: ψ {psi}");
}

/// A damaged float file can carry NaN, infinite or absurd samples: the
/// first two render as silence, the last as [`MAX_SAMPLE`], and the next
/// block as if they had been so (a NaN kept in the smoothed intensity and
/// powers, or a power overflowing to infinity, would have left every band
/// diffuse, the correction off, until a reset).
#[test]
fn non_finite_samples_are_silence() {
    let (h, f) = set();
    let n = 24_000;
    let foa = encode(&[(noise(9, n), [0.0, 1.0, 0.0])], n);
    let mut bad = foa.clone();
    let mut zeroed = foa.clone();
    for (c, (b, z)) in bad.iter_mut().zip(zeroed.iter_mut()).enumerate() {
        for k in (4_000 + c..4_400).step_by(7) {
            b[k] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30][k % 4];
            z[k] = if k % 4 == 3 { MAX_SAMPLE } else { 0.0 };
        }
    }
    let mut a = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let mut b = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let (x, y) = (run(&mut a, &bad, 480), run(&mut b, &zeroed, 480));
    assert!(x.left.iter().chain(&x.right).all(|v| v.is_finite()));
    assert_eq!(x.left, y.left);
    assert_eq!(x.right, y.right);
}

/// The synthesis compiled for AVX2 and FMA (run where the processor has
/// them) and the portable build give the same output, bit for bit: Rust
/// never fuses a multiply and an add on its own, so wider registers do the
/// same arithmetic. (So the scenes' margins do not hang on the processor.)
#[test]
fn the_avx2_synthesis_matches_the_portable_one() {
    let (h, f) = set();
    let best = Kernel::detect();
    if best == Kernel::scalar() {
        eprintln!("no AVX2 + FMA here: nothing to compare");
        return;
    }
    let n = 24_000;
    let mut sources = diffuse_sources(h, n);
    sources.push((noise(21, n), [0.6, 0.8, 0.0]));
    let foa = encode(&sources, n);
    let mut a = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    let mut b = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
    a.set_kernel(best);
    b.set_kernel(Kernel::scalar());
    let (x, y) = (run(&mut a, &foa, 512), run(&mut b, &foa, 512));
    assert!(x.left.iter().any(|v| v.abs() > 0.1));
    assert_eq!(x.left, y.left);
    assert_eq!(x.right, y.right);
}

/// With the set's common phase in h, the correction compares like with
/// like where first order is accurate: G = h / (Q·a) turns the phase by
/// little from 140 to 500 Hz, for either ear and any direction. Without it
/// (h from magnitudes and delays only) G turned by 130–180° there, and a
/// mixed band's correction set its direct sound against the rest.
#[test]
fn the_correction_barely_turns_the_phase_where_first_order_is_accurate() {
    let (h, f) = set();
    let mut worst = 0.0f32;
    for (az, el) in [
        (30.0f64, 0.0f64),
        (90.0, 0.0),
        (150.0, 0.0),
        (-60.0, 30.0),
        (200.0, -30.0),
    ] {
        let mut r = ParametricRenderer::new(h, f, &ParametricOptions::default()).unwrap();
        let u = crate::sh::unit_vector(az.to_radians(), el.to_radians());
        let n = 24_000;
        let _ = run(&mut r, &encode(&[(noise(3, n), u)], n), 512);
        // This frame's h and Q·a at the direction the analysis found.
        r.responses();
        let df = r.rate as f32 / NFFT as f32;
        for ear in 0..2 {
            for k in (140.0 / df).ceil() as usize..=(500.0 / df) as usize {
                let hk = Complex::new(r.h_re[ear][k], r.h_im[ear][k]);
                let qa = Complex::new(r.qa_re[ear][k], r.qa_im[ear][k]);
                let turn = (hk / qa).arg().abs().to_degrees();
                assert!(turn.is_finite(), "bin {k}: h {hk}, Q·a {qa}");
                worst = worst.max(turn);
            }
        }
    }
    eprintln!("largest turn of G from 140 to 500 Hz: {worst:.1} degrees");
    assert!(worst <= 30.0, "{worst} degrees");
}
