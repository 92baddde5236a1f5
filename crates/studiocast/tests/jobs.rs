//! Transcoding jobs over HTTP against a real daemon: submit a recording
//! from the import folder, watch it run, play the lesson it made; refuse
//! what must be refused; cancel; survive a `kill -9` mid-job.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{api, ffprobe_streams, tmpdir, wait_for, write_foa, Daemon};

/// Integrated loudness by ffmpeg's `ebur128` filter.
fn ffmpeg_integrated(url: &str) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-nostats",
            "-hide_banner",
            "-i",
            url,
            "-af",
            "ebur128",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.split("Summary:")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("I:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no loudness in {text}"))
}

/// The nice value of every thread of the daemon's transcode child.
fn transcode_niceness(daemon: u32) -> Vec<i64> {
    // After the command name's closing parenthesis: state, ppid, … nice is
    // the 17th field.
    let fields = |stat: &str| -> Vec<String> {
        stat.rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let f = fields(&stat);
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let is_transcode = String::from_utf8_lossy(&cmdline).contains("transcode");
        if f.get(1).map(String::as_str) != Some(&daemon.to_string()) || !is_transcode {
            continue;
        }
        for t in std::fs::read_dir(e.path().join("task")).unwrap().flatten() {
            if let Ok(ts) = std::fs::read_to_string(t.path().join("stat")) {
                if let Some(n) = fields(&ts).get(16).and_then(|n| n.parse().ok()) {
                    out.push(n);
                }
            }
        }
    }
    out
}

fn start(data: &Path, import: &Path) -> Daemon {
    Daemon::start_with(
        data,
        &support::repo().join("pipelines"),
        &[("STUDIOCAST_IMPORT_DIR", import.to_str().unwrap())],
    )
}

fn submit(d: &Daemon, body: &str) -> support::Response {
    api(d, "POST", "/api/v1/jobs", Some(body))
}

fn job(d: &Daemon, id: &str) -> serde_json::Value {
    api(d, "GET", &format!("/api/v1/jobs/{id}"), None).json()
}

fn wait_state(d: &Daemon, id: &str, state: &str, secs: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_for(&format!("job {id} {state}"), secs, || {
        last = job(d, id);
        last["state"] == state
    });
    last
}

