//! `[retention]`: on a data folder with sessions ended days to years ago,
//! `studiocast retention --dry-run` lists what would go and removes
//! nothing; the real run removes each part at its age, never a pinned
//! session, never a master without a rule that names masters; the daemon
//! sweeps at start, reports disk use at `GET /api/v1/retention`, and pins.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

const FILES: [&str; 9] = [
    "hls/master.m3u8",
    "hls/master-player.m3u8",
    "hls/master-vod.m3u8",
    "hls/binaural/live.m3u8",
    "hls/binaural/vod.m3u8",
    "hls/binaural/init.mp4",
    "hls/binaural/seg000001.m4s",
    "master.wav",
    "program.mp4",
];

fn aged_session(root: &Path, id: &str, days_ago: i64) {
    let dir = root.join("sessions").join(id);
    for f in FILES {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, vec![7u8; 1000]).unwrap();
    }
    let end = chrono::Utc::now() - chrono::Duration::days(days_ago) - chrono::Duration::hours(1);
    let start = end - chrono::Duration::hours(1);
    let rec = serde_json::json!({
        "id": id, "state": "ended", "pipeline": "demo", "title": format!("Lesson {id}"),
        "course": "", "visibility": "public",
        "started_at": start.to_rfc3339(), "ended_at": end.to_rfc3339(),
        "urls": {"hls": format!("/live/{id}/master.m3u8"), "vod": format!("/vod/{id}/master.m3u8")},
    });
    std::fs::write(dir.join("session.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
}

fn present(root: &Path, id: &str) -> Vec<&'static str> {
    FILES
        .iter()
        .copied()
        .filter(|f| root.join("sessions").join(id).join(f).exists())
        .collect()
}

fn retention(config: &Path, data: &Path, dry: bool) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_studiocast"));
    cmd.arg("--config")
        .arg(config)
        .arg("retention")
        .arg("--data-dir")
        .arg(data);
    if dry {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_id<'a>(lines: &'a [serde_json::Value], id: &str) -> Option<&'a serde_json::Value> {
    lines.iter().find(|l| l["id"] == id)
}

#[test]
fn dry_run_then_real_runs_by_age_with_pins_and_masters_kept() {
    let root = tmpdir("retention");
    let data = root.join("data");
    for (id, days) in [
        ("recent", 1),
        ("days", 3),
        ("weeks", 40),
        ("years", 400),
        ("kept", 400),
    ] {
        aged_session(&data, id, days);
    }
    std::fs::write(data.join("sessions/kept/pinned"), b"").unwrap();
    let config = root.join("retention.toml");
    std::fs::write(&config, "[retention]\nlive_days = 2\nvod_days = 30\n").unwrap();

    let dry = retention(&config, &data, true);
    assert_eq!(dry.len(), 3, "{dry:?}");
    assert_eq!(
        by_id(&dry, "days").unwrap()["would_remove"],
        serde_json::json!(["live"])
    );
    assert_eq!(
        by_id(&dry, "weeks").unwrap()["would_remove"],
        serde_json::json!(["vod"])
    );
    assert_eq!(
        by_id(&dry, "years").unwrap()["would_remove"],
        serde_json::json!(["vod"])
    );
    assert!(by_id(&dry, "kept").is_none() && by_id(&dry, "recent").is_none());
    // A dry run removes nothing.
    for id in ["recent", "days", "weeks", "years", "kept"] {
        assert_eq!(present(&data, id).len(), FILES.len(), "{id}");
    }

    let ran = retention(&config, &data, false);
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert_eq!(by_id(&ran, "weeks").unwrap()["freed_bytes"], 7000);
    assert_eq!(present(&data, "recent").len(), FILES.len());
    assert_eq!(present(&data, "kept").len(), FILES.len());
    // Live playlists gone, the VOD and masters kept.
    assert_eq!(
        present(&data, "days"),
        [
            "hls/master-vod.m3u8",
            "hls/binaural/vod.m3u8",
            "hls/binaural/init.mp4",
            "hls/binaural/seg000001.m4s",
            "master.wav",
            "program.mp4"
        ]
    );
    // The VOD gone; the masters are the archive, kept without a rule.
    for id in ["weeks", "years"] {
        assert_eq!(present(&data, id), ["master.wav", "program.mp4"], "{id}");
        assert!(data.join("sessions").join(id).join("session.json").exists());
    }
    // Nothing is due twice.
    assert!(retention(&config, &data, false).is_empty());

    // A rule that names the masters.
    std::fs::write(
        &config,
        "[retention]\nlive_days = 2\nvod_days = 30\nmasters_days = 365\n",
    )
    .unwrap();
    let ran = retention(&config, &data, false);
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(
        by_id(&ran, "years").unwrap()["removed"],
        serde_json::json!(["masters"])
    );
    assert!(present(&data, "years").is_empty());
    assert_eq!(
        present(&data, "kept").len(),
        FILES.len(),
        "a pinned session is kept whole"
    );
}

#[test]
fn the_daemon_sweeps_reports_disk_use_and_pins() {
    let root = tmpdir("retention-daemon");
    let data = root.join("data");
    aged_session(&data, "old", 40);
    aged_session(&data, "new", 1);
    let d = Daemon::start_configured(
        &data,
        &repo().join("pipelines"),
        &[],
        None,
        Some("[retention]\nvod_days = 30\n"),
    );
    // The first sweep runs at start.
    wait_for("the old VOD removed", 10, || {
        !data.join("sessions/old/hls").exists()
    });
    let r = api(&d, "GET", "/api/v1/retention", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let s = j["sessions"].as_array().unwrap();
    let find = |id: &str| s.iter().find(|x| x["id"] == id).unwrap().clone();
    assert_eq!(find("old")["hls_bytes"], 0);
    assert_eq!(find("old")["masters_bytes"], 2000);
    assert_eq!(find("new")["hls_bytes"], 7000);
    assert_eq!(find("new")["pinned"], false);
    assert_eq!(find("new")["due"], serde_json::json!([]));
    // Pin and unpin.
    let p = api(&d, "PUT", "/api/v1/sessions/new/pin", None);
    assert_eq!(p.status, 200, "{}", p.text());
    assert!(data.join("sessions/new/pinned").exists());
    let j = api(&d, "GET", "/api/v1/retention", None).json();
    assert_eq!(
        j["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == "new")
            .unwrap()["pinned"],
        true
    );
    assert_eq!(
        api(&d, "DELETE", "/api/v1/sessions/new/pin", None).status,
        200
    );
    assert!(!data.join("sessions/new/pinned").exists());
    assert_eq!(
        api(&d, "PUT", "/api/v1/sessions/nosuch/pin", None).status,
        404
    );
    // Audited.
    let audit = api(&d, "GET", "/api/v1/audit", None).json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"session.pin") && actions.contains(&"session.unpin"),
        "{actions:?}"
    );
}
