//! Private lessons end to end, on 127.0.0.1 with real encoders and ffmpeg
//! as the client: a preset's default visibility, a start's own, tokens
//! minted by the API, refused when expired, tampered or for another
//! session, playlists that hand the token on to a client that drops query
//! strings (ffmpeg does, as Safari does), VOD after the end, and a key
//! that outlives a restart.

mod support;

use std::os::unix::fs::PermissionsExt;

use studiocast_server::PlaybackKey;
use support::*;

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn start(d: &Daemon, body: &str) -> serde_json::Value {
    let r = api(d, "POST", "/api/v1/sessions", Some(body));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn status(d: &Daemon, path: &str) -> u16 {
    get(d, path).status
}

#[test]
fn a_private_session_plays_only_with_its_token_live_and_on_demand() {
    let data = tmpdir("private");
    let private_demo = demo_named("privdemo").replace(
        "latency = \"low\"",
        "latency = \"low\"\nvisibility = \"private\"",
    );
    let pipelines = presets_with(&data, &[("privdemo", private_demo)]);
    let d = Daemon::start_with(&data, &pipelines, &[]);
    // The preset's default, then a start that says otherwise.
    let a = start(&d, r#"{"pipeline":"privdemo","title":"Closed rehearsal"}"#);
    assert_eq!(a["visibility"], "private", "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    let b = start(
        &d,
        r#"{"pipeline":"privdemo","title":"Open day","visibility":"public"}"#,
    );
    assert_eq!(b["visibility"], "public", "{b}");
    let other = b["id"].as_str().unwrap().to_string();
    for s in [&id, &other] {
        wait_for("session live", 40, || {
            api(&d, "GET", &format!("/api/v1/sessions/{s}"), None).json()["state"] == "live"
        });
    }
    wait_for("the public session's segments", 20, || {
        status(&d, &format!("/live/{other}/720p/init.mp4")) == 200
    });
    assert_eq!(status(&d, &format!("/live/{other}/master.m3u8")), 200);

    // Without a token, nothing of the private one.
    for path in [
        "master.m3u8",
        "720p/index.m3u8",
        "720p/init.mp4",
        "binaural/index.m3u8",
    ] {
        assert_eq!(status(&d, &format!("/live/{id}/{path}")), 403, "{path}");
    }
    let m = api(
        &d,
        "POST",
        &format!("/api/v1/sessions/{id}/playback-token"),
        Some(r#"{"ttl_s": 3600}"#),
    );
    assert_eq!(m.status, 201, "{}", m.text());
    let token = m.json()["token"].as_str().unwrap().to_string();
    let hls = m.json()["hls"].as_str().unwrap().to_string();
    assert_eq!(hls, format!("/live/{id}/master.m3u8?token={token}"));

    // The key the daemon made for itself: in the data folder, owner-only.
    let key_file = data.join("playback.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let key = PlaybackKey::new(std::fs::read(&key_file).unwrap().trim_ascii()).unwrap();
    let now = studiocast_server::access::unix_now();
    for (what, t) in [
        ("an expired token", key.mint(&id, now - 1)),
        ("the other session's token", key.mint(&other, now + 600)),
        (
            "a token from another key",
            PlaybackKey::new(b"some other daemon's secret!!")
                .unwrap()
                .mint(&id, now + 600),
        ),
    ] {
        let path = format!("/live/{id}/master.m3u8?token={t}");
        assert_eq!(status(&d, &path), 403, "{what}");
    }

    // With it: ffmpeg, which drops the master's query on every child
    // request, plays picture and sound, the token handed on by the
    // playlists.
    wait_for("the private session's segments", 20, || {
        status(&d, &format!("/live/{id}/720p/init.mp4?token={token}")) == 200
    });
    let streams = ffprobe_streams(&d.url(&hls));
    assert!(
        streams.iter().any(|s| s["codec_name"] == "h264")
            && streams.iter().any(|s| s["codec_name"] == "aac"),
        "{streams:?}"
    );
    let pcm = decode_audio(
        &d.url(&format!("/live/{id}/binaural/index.m3u8?token={token}")),
        2,
    );
    assert!(rms(&pcm) > 1e-3, "silent: rms {}", rms(&pcm));

    // Ended: the VOD is as private.
    for s in [&id, &other] {
        let r = api(&d, "POST", &format!("/api/v1/sessions/{s}/stop"), None);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(status(&d, &format!("/vod/{id}/master.m3u8")), 403);
    assert_eq!(status(&d, &format!("/vod/{other}/master.m3u8")), 200);
    let vod = format!("/vod/{id}/master.m3u8?token={token}");
    assert!(!ffprobe_streams(&d.url(&vod)).is_empty());

    // A restart keeps the key: the token still opens the lesson, and the
    // lesson is still closed without one.
    d.terminate();
    let d = Daemon::start_with(&data, &pipelines, &[]);
    assert_eq!(status(&d, &format!("/vod/{id}/master.m3u8")), 403);
    assert_eq!(status(&d, &vod), 200);
    let listed = listed(&d, &id);
    assert_eq!(listed["visibility"], "private", "{listed}");
    d.terminate();
    let _ = std::fs::remove_dir_all(&data);
}