#[test]
fn a_path_job_becomes_a_lesson_served_like_a_session() {
    let root = tmpdir("jobs-path");
    let (data, import) = (root.join("data"), root.join("import"));
    std::fs::create_dir_all(import.join("term1")).unwrap();
    write_foa(&import.join("term1/lesson.wav"), 8.0);
    let d = start(&data, &import);
    let r = submit(
        &d,
        r#"{"path": "term1/lesson.wav", "input_format": "ambix", "order": 1,
            "title": "Scales", "loudness": -18}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["state"], "queued");
    // Progress is reported while it runs (it may be fast: at least the end).
    let done = wait_state(&d, &id, "succeeded", 120);
    assert_eq!(done["progress"], 100.0);
    assert_eq!(done["attempts"], 1);
    let master = done["outputs"]["master"].as_str().unwrap().to_string();
    assert_eq!(master, format!("/vod/{id}/master.m3u8"));
    assert_eq!(done["loudness"].as_array().unwrap().len(), 2, "{done}");
    // The lesson as a viewer gets it, measured by ffmpeg.
    for r in ["binaural", "stereo"] {
        let url = d.url(&format!("/vod/{id}/{r}/index.m3u8"));
        let lufs = ffmpeg_integrated(&url);
        assert!((lufs - -18.0).abs() <= 0.5, "{r}: {lufs} LUFS, asked -18");
    }
    let streams = ffprobe_streams(&d.url(&master));
    assert!(!streams.is_empty());
    // Each rendition as one file to download, as long as the recording.
    let dl = done["outputs"]["downloads"]["binaural"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dl, format!("/vod/{id}/download/binaural.m4a"));
    let r = support::get(&d, &dl);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("audio/mp4"));
    assert_eq!(
        r.header("content-disposition"),
        Some(format!("attachment; filename=\"{id}-binaural.m4a\"").as_str())
    );
    let secs = support::ffprobe_duration(&d.url(&dl));
    assert!(
        (secs - 8.0).abs() < 0.1,
        "the download lasts {secs} s, the recording 8 s"
    );
    assert_eq!(
        support::get(&d, &format!("/vod/{id}/download/../loudness.json")).status,
        404
    );
    assert!(
        streams.iter().all(|s| s["codec_name"] == "aac"),
        "{streams:?}"
    );
    // No picture, no ladder and no poster.
    assert!(done["outputs"]["poster"].is_null(), "{done}");
    assert!(done["outputs"]["video"].is_null(), "{done}");

    // A camera's file: the default preset (lesson) gives it the video
    // ladder and a poster, served like the rest.
    let cam = import.join("term1/camera.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=3",
        ])
        .args(["-f", "lavfi", "-i", "sine=f=440:r=48000:d=3"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-ac", "2"])
        .arg(&cam)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let r = submit(
        &d,
        r#"{"path": "term1/camera.mp4", "input_format": "stereo", "title": "Bowing",
            "visibility": "private"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let vid = r.json()["id"].as_str().unwrap().to_string();
    let vdone = wait_state(&d, &vid, "succeeded", 180);
    // A private lesson: nothing of it without a token, all of it with one
    // minted for it.
    for path in [
        "master.m3u8",
        "720p/index.m3u8",
        "poster.jpg",
        "download/binaural.m4a",
    ] {
        let r = support::get(&d, &format!("/vod/{vid}/{path}"));
        assert_eq!(r.status, 403, "{path} without a token");
    }
    let minted = api(
        &d,
        "POST",
        &format!("/api/v1/jobs/{vid}/playback-token"),
        None,
    );
    assert_eq!(minted.status, 201, "{}", minted.text());
    let token = minted.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        minted.json()["vod"],
        format!("/vod/{vid}/master.m3u8?token={token}")
    );
    assert_eq!(
        vdone["outputs"]["video"],
        serde_json::json!(["1080p", "720p", "480p", "360p"]),
        "{vdone}"
    );
    // Its player page: nothing without the token; with it, the lesson's
    // title, its poster and its VOD, the token carried on both.
    let page = support::get(&d, &format!("/embed/{vid}"));
    assert_eq!(page.status, 403);
    assert!(!page.text().contains("Bowing"), "{}", page.text());
    let page = support::get(&d, &format!("/embed/{vid}?token={token}"));
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("<title>Bowing</title>"), "{html}");
    assert!(
        html.contains(&format!(
            r#""poster":"../vod/{vid}/poster.jpg?token={token}""#
        )) && html.contains(&format!(
            r#""src":"../vod/{vid}/master.m3u8?token={token}""#
        )),
        "{html}"
    );
    // oEmbed gives the poster as the thumbnail, with its size.
    let page_url = d.url(&format!("/embed/{vid}?token={token}"));
    let enc: String = page_url
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let o = support::get(&d, &format!("/oembed?url={enc}"));
    assert_eq!(o.status, 200, "{}", o.text());
    let o = o.json();
    assert_eq!(
        o["thumbnail_url"],
        d.url(&format!("/vod/{vid}/poster.jpg?token={token}"))
    );
    assert_eq!(
        (
            o["thumbnail_width"].as_u64(),
            o["thumbnail_height"].as_u64()
        ),
        (Some(1920), Some(1080)),
        "{o}"
    );
    let poster = vdone["outputs"]["poster"].as_str().unwrap().to_string();
    assert_eq!(poster, format!("/vod/{vid}/poster.jpg"));
    let p = support::get(&d, &format!("{poster}?token={token}"));
    assert_eq!(p.status, 200);
    assert_eq!(p.header("content-type"), Some("image/jpeg"));
    // ffprobe drops the master's query on its child requests: the token
    // reaches them through the rewritten playlists.
    let vstreams = ffprobe_streams(&d.url(&format!("/vod/{vid}/master.m3u8?token={token}")));
    assert!(
        vstreams.iter().any(|s| s["codec_name"] == "h264")
            && vstreams.iter().any(|s| s["codec_name"] == "aac"),
        "{vstreams:?}"
    );
    // A session cannot take its picture from a file.
    let s = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline": "lesson", "title": "Nope"}"#),
    );
    assert_eq!(s.status, 503, "{}", s.text());
    assert!(s.text().contains("transcoding job"), "{}", s.text());

    // Listed, newest first, and by state.
    let list = api(&d, "GET", "/api/v1/jobs?state=succeeded", None).json();
    assert_eq!(list[0]["id"], vid.as_str());
    assert_eq!(list[1]["id"], id.as_str());
    let none = api(&d, "GET", "/api/v1/jobs?state=failed", None).json();
    assert_eq!(none.as_array().unwrap().len(), 0);
    assert_eq!(api(&d, "GET", "/api/v1/jobs?state=bogus", None).status, 400);
    assert_eq!(api(&d, "GET", "/api/v1/jobs?limit=0", None).status, 400);
    assert_eq!(api(&d, "GET", "/api/v1/jobs/job-nope", None).status, 404);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_jobs_are_refused_and_a_bad_file_fails_alone() {
    let root = tmpdir("jobs-bad");
    let (data, import) = (root.join("data"), root.join("import"));
    std::fs::create_dir_all(&import).unwrap();
    write_foa(&import.join("ok.wav"), 2.0);
    std::fs::write(import.join("broken.wav"), b"RIFF\x10\x00\x00\x00WAVEjunk").unwrap();
    // A file outside the folder, and a symlink inside pointing at it.
    write_foa(&root.join("secret.wav"), 1.0);
    std::os::unix::fs::symlink(root.join("secret.wav"), import.join("link.wav")).unwrap();
    let d = start(&data, &import);
    for (body, why) in [
        (
            r#"{"path": "../secret.wav", "input_format": "ambix"}"#,
            "relative path inside",
        ),
        (
            r#"{"path": "/etc/passwd", "input_format": "ambix"}"#,
            "relative path inside",
        ),
        (
            r#"{"path": "link.wav", "input_format": "ambix"}"#,
            "leads out",
        ),
        (
            r#"{"path": "ok.wav", "input_format": "ambix", "colour": "red"}"#,
            "unknown field",
        ),
        (
            r#"{"path": "ok.wav", "input_format": "octophonic"}"#,
            "unknown variant",
        ),
        (r#"{"input_format": "ambix"}"#, "needs a source"),
        (
            r#"{"path": "ok.wav", "input_format": "ambix", "loudness": 12}"#,
            "loudness",
        ),
        (
            r#"{"session": "../x", "input_format": "ambix"}"#,
            "not a session id",
        ),
    ] {
        let r = submit(&d, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(why), "{body}: {}", r.text());
    }
    // Well-formed names of things that are not there: 404.
    for (body, why) in [
        (
            r#"{"path": "nope.wav", "input_format": "ambix"}"#,
            "not in the import folder",
        ),
        (
            r#"{"path": "ok.wav/x", "input_format": "ambix"}"#,
            "not in the import folder",
        ),
        (
            r#"{"session": "nope", "input_format": "ambix"}"#,
            "no master recording",
        ),
    ] {
        let r = submit(&d, body);
        assert_eq!(r.status, 404, "{body}: {}", r.text());
        assert!(r.text().contains(why), "{body}: {}", r.text());
    }
    // Accepted, then failed by the worker with a clear message; the next
    // job runs regardless.
    let broken = submit(
        &d,
        r#"{"path": "broken.wav", "input_format": "ambix", "order": 1}"#,
    );
    assert_eq!(broken.status, 201);
    let wrong = submit(
        &d,
        r#"{"path": "ok.wav", "input_format": "ambix", "order": 3}"#,
    );
    let ok = submit(
        &d,
        r#"{"path": "ok.wav", "input_format": "ambix", "order": 1}"#,
    );
    let broken = wait_state(&d, broken.json()["id"].as_str().unwrap(), "failed", 60);
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("cannot read input"),
        "{broken}"
    );
    let wrong = wait_state(&d, wrong.json()["id"].as_str().unwrap(), "failed", 60);
    assert!(
        wrong["error"]
            .as_str()
            .unwrap()
            .contains("needs (N+1)² = 16"),
        "{wrong}"
    );
    // An input failure is not retried.
    assert_eq!(wrong["attempts"], 1);
    wait_state(&d, ok.json()["id"].as_str().unwrap(), "succeeded", 120);
    let _ = std::fs::remove_dir_all(&root);
}

