//! The head-tracked mode end to end: a job turns a camera file with a
//! first-order ambisonic track into a lesson with the 4-channel Opus
//! rendition; the daemon serves the engine's filters; headless Chromium
//! plays the lesson's page in 360° mode and the test judges what it
//! measured: the four channels in order, the ear levels at 0° and ±90°,
//! no click during turns, and the fallback without AudioWorklet.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// A preset like `lesson`, with one rung to keep the test short.
const PRESET: &str = r#"
name = "spatial"
description = "test: one rung, binaural, stereo and the head-tracked rendition"
segment_seconds = 2
latency = "standard"

[video]
source = { kind = "file" }
framerate = 25

[[video.rendition]]
id = "360p"
width = 640
height = 360
bitrate_kbps = 600
profile = "main"

[audio]
source = { kind = "synthetic-scene", order = 3 }
sample_rate = 48000

[[audio.rendition]]
id = "binaural"
name = "Binaural (headphones)"
mix = "binaural"
default = true

[[audio.rendition]]
id = "stereo"
name = "Stereo"
mix = "stereo"

[[audio.rendition]]
id = "ambisonic"
name = "360° head-tracked"
mix = "ambisonic"
order = 1
bitrate_kbps = 256
"#;

/// 0–10 s: a 1 kHz tone straight ahead (SN3D: W = X); 10–20 s: W, Y, Z
/// and X each a tone of its own.
fn write_input(path: &Path) {
    let tone = |f: u32, a: f64| format!("{a}*sin(2*PI*{f}*t)");
    let part = |front: String, own: String| format!("if(lt(t,10),{front},{own})");
    let exprs = [
        part(tone(1000, 0.25), tone(440, 0.1)),
        part("0".into(), tone(700, 0.1)),
        part("0".into(), tone(1100, 0.1)),
        part(tone(1000, 0.25), tone(1700, 0.1)),
    ]
    .join("|");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=640x360:r=25:d=20")
        .args(["-f", "lavfi", "-i"])
        .arg(format!("aevalsrc=exprs='{exprs}':s=48000:d=20"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "pcm_s16le"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn report(daemon: &str, id: &str) -> serde_json::Value {
    let (r, _) = browser_report("head.mjs", &[daemon, id], &[], "head-tracking");
    assert!(r["failure"].is_null(), "{r}");
    r
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn the_listener_turns_and_the_source_stays_put() {
    let root = tmpdir("head");
    let (data, import, presets) = (root.join("data"), root.join("import"), root.join("presets"));
    std::fs::create_dir_all(&import).unwrap();
    std::fs::create_dir_all(&presets).unwrap();
    std::fs::write(presets.join("spatial.toml"), PRESET).unwrap();
    write_input(&import.join("head.mkv"));
    let d = Daemon::start_with(
        &data,
        &presets,
        &[("STUDIOCAST_IMPORT_DIR", import.to_str().unwrap())],
    );
    let r = api(
        &d,
        "POST",
        "/api/v1/jobs",
        Some(
            r#"{"path": "head.mkv", "preset": "spatial", "input_format": "ambix", "order": 1, "title": "Head"}"#,
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let mut last = serde_json::Value::Null;
    wait_for("the job", 240, || {
        last = api(&d, "GET", &format!("/api/v1/jobs/{id}"), None).json();
        last["state"] == "succeeded" || last["state"] == "failed"
    });
    assert_eq!(last["state"], "succeeded", "{last}");

    // The embedded player's playlist: its own group, 4 channels, never
    // default; any player's has none of it.
    let plain = get(&d, &format!("/vod/{id}/master.m3u8")).text();
    assert!(
        !plain.contains("opus") && !plain.contains("360°"),
        "{plain}"
    );
    let master = get(&d, &format!("/vod/{id}/master-player.m3u8")).text();
    assert!(
        master.contains(r#"GROUP-ID="audio-opus-4ch",NAME="360° head-tracked",CHANNELS="4""#),
        "{master}"
    );
    assert!(
        master.contains(r#"CODECS="avc1.4d401e,opus""#) || master.contains(",opus\""),
        "{master}"
    );
    // The filters: the engine's, for the configured set.
    let filters = get(&d, "/api/v1/hrtf/order1.json").json();
    assert_eq!(filters["order"], 1);
    assert_eq!(filters["left"].as_array().unwrap().len(), 4);
    assert!(
        filters["taps"].as_u64().unwrap() >= 64,
        "{}",
        filters["taps"]
    );

    let r = report(&d.url(""), &id);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    // Plain players start on AAC; the 360° mode moves to the Opus variant.
    assert_eq!(r["startCodec"], "mp4a.40.2", "{r}");
    assert_eq!(r["afterSwitch"]["group"], "audio-opus-4ch", "{r}");
    assert_eq!(r["afterSwitch"]["channels"], 4, "{r}");
    assert_eq!(r["frontButton"], true, "{r}");
    // 1. The four channels in order: each carries its own tone, the others
    // at least 30 dB below it.
    let tones = [440.0, 700.0, 1100.0, 1700.0];
    for (c, ch) in r["channels"].as_array().unwrap().iter().enumerate() {
        assert!(
            (f(&ch["peakHz"]) - tones[c]).abs() < 15.0,
            "channel {c}: {ch}"
        );
        let levels: Vec<f64> = ch["levels"].as_array().unwrap().iter().map(f).collect();
        for (o, l) in levels.iter().enumerate() {
            if o != c {
                assert!(levels[c] - l > 30.0, "channel {c} leaks tone {o}: {ch}");
            }
        }
    }
    // 2. Ears: equal straight ahead; turned 90° left the source is on the
    // right (the engine's order-1 filters give 5.8 dB at 1 kHz); turned
    // right, on the left.
    let lv = r["levels"].as_array().unwrap();
    let ild = |i: usize| f(&lv[i]["rightMinusLeft"]);
    assert!(ild(0).abs() < 1.0 && ild(3).abs() < 1.0, "{r}");
    assert!((4.3..7.3).contains(&ild(1)), "turned left: {}", ild(1));
    assert!((-7.3..-4.3).contains(&ild(2)), "turned right: {}", ild(2));
    assert!(f(&lv[0]["left"]) > -40.0, "too quiet to judge: {r}");
    // 3. No click: while turning, no sample-to-sample step beyond 1.25
    // times the largest the tone makes with the head still (a switch of
    // matrix without interpolation steps by several times that).
    // The whole turn was recorded (2.3 s), well before the lesson's own
    // change of signal at 10 s.
    assert!(f(&r["turn"]["frames"]) > 0.8 * 2.3 * 48_000.0, "{r}");
    assert!(f(&r["turnFrom"]) < 5.0, "{r}");
    let still = f(&r["still"]);
    let turn = f(&r["turn"]["stepL"]).max(f(&r["turn"]["stepR"]));
    assert!(
        turn <= 1.25 * still,
        "a click while turning: step {turn} against {still} when still"
    );
    // The arrow keys turn 15° (left is left), R and the Front button reset.
    let k = &r["keys"];
    assert_eq!(k["afterLeftLeft"], 30.0, "{r}");
    assert_eq!(k["front"], "Front · 30° left", "{r}");
    assert_eq!(k["afterRight"], 15.0, "{r}");
    assert_eq!(k["afterR"], 0.0, "{r}");
    assert_eq!(k["afterFront"], 0.0, "{r}");
    // A phone turned 90° to the left of where it pointed: the source is
    // on the right.
    assert!((f(&r["phone"]["yaw"]) - 90.0).abs() < 3.0, "{r}");
    assert!(
        (4.3..7.3).contains(&f(&r["phone"]["rightMinusLeft"])),
        "{r}"
    );
    // Under the page's real CSP the worklet loads and the channels arrive.
    assert_eq!(r["strict"]["channels"], 4, "{r}");
    assert_eq!(r["strict"]["ctx"], "running", "{r}");
    // The phone's pose to the head's (yaw, pitch, roll): turning about the
    // vertical is a pure yaw however the phone is held; the screen's own
    // turn to landscape is no turn of the head.
    for (case, want) in [
        ("uprightLeft90", [90.0, 0.0, 0.0]),
        ("tilted60Left90", [90.0, 0.0, 0.0]),
        ("lookUp20", [0.0, 20.0, 0.0]),
        ("rightEar20", [0.0, 0.0, 20.0]),
        ("landscapeLeft90", [90.0, 0.0, 0.0]),
        ("toLandscape", [0.0, 0.0, 0.0]),
        ("toLandscapeThenLeft45", [45.0, 0.0, 0.0]),
    ] {
        let got: Vec<f64> = r["poses"][case].as_array().unwrap().iter().map(f).collect();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 0.5, "{case}: {got:?}, want {want:?}");
        }
    }
    // Without AudioWorklet: binaural (from stereo), said in the selector
    // and the page.
    let fb = &r["fallback"];
    assert_eq!(fb["channels"], "2", "{r}");
    assert_eq!(fb["track"], "Binaural (headphones)", "{r}");
    assert!(
        fb["message"]
            .as_str()
            .unwrap()
            .contains("not available here"),
        "{r}"
    );
    assert!(
        r["fallbackOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o.as_str().unwrap().contains("not available here: binaural")),
        "{r}"
    );
    let ttff = &r["ttff"];
    eprintln!(
        "measured: VOD first frame {:.0} ms after play, {:.0} ms after navigation",
        f(&ttff["firstFrameAt"]) - f(&ttff["playAt"]),
        f(&ttff["firstFrameAt"])
    );
    eprintln!(
        "measured: browser CPU {:.3} cores binaural, {:.3} head-tracked; worklet {:.1} µs a block ({:.2} % of real time)",
        f(&r["cpuBinaural"]),
        f(&r["cpuSpatial"]),
        f(&r["worklet"]["usPerBlock"]),
        100.0 * f(&r["worklet"]["shareOfRealTime"])
    );
    let _ = std::fs::remove_dir_all(&root);
}
