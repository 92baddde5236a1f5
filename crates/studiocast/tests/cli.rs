//! `studiocast render` and `studiocast accuracy` as a user runs them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use studiocast_audiofile::pcm::{PcmReader, PcmWriter, SampleFormat};
use studiocast_audiofile::AudioSource;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_studiocast"));
    // Each test run gets its own filter cache so cached and fresh paths are
    // both exercised and runs do not interfere.
    c.env("STUDIOCAST_CACHE_DIR", tmp().join("cache"));
    c
}

/// One folder for the whole test binary, removed when it exits cleanly.
fn tmp() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| support::tmpdir("cli")).clone()
}

fn write_wav(path: &Path, planes: &[Vec<f32>]) {
    let mut w = PcmWriter::create(path, planes.len() as u16, 48_000, SampleFormat::F32).unwrap();
    let refs: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
    w.write_planar(&refs).unwrap();
    w.finalize().unwrap();
}

fn read_wav(path: &Path) -> (Vec<f32>, Vec<f32>, u32) {
    let mut r = PcmReader::open(path).unwrap();
    assert_eq!(r.channels(), 2);
    let rate = r.sample_rate();
    let mut out = vec![Vec::new(); 2];
    let n = r.frames().unwrap() as usize;
    r.read_planar(n, &mut out).unwrap();
    let [l, rr]: [Vec<f32>; 2] = out.try_into().unwrap();
    (l, rr, rate)
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum()
}

/// Noise burst encoded as a first/third-order plane wave from `az` degrees.
fn plane_wave(order: usize, az: f64, frames: usize) -> Vec<Vec<f32>> {
    let mut ev = studiocast_spatial::sh::ShEvaluator::new(order);
    let y = ev.eval_vec(
        studiocast_spatial::sh::unit_vector(az.to_radians(), 0.0),
        studiocast_spatial::sh::Normalisation::Sn3d,
    );
    let mut s = 99u64;
    let sig: Vec<f32> = (0..frames)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
        })
        .collect();
    y.iter()
        .map(|g| sig.iter().map(|v| v * *g as f32).collect())
        .collect()
}

fn run_ok(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "studiocast {args:?} failed: {err}");
    err
}

fn run_err(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "studiocast {args:?} should fail");
    assert_eq!(o.status.code(), Some(2), "exit code for {args:?}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    err
}

#[test]
fn renders_ambix_with_time_alignment_and_tail() {
    let d = tmp();
    let input = d.join("o3.wav");
    let out = d.join("o3-bin.wav");
    let frames = 48_000;
    write_wav(&input, &plane_wave(3, 90.0, frames));
    let s = input.to_str().unwrap();
    // Twice: the first designs (and fills the cache), the second takes the
    // cached filters; the two outputs are identical, sample for sample.
    let cached = d.join("o3-bin-cached.wav");
    // A cache of this test's own: the first render must design.
    let cache = d.join("o3-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let entries = || {
        std::fs::read_dir(&cache).map_or(0, |r| {
            r.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "shf"))
            })
            .count()
        })
    };
    for (i, o) in [&out, &cached].iter().enumerate() {
        let got = bin()
            .env("STUDIOCAST_CACHE_DIR", &cache)
            .args([
                "render",
                s,
                "-o",
                o.to_str().unwrap(),
                "--input-format",
                "ambix",
            ])
            .args(["--order", "3", "--block", "256"])
            .output()
            .unwrap();
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(entries(), 1, "after render {i}: the cache holds one entry");
    }
    let (l, r, rate) = read_wav(&out);
    let (cl, cr, _) = read_wav(&cached);
    assert_eq!(l.len(), cl.len());
    for (i, (a, b)) in l.iter().chain(&r).zip(cl.iter().chain(&cr)).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "sample {i}: designed {a}, cached {b}"
        );
    }
    assert_eq!(rate, 48_000);
    // Output = input length + the filter tail (512 taps at 48 kHz).
    assert_eq!(l.len(), frames + 512);
    assert!(
        energy(&l) > 4.0 * energy(&r),
        "source at +90° must be louder on the left"
    );
    assert!(l.iter().chain(&r).all(|v| v.is_finite()));
}