/// A queued job is cancelled at once; a running one within about a second,
/// its partial output gone; a `kill -9` mid-job is followed by a restart
/// that completes the job exactly once; so is a SIGTERM, which puts the
/// job back in the queue without counting the interrupted run.
#[test]
fn cancel_and_restart_mid_job() {
    let root = tmpdir("jobs-cancel");
    let (data, import) = (root.join("data"), root.join("import"));
    std::fs::create_dir_all(&import).unwrap();
    // Long enough to be caught running (about 20 s of work here).
    write_foa(&import.join("long.wav"), 600.0);
    let mut d = start(&data, &import);
    let body = r#"{"path": "long.wav", "input_format": "ambix", "order": 1}"#;
    let running = submit(&d, body).json()["id"].as_str().unwrap().to_string();
    let queued = submit(&d, body).json()["id"].as_str().unwrap().to_string();
    wait_state(&d, &running, "running", 30);
    // Encoding (pass 2, GStreamer's threads up): every thread of the
    // transcode process runs at nice 10, below live sessions.
    wait_for("pass 2", 60, || {
        job(&d, &running)["progress"].as_f64().unwrap_or(0.0) > 55.0
    });
    let niceness = transcode_niceness(d.child.id());
    assert!(niceness.len() > 3, "{niceness:?}");
    assert!(niceness.iter().all(|&n| n == 10), "{niceness:?}");
    // The queued one: at once.
    let r = api(&d, "DELETE", &format!("/api/v1/jobs/{queued}"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "cancelled");
    // The running one: within about a second (the heartbeat's period).
    let asked = Instant::now();
    api(&d, "DELETE", &format!("/api/v1/jobs/{running}"), None);
    wait_state(&d, &running, "cancelled", 10);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let sessions = data.join("sessions");
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(&sessions)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains("partial") || n.starts_with("job-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("the partial output to go", 10, || leftovers().is_empty());

    // kill -9 mid-job, restart: the job runs again and ends once.
    let again = submit(&d, body).json()["id"].as_str().unwrap().to_string();
    wait_for("progress", 60, || {
        job(&d, &again)["progress"].as_f64().unwrap_or(0.0) > 5.0
    });
    let _ = d.child.kill();
    let _ = d.child.wait();
    drop(d);
    let d = start(&data, &import);
    let done = wait_state(&d, &again, "succeeded", 240);
    assert_eq!(done["attempts"], 2, "{done}");
    // One lesson, and nothing of the killed attempt left beside it.
    assert_eq!(leftovers(), std::slice::from_ref(&again));
    let inside: Vec<String> = std::fs::read_dir(sessions.join(&again))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(inside, ["hls"]);

    // SIGTERM mid-job: the daemon puts the job back in the queue (not
    // cancelled, not failed), and the next start runs it to the end.
    let term = submit(&d, body).json()["id"].as_str().unwrap().to_string();
    wait_for("progress", 60, || {
        job(&d, &term)["progress"].as_f64().unwrap_or(0.0) > 5.0
    });
    assert!(d.terminate().success());
    let d = start(&data, &import);
    let done = wait_state(&d, &term, "succeeded", 240);
    // A shutdown's interruption is not an attempt (a kill -9 is: it could
    // be the file that kills the worker).
    assert_eq!(done["attempts"], 1, "{done}");
    let _ = std::fs::remove_dir_all(&root);
}
