//! A viewer in headless Debian Chromium with hls.js plays the live stream
//! with sound and sees both audio tracks.

mod support;

use std::process::Command;

use support::*;

#[test]
fn hls_js_in_chromium_plays_live_with_sound() {
    let dir = repo().join("tests/browser");
    assert!(
        dir.join("node_modules/hls.js").exists() && dir.join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run `npm ci --prefix tests/browser` (scripts/setup.sh does)"
    );
    let d = Daemon::start(&tmpdir("browser"));
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"demo","title":"Browser check"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_for("three segments", 40, || {
        media_playlist(&get(&d, &format!("/live/{id}/video/index.m3u8")).text())
            .1
            .len()
            >= 3
    });
    let out = Command::new("node")
        .arg(dir.join("play.mjs"))
        .arg(d.url(&format!("/live/{id}/master.m3u8")))
        .arg("6")
        .output()
        .expect("node is required (apt-get install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("browser report: {report}");
    assert!(report["fatal"].is_null(), "fatal hls.js error: {report}");
    assert!(out.status.success());
    let names: Vec<&str> = report["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["Binaural (headphones)", "Stereo"], "{report}");
    assert_eq!(report["tracks"][0]["default"], true);
    assert!(
        report["played"].as_f64().unwrap() >= 4.0,
        "playback did not progress: {report}"
    );
    assert_eq!(report["paused"], false);
    assert!(
        report["maxLevel"].as_f64().unwrap() > 1e-3,
        "no sound reached Web Audio: {report}"
    );
    assert_eq!(report["videoWidth"], 1280);
    assert_eq!(report["videoHeight"], 720);
    assert!(
        report["latencyMs"].as_f64().is_some(),
        "no playingDate (PDT) in hls.js"
    );
}