#[test]
fn fuma_and_n3d_inputs_match_ambix() {
    let d = tmp();
    let ambix = plane_wave(1, 40.0, 9600);
    let fuma = vec![
        ambix[0]
            .iter()
            .map(|v| v * std::f32::consts::FRAC_1_SQRT_2)
            .collect::<Vec<f32>>(),
        ambix[3].clone(),
        ambix[1].clone(),
        ambix[2].clone(),
    ];
    let n3d: Vec<Vec<f32>> = ambix
        .iter()
        .enumerate()
        .map(|(c, p)| {
            p.iter()
                .map(|v| v * if c == 0 { 1.0 } else { 3f32.sqrt() })
                .collect()
        })
        .collect();
    let mut outs = Vec::new();
    for (name, planes, fmt) in [
        ("a", &ambix, "ambix"),
        ("f", &fuma, "fuma"),
        ("n", &n3d, "n3d"),
    ] {
        let i = d.join(format!("{name}.wav"));
        let o = d.join(format!("{name}-out.wav"));
        write_wav(&i, planes);
        run_ok(&[
            "render",
            i.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
            "--input-format",
            fmt,
            "--order",
            "1",
        ]);
        outs.push(read_wav(&o));
    }
    for o in &outs[1..] {
        let err =
            o.0.iter()
                .zip(&outs[0].0)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
        assert!(err < 1e-4, "format conversion differs by {err}");
    }
}

#[test]
fn beds_objects_and_rotation() {
    let d = tmp();
    // 5.1 with signal only in Ls (+110°).
    let mut bed = vec![vec![0.0f32; 4800]; 6];
    bed[4] = plane_wave(1, 0.0, 4800)[0].clone();
    let i = d.join("bed.wav");
    let o = d.join("bed-out.wav");
    write_wav(&i, &bed);
    run_ok(&[
        "render",
        i.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--input-format",
        "bed",
        "--layout",
        "5.1",
    ]);
    let (l, r, _) = read_wav(&o);
    assert!(energy(&l) > 2.0 * energy(&r));
    // The same bed rotated by yaw -220°: Ls (+110°) ends up at -110° (right).
    run_ok(&[
        "render",
        i.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--input-format",
        "bed",
        "--layout",
        "5.1",
        "--yaw",
        "-220",
    ]);
    let (l, r, _) = read_wav(&o);
    assert!(energy(&r) > 2.0 * energy(&l));

    // Objects: channel 2 moves from the far left to the far right.
    let scene = d.join("scene.toml");
    std::fs::write(
        &scene,
        "[[object]]\nname = \"violin\"\nchannel = 2\nazimuth = 90\n\n[[object.keyframe]]\ntime = 1.0\nazimuth = 90\n\n[[object.keyframe]]\ntime = 1.1\nazimuth = -90\n",
    )
    .unwrap();
    let sig = plane_wave(1, 0.0, 96_000)[0].clone();
    let i = d.join("obj.wav");
    write_wav(&i, &[vec![0.0; 96_000], sig]);
    run_ok(&[
        "render",
        i.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--input-format",
        "objects",
        "--scene",
        scene.to_str().unwrap(),
    ]);
    let (l, r, _) = read_wav(&o);
    assert!(energy(&l[..40_000]) > 2.0 * energy(&r[..40_000]));
    assert!(energy(&r[60_000..96_000]) > 2.0 * energy(&l[60_000..96_000]));
}

#[test]
fn flac_input_through_symphonia() {
    let d = tmp();
    let wav = d.join("flac-src.wav");
    let flac = d.join("in.flac");
    write_wav(&wav, &plane_wave(1, -60.0, 9600));
    let ok = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-c:a", "flac", "-sample_fmt", "s32"])
        .arg(&flac)
        .status()
        .expect("ffmpeg is required for this test (apt-get install ffmpeg)");
    assert!(ok.success());
    let o = d.join("flac-out.wav");
    run_ok(&[
        "render",
        flac.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--input-format",
        "ambix",
        "--order",
        "1",
    ]);
    let (l, r, _) = read_wav(&o);
    assert!(energy(&r) > 2.0 * energy(&l));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let d = tmp();
    let i = d.join("bad-o3.wav");
    write_wav(&i, &plane_wave(3, 0.0, 4800));
    let o = d.join("bad-out.wav");
    let (i, o) = (i.to_str().unwrap(), o.to_str().unwrap());
    let e = run_err(&[
        "render",
        i,
        "-o",
        o,
        "--input-format",
        "ambix",
        "--order",
        "2",
    ]);
    assert!(e.contains("(N+1)² = 9"), "{e}");
    let e = run_err(&[
        "render",
        i,
        "-o",
        o,
        "--input-format",
        "ambix",
        "--order",
        "3",
        "--hrtf",
        "/nonexistent/h.sofa",
    ]);
    assert!(e.contains("/nonexistent/h.sofa"), "{e}");
    let junk = d.join("junk.sofa");
    std::fs::write(&junk, b"\x89HDF\r\n\x1a\nnot really").unwrap();
    let e = run_err(&[
        "render",
        i,
        "-o",
        o,
        "--input-format",
        "ambix",
        "--order",
        "3",
        "--hrtf",
        junk.to_str().unwrap(),
    ]);
    assert!(e.contains("SOFA"), "{e}");
    let e = run_err(&[
        "render",
        i,
        "-o",
        o,
        "--input-format",
        "bed",
        "--layout",
        "9.1",
    ]);
    assert!(e.contains("unknown loudspeaker layout '9.1'"), "{e}");
    let e = run_err(&[
        "render",
        i,
        "-o",
        o,
        "--input-format",
        "bed",
        "--layout",
        "5.1",
    ]);
    assert!(e.contains("6 channels"), "{e}");
    let e = run_err(&[
        "render",
        i,
        "-o",
        o,
        "--input-format",
        "ambix",
        "--order",
        "9",
    ]);
    assert!(e.contains("order 9"), "{e}");
    let e = run_err(&[
        "render",
        "/nonexistent.wav",
        "-o",
        o,
        "--input-format",
        "ambix",
        "--order",
        "1",
    ]);
    assert!(e.contains("/nonexistent.wav"), "{e}");
    for (scene, want) in [
        (
            "[[object]]\nname = \"a\"\nchannel = 1\nazimuth = 0\nelevation = 120\n",
            "elevation",
        ),
        (
            "[[object]]\nname = \"a\"\nchannel = 99\nazimuth = 0\n",
            "channel 99",
        ),
        (
            "[[object]]\nname = \"a\"\nchannel = 1\nazimuth = nan\n",
            "finite",
        ),
        (
            "[[object]]\nname = \"a\"\nchannel = 1\nazimuth = 0\ndistance = -1\n",
            "distance",
        ),
        (
            "[[object]]\nname = \"a\"\nchannel = 1\nazimuth = 0\nwobble = 3\n",
            "wobble",
        ),
        ("", "no [[object]]"),
    ] {
        let p = d.join("bad-scene.toml");
        std::fs::write(&p, scene).unwrap();
        let e = run_err(&[
            "render",
            i,
            "-o",
            o,
            "--input-format",
            "objects",
            "--scene",
            p.to_str().unwrap(),
        ]);
        assert!(e.contains(want), "scene {scene:?}: {e}");
    }
}

