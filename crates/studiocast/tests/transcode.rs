//! `studiocast transcode` as a user runs it: a recording becomes an HLS
//! lesson that ffprobe decodes, at the loudness asked for (measured
//! independently by ffmpeg's `ebur128` filter), with a clear refusal for
//! bad input and nothing half-written left behind.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use studiocast_audiofile::pcm::{PcmWriter, SampleFormat};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_studiocast"));
    c.env("STUDIOCAST_CACHE_DIR", tmp().join("cache"))
        .env("STUDIOCAST_LOG", "warn");
    c
}

/// One folder for the whole test binary, removed when it exits cleanly.
fn tmp() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| support::tmpdir("transcode")).clone()
}

fn pipelines() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines").to_string()
}

/// First-order AmbiX: a pink-ish noise source to the left and a tone
/// ahead, quiet (about -45 LUFS once rendered), with a click in the middle
/// when asked: half a millisecond 22 dB up, too short to move the
/// integrated loudness, loud enough that the gain to the target would clip
/// it (the limiter's case).
#[allow(clippy::needless_range_loop)] // four planes written per frame
fn write_foa(path: &Path, rate: u32, secs: f64, amp: f32, burst: bool) {
    let n = (rate as f64 * secs) as usize;
    let mut planes = vec![vec![0.0f32; n]; 4];
    let mut seed = 0x1234_5678u32;
    let (mut b0, mut b1) = (0.0f32, 0.0f32);
    for i in 0..n {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let white = (seed >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0;
        // Two poles: a darker noise than white, like a room.
        b0 = 0.97 * b0 + 0.03 * white * 4.0;
        b1 = 0.6 * b1 + 0.4 * b0;
        let tone = (2.0 * std::f64::consts::PI * 330.0 * i as f64 / rate as f64).sin() as f32;
        let t = i as f64 / rate as f64;
        let gain = if burst && (secs / 2.0..secs / 2.0 + 0.0005).contains(&t) {
            0.25 / amp
        } else {
            1.0
        };
        let (noise, tone) = (b1 * amp * gain, tone * amp * 0.5 * gain);
        // W, Y (left: +), Z, X (front: +), SN3D first order.
        planes[0][i] = noise + tone;
        planes[1][i] = noise;
        planes[3][i] = tone;
    }
    let mut w = PcmWriter::create(path, 4, rate, SampleFormat::F32).unwrap();
    let refs: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
    w.write_planar(&refs).unwrap();
    w.finalize().unwrap();
}

fn transcode(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .arg("transcode")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--pipelines", &pipelines(), "--input-format", "ambix"])
        .args(if extra.contains(&"--order") {
            &[][..]
        } else {
            &["--order", "1"][..]
        })
        .args(extra)
        .output()
        .unwrap()
}

/// Integrated loudness and true peak of one rendition, by ffmpeg.
fn ffmpeg_loudness(playlist: &Path) -> (f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-nostats", "-hide_banner", "-i"])
        .arg(playlist)
        .args(["-af", "ebur128=peak=true", "-f", "null", "-"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = text
        .split("Summary:")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    let value = |key: &str| -> f64 {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {summary}"))
    };
    (value("I:"), value("Peak:"))
}

/// Decoded interleaved stereo of one rendition, at 48 kHz.
fn decode(playlist: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(playlist)
        .args(["-f", "f32le", "-ac", "2", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn probe(playlist: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "compact",
        ])
        .arg(playlist)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect()
}

#[test]
fn a_recording_becomes_a_lesson_at_the_target_loudness() {
    let dir = tmp().join("lesson");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 44.1 kHz in, the preset's 48 kHz out: the resampler is on the path.
    let input = dir.join("foa.wav");
    write_foa(&input, 44_100, 12.0, 0.02, false);
    let out = dir.join("out");
    let run = transcode(&input, &out, &["--loudness", "-16"]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("transcoded 12.0 s"), "{stderr}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert!(master.contains("binaural/index.m3u8") && master.contains("stereo/index.m3u8"));
    let mut decoded = Vec::new();
    for r in ["binaural", "stereo"] {
        let playlist = out.join(r).join("index.m3u8");
        let text = std::fs::read_to_string(&playlist).unwrap();
        assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
        let p = probe(&playlist);
        assert!(
            p.contains("codec_name=aac")
                && p.contains("sample_rate=48000")
                && p.contains("channels=2"),
            "{p}"
        );
        let (i, peak) = ffmpeg_loudness(&playlist);
        assert!((i - -16.0).abs() <= 0.5, "{r}: {i} LUFS, asked -16");
        assert!(peak < 0.0, "{r}: true peak {peak}");
        let pcm = decode(&playlist);
        // The input's duration at 48 kHz, within an AAC frame or two of
        // priming at the edges.
        let secs = pcm.len() as f64 / 2.0 / 48_000.0;
        assert!((secs - 12.0).abs() < 0.1, "{r}: {secs} s");
        decoded.push(pcm);
    }
    // Binaural is not the stereo downmix under another name.
    let n = decoded[0].len().min(decoded[1].len());
    let diff: f64 = (0..n)
        .map(|i| f64::from(decoded[0][i] - decoded[1][i]).powi(2))
        .sum::<f64>();
    let energy: f64 = decoded[1][..n].iter().map(|v| f64::from(*v).powi(2)).sum();
    assert!(
        energy > 0.0 && diff / energy > 0.05,
        "binaural ~ stereo: {}",
        diff / energy
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("loudness.json")).unwrap()).unwrap();
    for r in report["renditions"].as_array().unwrap() {
        let measured = r["measured"]["integrated_lufs"].as_f64().unwrap();
        let gain = r["gain_db"].as_f64().unwrap();
        assert!((measured + gain - -16.0).abs() < 1e-6, "{r}");
        assert!(gain > 5.0, "a quiet input is raised: {r}");
        assert_eq!(r["limited"], false);
    }
    // The same destination again: refused, the lesson untouched.
    let again = transcode(&input, &out, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(out.join("master.m3u8").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The loudness target is what `--loudness` says; a loud passage that the
/// gain would push past the ceiling goes through the limiter.
#[test]
fn another_target_and_the_limiter() {
    let dir = tmp().join("limiter");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("foa.wav");
    write_foa(&input, 48_000, 10.0, 0.02, true);
    let out = dir.join("out");
    let run = transcode(&input, &out, &["--loudness", "-20", "--true-peak", "-1"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("loudness.json")).unwrap()).unwrap();
    for r in report["renditions"].as_array().unwrap() {
        assert_eq!(r["limited"], true, "{r}");
        let tp = r["output"]["true_peak_dbtp"].as_f64().unwrap();
        assert!(tp <= -1.0, "{r}");
    }
    let (i, peak) = ffmpeg_loudness(&out.join("binaural").join("index.m3u8"));
    assert!((i - -20.0).abs() <= 0.5, "{i} LUFS, asked -20: {report}");
    // The ceiling holds in what viewers decode, not only before the
    // encoder (ffmpeg's true peak of the AAC lesson).
    assert!(peak <= -1.0, "decoded true peak {peak} dBTP: {report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing() {
    let dir = tmp().join("bad");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let refused = |input: &Path, extra: &[&str], why: &str| {
        let run = transcode(input, &out, extra);
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(!run.status.success(), "accepted {}", input.display());
        assert!(stderr.contains(why), "{}: {stderr}", input.display());
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists());
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    };
    // Four channels are not third order.
    let foa = dir.join("foa.wav");
    write_foa(&foa, 48_000, 1.0, 0.02, false);
    refused(&foa, &["--order", "3"], "needs (N+1)² = 16");
    // A rotation would turn the binaural mix and not the ambisonic one
    // (the demo preset has one).
    refused(
        &foa,
        &["--preset", "demo", "--yaw", "30"],
        "would turn the binaural mix alone",
    );
    // No audio at all.
    let empty = dir.join("empty.wav");
    PcmWriter::create(&empty, 4, 48_000, SampleFormat::F32)
        .unwrap()
        .finalize()
        .unwrap();
    refused(&empty, &[], "holds 0 ms of audio");
    // 2 ms of audio, then a 2.25 GiB chunk inside a 3 GiB sparse file (as a
    // WAV over 4 GiB without RF64 has): GStreamer's WAV parser aborts the
    // process on it, so it never sees a WAV; the project's reader reads the
    // 2 ms, which are too short for a lesson.
    let huge = dir.join("huge-chunk.wav");
    let mut bytes = std::fs::read(&empty).unwrap();
    let data = bytes.windows(4).position(|w| w == b"data").unwrap();
    bytes.truncate(data);
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(96u32 * 16).to_le_bytes());
    bytes.extend_from_slice(&[0u8; 96 * 16]);
    bytes.extend_from_slice(b"abcd");
    bytes.extend_from_slice(&0x9000_0000u32.to_le_bytes());
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&huge, &bytes).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    refused(&huge, &[], "holds 2 ms of audio");
    // Zero bytes, and a header claiming 65535 channels.
    std::fs::write(dir.join("zero.wav"), b"").unwrap();
    refused(&dir.join("zero.wav"), &[], "cannot read input");
    let mut hostile = std::fs::read(&foa).unwrap();
    let fmt = hostile.windows(4).position(|w| w == b"fmt ").unwrap();
    hostile[fmt + 10] = 0xff;
    hostile[fmt + 11] = 0xff;
    std::fs::write(dir.join("hostile.wav"), &hostile).unwrap();
    refused(&dir.join("hostile.wav"), &[], "cannot read input");
    // A picture with no sound: refused at once, not after a timeout.
    let silent = dir.join("silent.mp4");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x90:r=25:d=1",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&silent)
        .output()
        .unwrap();
    assert!(made.status.success());
    let t0 = std::time::Instant::now();
    refused(&silent, &[], "has no sound track");
    assert!(t0.elapsed().as_secs() < 10, "{:?}", t0.elapsed());
    // A preset that is not there, or a name that is a path.
    refused(&foa, &["--preset", "nope"], "no preset nope");
    refused(&foa, &["--preset", "../demo"], "invalid preset name");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A camera's file: 6 s of 640x360 at 25 fps, red for the first half
/// second then blue, white for 3.0–3.2 s; silence with a 1 kHz beep over
/// the same 0.2 s. H.264 and stereo AAC in MP4, as a camera or phone writes.
fn write_camera_file(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(
            "color=c=blue:s=640x360:r=25:d=6,\
             drawbox=enable='lt(t,0.5)':c=red:t=fill,\
             drawbox=enable='between(t,3,3.19)':c=white:t=fill",
        )
        .args(["-f", "lavfi", "-i"])
        .arg("sine=f=1000:r=48000:d=6,volume=enable='not(between(t,3,3.2))':volume=0")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-b:a", "128k",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(pts, key frame)` of every frame of a video rendition, by ffprobe.
fn frames(playlist: &Path) -> Vec<(f64, bool)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v"])
        .args([
            "-show_entries",
            "frame=key_frame,pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(playlist)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // (A frame with side data gets a trailing field.)
            let mut f = l.split(',');
            let (k, t) = (f.next()?, f.next()?);
            Some((t.trim().parse().ok()?, k == "1"))
        })
        .collect()
}

/// The mean grey level (0–255) of each frame of a video rendition.
fn grey_levels(playlist: &Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(playlist)
        .args(["-vf", "scale=8:8,format=gray", "-f", "rawvideo", "-"])
        .output()
        .unwrap();
    out.stdout
        .chunks_exact(64)
        .map(|f| f.iter().map(|v| f64::from(*v)).sum::<f64>() / 64.0)
        .collect()
}

#[test]
fn a_camera_file_becomes_a_ladder_with_aligned_key_frames_in_sync_and_a_poster() {
    let dir = tmp().join("camera");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("camera.mp4");
    write_camera_file(&input);
    let out = dir.join("lesson");
    let run = bin()
        .arg("transcode")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args([
            "--pipelines",
            &pipelines(),
            "--input-format",
            "bed",
            "--layout",
            "stereo",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The lesson preset's four rungs, each a variant of the master.
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    for (rung, res) in [
        ("1080p", "1920x1080"),
        ("720p", "1280x720"),
        ("480p", "854x480"),
        ("360p", "640x360"),
    ] {
        assert!(
            master.contains(&format!("RESOLUTION={res}"))
                && master.contains(&format!("{rung}/index.m3u8")),
            "{rung}: {master}"
        );
    }
    // Key frames exactly on the 2 s segment grid in every rung, nowhere
    // else, and the same frames everywhere.
    let mut counts = Vec::new();
    for rung in ["1080p", "720p", "480p", "360p"] {
        let f = frames(&out.join(rung).join("index.m3u8"));
        let keys: Vec<f64> = f.iter().filter(|(_, k)| *k).map(|(t, _)| *t).collect();
        assert_eq!(keys.len(), 3, "{rung}: key frames at {keys:?}");
        for (i, t) in keys.iter().enumerate() {
            assert!(
                (t - 2.0 * i as f64).abs() < 0.001,
                "{rung}: key frames at {keys:?}"
            );
        }
        counts.push(f.len());
    }
    assert!(
        counts.iter().all(|c| *c == counts[0]) && counts[0] >= 180,
        "{counts:?}"
    );
    // Each audio segment ends within one AAC frame (21.3 ms) after the
    // video's, never before, over the whole file.
    for r in ["binaural", "stereo"] {
        let pl = std::fs::read_to_string(out.join(r).join("index.m3u8")).unwrap();
        let mut end = 0.0;
        let durations: Vec<f64> = pl
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .filter_map(|l| l.trim_end_matches(',').parse().ok())
            .collect();
        // Every boundary the video has (at 2 and 4 s; the last audio
        // segment is the file's tail).
        assert!(durations.len() >= 3, "{r}: {durations:?}");
        for (i, d) in durations.iter().take(2).enumerate() {
            end += d;
            let off = end - 2.0 * (i + 1) as f64;
            assert!(
                (-0.0005..0.0214).contains(&off),
                "{r}: segment {i} ends {off} s off the grid: {durations:?}"
            );
        }
    }
    // Sound and picture together: the white flash and the beep start
    // within 20 ms of each other in the lesson (measured 10 ms; ffmpeg's
    // own encode of the input puts its beep 8 ms after the flash). The
    // AAC encoder's priming left in, or symphonia's reading that ignores
    // the edit list, would each add 21 ms.
    let grey = grey_levels(&out.join("360p").join("index.m3u8"));
    let flash = grey.iter().position(|g| *g > 200.0).expect("the flash") as f64 / 30.0;
    let pcm = decode(&out.join("binaural").join("index.m3u8"));
    let peak = pcm.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let beep = pcm
        .iter()
        .position(|v| v.abs() > 0.3 * peak)
        .expect("the beep")
        / 2;
    let beep = beep as f64 / 48_000.0;
    assert!(
        (flash - 3.0).abs() < 0.034 && (beep - flash).abs() < 0.020,
        "flash at {flash:.3} s, beep at {beep:.3} s"
    );
    eprintln!("flash at {flash:.3} s, beep at {beep:.3} s");
    // The poster: a 1920x1080 JPEG of the picture a tenth of the way in
    // (blue; the first frames are red).
    let poster = out.join("poster.jpg");
    let px = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&poster)
        .args([
            "-vf",
            "scale=1:1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(px.len(), 3, "poster: {}", poster.display());
    assert!(
        px[2] > 150 && px[0] < 60,
        "the poster is not the blue picture: {px:?}"
    );
    let size = probe_size(&poster);
    assert_eq!(size, "1920x1080");
}

fn probe_size(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=s=x:p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `--method parametric` in a transcode (what a job with the parametric
/// renderer runs): both renditions come out, and a click lands at the same
/// time in each rendition as in a linear transcode's, within 1 ms: the renderer's 12.7 ms latency is
/// taken out and the stereo downmix waits for it (without that wait the
/// stereo would lead by 608 samples).
#[test]
fn a_parametric_transcode_keeps_its_renditions_in_time() {
    let dir = tmp().join("parametric");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("foa.wav");
    write_foa(&input, 48_000, 6.0, 0.02, true);
    // Where the click is loudest in a decoded rendition (both ears).
    let click_at = |pcm: &[f32]| -> i64 {
        pcm.chunks_exact(2)
            .enumerate()
            .max_by(|a, b| (a.1[0].abs() + a.1[1].abs()).total_cmp(&(b.1[0].abs() + b.1[1].abs())))
            .map(|(i, _)| i as i64)
            .unwrap()
    };
    let mut at = Vec::new();
    for method in ["parametric", "magls"] {
        let out = dir.join(method);
        let run = transcode(&input, &out, &["--method", method]);
        assert!(
            run.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        for r in ["binaural", "stereo"] {
            let pcm = decode(&out.join(r).join("index.m3u8"));
            let secs = pcm.len() as f64 / 2.0 / 48_000.0;
            assert!((secs - 6.0).abs() < 0.1, "{method} {r}: {secs} s");
            at.push((method, r, click_at(&pcm)));
        }
    }
    eprintln!("click positions: {at:?}");
    // Each rendition as the linear transcode has it (the binaural ones
    // sit the HRIRs' onset, about 1.5 ms, after the stereo in both).
    for k in 0..2 {
        let (p, l) = (at[k], at[k + 2]);
        assert!(
            (p.2 - l.2).abs() <= 48,
            "{}: click at {} with parametric, {} with magls",
            p.1,
            p.2,
            l.2
        );
    }
    // A preset with `renderer = "parametric"` and no --method: the same
    // binaural as --method parametric, not the linear one.
    let presets = dir.join("pipelines");
    std::fs::create_dir_all(&presets).unwrap();
    // The lesson preset (the transcodes above used it), first order and
    // parametric.
    let lesson = std::fs::read_to_string(format!("{}/lesson.toml", pipelines())).unwrap();
    let foa = lesson
        .replace("name = \"lesson\"", "name = \"foa\"")
        .replace(
            "source = { kind = \"synthetic-scene\", order = 3 }",
            "renderer = \"parametric\"\nsource = { kind = \"synthetic-scene\", order = 1 }",
        );
    assert!(foa.contains("parametric") && foa.contains("name = \"foa\""));
    std::fs::write(presets.join("foa.toml"), foa).unwrap();
    let out = dir.join("by-preset");
    let run = bin()
        .arg("transcode")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--pipelines", presets.to_str().unwrap(), "--preset", "foa"])
        .args(["--input-format", "ambix", "--order", "1"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let by_preset = decode(&out.join("binaural/index.m3u8"));
    let (explicit, linear) = (
        decode(&dir.join("parametric/binaural/index.m3u8")),
        decode(&dir.join("magls/binaural/index.m3u8")),
    );
    let diff = |a: &[f32], b: &[f32]| -> f64 {
        let n = a.len().min(b.len());
        let e: f64 = b[..n].iter().map(|v| f64::from(*v).powi(2)).sum();
        (0..n).map(|i| f64::from(a[i] - b[i]).powi(2)).sum::<f64>() / e.max(1e-30)
    };
    let (same, other) = (diff(&by_preset, &explicit), diff(&by_preset, &linear));
    eprintln!("preset vs --method parametric {same:.2e}, vs magls {other:.2e}");
    assert!(same < 1e-6 && other > 1e-3, "{same} {other}");
    let first = at[1].2;
    // Near the middle of the file, where it was written.
    assert!((first - 144_000).abs() < 4_800, "{first}");
    let _ = std::fs::remove_dir_all(&dir);
}
