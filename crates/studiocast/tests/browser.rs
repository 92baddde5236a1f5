//! A viewer in headless Debian Chromium with hls.js: the low-latency demo
//! ladder (both levels, a forced switch, sound, live latency), the
//! audio-only preset, and HTTPS with HTTP/2 (a self-signed certificate the
//! test-only flag accepts; curl checks the protocol too).

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use support::*;

/// One Chromium and one session at a time: the latency bound means little
/// on two cores shared by three encoders and three browsers.
static SERIAL: Mutex<()> = Mutex::new(());

fn play(master: &str, seconds: u32, env: &[(&str, &str)]) -> serde_json::Value {
    let seconds = seconds.to_string();
    let (report, status) = browser_report("play.mjs", &[master, &seconds], env, "browser");
    assert!(report["fatal"].is_null(), "fatal hls.js error: {report}");
    assert!(status.success());
    report
}

fn start_session(d: &Daemon, pipeline: &str) -> String {
    let body = format!(r#"{{"pipeline":"{pipeline}","title":"Browser check"}}"#);
    let r = api(d, "POST", "/api/v1/sessions", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn wait_segments(d: &Daemon, id: &str, rendition: &str) {
    wait_for("three segments", 40, || {
        media_playlist(&get(d, &format!("/live/{id}/{rendition}/index.m3u8")).text())
            .1
            .len()
            >= 3
    });
}

fn audio_names(report: &serde_json::Value) -> Vec<&str> {
    report["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect()
}

/// Sound reached Web Audio, and playback moved on.
fn assert_plays_with_sound(report: &serde_json::Value, seconds: f64) {
    assert!(
        report["played"].as_f64().unwrap() >= seconds,
        "playback did not progress: {report}"
    );
    assert_eq!(report["paused"], false);
    assert!(
        report["maxLevel"].as_f64().unwrap() > 1e-3,
        "no sound reached Web Audio: {report}"
    );
}

#[test]
fn hls_js_plays_the_low_latency_ladder_switches_level_and_stays_under_3_s() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = Daemon::start(&tmpdir("browser"));
    let id = start_session(&d, "demo");
    wait_segments(&d, &id, "720p");
    let report = play(
        &d.url(&format!("/live/{id}/master.m3u8")),
        14,
        // As the embedded player starts: at the live edge. hls.js alone
        // starts from the key frame before it, anywhere up to a segment
        // further back (measured 2.0 to 3.04 s with no catch-up), which
        // says nothing about the server.
        &[("PLAY_SWITCH", "1"), ("PLAY_GO_LIVE", "1")],
    );
    // Both ladder levels, each with its size, with AAC (the head-tracked
    // Opus variants come twice more).
    let levels: Vec<(u64, u64)> = report["levels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["codecs"] == "avc1,mp4a")
        .map(|l| (l["width"].as_u64().unwrap(), l["height"].as_u64().unwrap()))
        .collect();
    assert_eq!(levels.len(), 2, "{report}");
    assert!(
        levels.contains(&(1280, 720)) && levels.contains(&(640, 360)),
        "{report}"
    );
    assert_eq!(
        audio_names(&report),
        vec!["Binaural (headphones)", "Stereo"],
        "{report}"
    );
    assert_eq!(report["tracks"][0]["default"], true);
    assert_plays_with_sound(&report, 8.0);
    // The forced switch happened, and playback went on at the new size.
    let to = report["switchTo"].as_u64().unwrap() as usize;
    assert_eq!(report["currentLevel"].as_u64(), Some(to as u64), "{report}");
    assert!(
        report["switches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["level"].as_u64() == Some(to as u64)),
        "hls.js never switched to level {to}: {report}"
    );
    assert!(
        report["playedAfterSwitch"].as_f64().unwrap() >= 4.0,
        "playback stalled after the switch: {report}"
    );
    let want = report["levels"][to].clone();
    assert_eq!(report["videoWidth"], want["width"], "{report}");
    assert_eq!(report["videoHeight"], want["height"], "{report}");
    // Live latency, Date.now() against the playing PROGRAM-DATE-TIME, over
    // the sampled run (the README's figure is the benchmark's, ~1 s).
    let max = report["latencyMsMax"]
        .as_f64()
        .expect("no playingDate (PDT)");
    assert!(max < 3000.0, "live latency {max} ms (bound 3 s): {report}");
}

#[test]
fn the_audio_only_preset_plays_in_chromium() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("browser-audio");
    // The shipped preset, with a synthetic scene in place of the JACK input
    // (the JACK dummy backend would feed silence, and sound is the point).
    let shipped = std::fs::read_to_string(repo().join("pipelines/audio-only.toml")).unwrap();
    let start = shipped.find("[audio.source]").unwrap();
    let end = start + shipped[start..].find("\n\n").unwrap();
    let text = format!(
        "{}source = {{ kind = \"synthetic-scene\", order = 3 }}{}",
        &shipped[..start],
        &shipped[end..]
    );
    let pipelines = presets_with(&dir, &[("audio-only", text)]);
    let d = Daemon::start_with(&dir.join("data"), &pipelines, &[]);
    let id = start_session(&d, "audio-only");
    wait_segments(&d, &id, "binaural");
    let master = get(&d, &format!("/live/{id}/master.m3u8")).text();
    assert!(!master.contains("RESOLUTION"), "{master}");
    let report = play(&d.url(&format!("/live/{id}/master.m3u8")), 8, &[]);
    assert_plays_with_sound(&report, 4.0);
    assert_eq!(report["videoWidth"], 0, "{report}");
    assert!(
        report["latencyMsMax"].as_f64().unwrap() < 3000.0,
        "{report}"
    );
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--insecure", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is required (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn self_signed(dir: &Path) -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn https_with_http2_in_curl_and_chromium() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("browser-tls");
    let (cert, key) = self_signed(&dir);
    let d = Daemon::start_with(
        &dir.join("data"),
        &repo().join("pipelines"),
        &[("STUDIOCAST_TLS_CERT", &cert), ("STUDIOCAST_TLS_KEY", &key)],
    );
    assert_eq!(d.scheme, "https");
    let auth = format!("authorization: Bearer {TOKEN}");
    let created = curl(&[
        "--http2",
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "--data",
        r#"{"pipeline":"demo","title":"Over TLS"}"#,
        &d.url("/api/v1/sessions"),
    ]);
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let playlist = d.url(&format!("/live/{id}/720p/index.m3u8"));
    wait_for("three segments over TLS", 40, || {
        curl(&[&playlist]).matches("#EXTINF").count() >= 3
    });
    // ALPN gives HTTP/2 to a client that offers it, HTTP/1.1 otherwise.
    let version =
        |extra: &str| curl(&[extra, "-o", "/dev/null", "-w", "%{http_version}", &playlist]);
    assert_eq!(version("--http2"), "2");
    assert_eq!(version("--http1.1"), "1.1");
    // A blocking reload over HTTP/2 for the next part.
    let text = curl(&["--http2", &playlist]);
    let (msn, part) = next_part(&text);
    let blocked = curl(&[
        "--http2",
        &format!("{playlist}?_HLS_msn={msn}&_HLS_part={part}"),
    ]);
    assert!(
        blocked.contains(&format!("seg{msn:06}.p{part}.m4s")) || next_part(&blocked).0 > msn,
        "the blocking reload did not return the part: {blocked}"
    );
    // Ten seconds to play three: on a cold machine (the first Chromium
    // start, the daemon encoding two rungs on two cores) hls.js once
    // stalled 4.6 s after its first switch up; what is checked here is
    // TLS and HTTP/2, the ladder's switching is the test above's.
    let report = play(
        &d.url(&format!("/live/{id}/master.m3u8")),
        10,
        &[("PLAY_INSECURE_TLS", "1")],
    );
    assert_plays_with_sound(&report, 3.0);
    let protocols = report["protocols"].to_string();
    assert!(
        protocols.contains("\"h2\""),
        "Chromium did not fetch over HTTP/2: {report}"
    );
}

/// The part after the newest listed one (`_HLS_msn`, `_HLS_part`).
fn next_part(text: &str) -> (u64, u64) {
    let mut msn: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut part = 0;
    for l in text.lines() {
        if l.starts_with("#EXTINF") {
            msn += 1;
            part = 0;
        } else if l.starts_with("#EXT-X-PART:") {
            part += 1;
        }
    }
    (msn, part)
}