#[test]
fn nan_and_inf_samples_do_not_poison_output() {
    let d = tmp();
    let mut planes = plane_wave(1, 20.0, 9600);
    planes[0][100] = f32::NAN;
    planes[1][2000] = f32::INFINITY;
    planes[3][5000] = f32::NEG_INFINITY;
    let i = d.join("nan.wav");
    let o = d.join("nan-out.wav");
    write_wav(&i, &planes);
    run_ok(&[
        "render",
        i.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--input-format",
        "ambix",
        "--order",
        "1",
    ]);
    let (l, r, _) = read_wav(&o);
    assert!(l.iter().chain(&r).all(|v| v.is_finite()));
    assert!(
        energy(&l[6000..9000]) > 0.0,
        "audio after the bad samples must survive"
    );
}

#[test]
fn accuracy_report_prints_a_table() {
    let out = bin()
        .args(["accuracy", "--orders", "1", "--methods", "magls,ls"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("| magls | 1 |") && s.contains("| ls | 1 |"),
        "{s}"
    );
}

/// `--method parametric`: first order only; a click from the left comes
/// out on the left, at the time the linear renderer puts it (the
/// renderer's latency is taken out), and the length is the input's plus
/// the tail.
#[test]
fn parametric_render_lines_up_with_the_linear_render() {
    let d = tmp();
    let input = d.join("click-o1.wav");
    let frames = 24_000;
    let mut click = vec![vec![0.0f32; frames]; 4];
    // ACN/SN3D from +90° (left): W = 1, Y = 1.
    click[0][4_800] = 0.5;
    click[1][4_800] = 0.5;
    write_wav(&input, &click);
    let s = input.to_str().unwrap();
    let render = |method: &str| {
        let out = d.join(format!("click-{method}.wav"));
        run_ok(&[
            "render",
            s,
            "-o",
            out.to_str().unwrap(),
            "--input-format",
            "ambix",
            "--order",
            "1",
            "--method",
            method,
        ]);
        read_wav(&out)
    };
    let peak = |x: &[f32]| {
        x.iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, _)| i)
            .unwrap()
    };
    let (pl, pr, _) = render("parametric");
    let (ll, _, _) = render("magls");
    assert!(pl.len() >= frames, "{} frames", pl.len());
    assert!(energy(&pl) > 4.0 * energy(&pr), "the left ear is louder");
    let (a, b) = (peak(&pl) as i64, peak(&ll) as i64);
    assert!((a - b).abs() <= 48, "parametric peak at {a}, linear at {b}");
    let err = run_err(&[
        "render",
        s,
        "-o",
        d.join("x.wav").to_str().unwrap(),
        "--input-format",
        "ambix",
        "--order",
        "3",
        "--method",
        "parametric",
    ]);
    assert!(err.contains("first-order"), "{err}");
}
