//! A full disk, for real: the data folder on a small tmpfs (the tests run
//! as root, as CI does). Below `stop_below_mb` the archival recording
//! stops; below `floor_mb` the session stops cleanly with an alarm. Without
//! a floor the disk fills: no playlist ever lists a segment that was not
//! written, the daemon keeps answering, and after a crash on the full disk
//! the next start still comes up.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;

static SERIAL: Mutex<()> = Mutex::new(());

/// A tmpfs of `mb` MB mounted on a fresh folder; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(name: &str, mb: u64) -> Tmpfs {
        let dir = tmpdir(name);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "mounting a {mb} MB tmpfs on {} failed: these tests need root (as CI runs them)",
            dir.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_mb(p: &Path) -> u64 {
    let st = rustix::fs::statvfs(p).unwrap();
    st.f_bavail * st.f_frsize / (1 << 20)
}

fn session(d: &Daemon, id: &str) -> serde_json::Value {
    api(d, "GET", &format!("/api/v1/sessions/{id}"), None).json()
}

/// Every segment a playlist of the session lists is there to be served,
/// unless the playlist marks it `EXT-X-GAP` (a segment whose write failed
/// is served from memory while it is recent, then listed as a gap, so
/// that sequence numbers stay aligned across renditions).
fn playlists_are_whole(d: &Daemon, id: &str, listing: &str) {
    for r in ["720p", "binaural", "stereo"] {
        let pl = get(d, &format!("/{listing}/{id}/{r}/index.m3u8"));
        if pl.status != 200 {
            continue;
        }
        let mut gap = false;
        for line in pl.text().lines() {
            if line.starts_with("#EXT-X-GAP") {
                gap = true;
            }
            if !line.ends_with(".m4s") || line.starts_with('#') {
                continue;
            }
            let s = get(d, &format!("/{listing}/{id}/{r}/{line}"));
            if !std::mem::take(&mut gap) {
                assert_eq!(
                    s.status, 200,
                    "{listing} {r} lists {line}, which is missing"
                );
            }
        }
    }
}

#[test]
fn below_the_floor_the_session_stops_cleanly_with_an_alarm() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fs = Tmpfs::new("floor", 24);
    let d = Daemon::start_with(
        &fs.0,
        &repo().join("pipelines"),
        &[
            ("STUDIOCAST_MIN_FREE_MB", "20"),
            ("STUDIOCAST_STOP_BELOW_MB", "16"),
            ("STUDIOCAST_FLOOR_MB", "10"),
            // The filter cache lives elsewhere: this disk is for media.
            (
                "STUDIOCAST_CACHE_DIR",
                tmpdir("floor-cache").to_str().unwrap(),
            ),
        ],
    );
    let id = start_live(&d, "demo");
    // First the archival recording stops, the stream goes on.
    wait_for("recording stopped", 60, || {
        session(&d, &id)["inputs"]["recording"]["alarm"]
            .as_str()
            .is_some_and(|a| a.contains("stop_below_mb"))
    });
    let seq = last_segment(&d, &id, "720p");
    assert_eq!(session(&d, &id)["state"], "live");
    // Then the floor: the session stops by itself, cleanly.
    let t0 = Instant::now();
    wait_for("the session to stop at the floor", 90, || {
        session(&d, &id)["state"] == "ended"
    });
    let s = session(&d, &id);
    eprintln!(
        "floor reached {:.1} s after the recording stopped; {} MB left",
        t0.elapsed().as_secs_f64(),
        free_mb(&fs.0)
    );
    let alarms = s["alarms"].to_string();
    assert!(alarms.contains("floor_mb"), "{s}");
    assert!(free_mb(&fs.0) >= 5, "the floor did not keep space free");
    assert!(
        last_segment(&d, &id, "720p") > seq,
        "the stream stopped with the recording: {s}"
    );
    let live = get(&d, &format!("/live/{id}/720p/index.m3u8")).text();
    assert!(live.trim_end().ends_with("#EXT-X-ENDLIST"), "{live}");
    playlists_are_whole(&d, &id, "vod");
    // The daemon is still there, and refuses starts on this disk.
    let again = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"demo","title":"x"}"#),
    );
    assert_eq!(again.status, 503, "{}", again.text());
    assert!(again.text().contains("min_free_mb"), "{}", again.text());
    assert_eq!(get(&d, "/readyz").status, 503);
    assert_eq!(get(&d, "/healthz").status, 200);
}

#[test]
fn a_disk_that_fills_never_publishes_a_missing_segment_and_a_crash_on_it_restarts() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fs = Tmpfs::new("fill", 10);
    let cache = tmpdir("fill-cache");
    let env = [
        ("STUDIOCAST_MIN_FREE_MB", "6"),
        ("STUDIOCAST_STOP_BELOW_MB", "0"),
        ("STUDIOCAST_FLOOR_MB", "0"),
        ("STUDIOCAST_CACHE_DIR", cache.to_str().unwrap()),
    ];
    let d = Daemon::start_with(&fs.0, &repo().join("pipelines"), &env);
    let id = start_live(&d, "demo");
    wait_for("the HLS write alarm", 90, || {
        session(&d, &id)["alarms"]
            .to_string()
            .contains("cannot write HLS files")
    });
    eprintln!("disk full: {} MB free", free_mb(&fs.0));
    // While full: the daemon answers, the playlists only list what exists.
    for _ in 0..3 {
        assert_eq!(get(&d, "/healthz").status, 200);
        playlists_are_whole(&d, &id, "live");
        std::thread::sleep(Duration::from_secs(1));
    }
    // A crash on the full disk, and a start on it: the daemon comes up.
    drop(d);
    let d = Daemon::start_with(&fs.0, &repo().join("pipelines"), &env);
    assert_eq!(get(&d, "/healthz").status, 200);
    let rec = listed(&d, &id);
    assert_eq!(rec["state"], "interrupted", "{rec}");
    playlists_are_whole(&d, &id, "vod");
}
