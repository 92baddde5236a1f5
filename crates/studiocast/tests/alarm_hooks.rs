//! `[server] alarm_webhooks`: an SRT listener session whose encoder never
//! connects raises "video source lost" after 2 s; the alarm reaches the
//! webhook signed like job events, and the events stream carries it too.

mod support;

use support::hook::Receiver;
use support::*;

const SECRET: &str = "alarm-secret-0123456789";

#[test]
fn a_lost_source_alarm_is_posted_signed() {
    let dir = tmpdir("alarm-hooks");
    let hook = Receiver::start(0, vec![500, 200]);
    let port = Receiver::free_port();
    let preset = format!(
        "name = \"srt\"\nsegment_seconds = 1\nlatency = \"low\"\n[video]\n\
         source = {{ kind = \"srt\", mode = \"listener\", port = {port}, allow_unencrypted = true }}\n\
         framerate = 25\n[[video.rendition]]\nid = \"180p\"\nwidth = 320\nheight = 180\nbitrate_kbps = 300\n\
         [audio]\nsource = {{ kind = \"embedded\", channels = 2 }}\n[[audio.rendition]]\nid = \"stereo\"\n\
         name = \"S\"\nmix = \"stereo\"\ndefault = true\n"
    );
    let pipelines = presets_with(&dir, &[("srt", preset)]);
    let d = Daemon::start_configured(
        &dir.join("data"),
        &pipelines,
        &[("STUDIOCAST_WEBHOOK_SECRET", SECRET)],
        None,
        Some(&format!(
            "[server]\nalarm_webhooks = [\"{}\"]\n",
            hook.url()
        )),
    );
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"srt","title":"No encoder"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    // Two alarms come (the video source, and the audio it carries); the
    // first request gets a 500 and is retried a second later.
    let got = hook.wait(3, 30);
    for h in &got {
        assert!(h.signed_by(SECRET), "signature");
        assert!(!h.signed_by("another-secret-0123456789"));
        let v = h.json();
        assert_eq!(v["type"], "alarm.raised", "{v}");
        assert_eq!(v["session"], id.as_str());
    }
    let texts: Vec<String> = got.iter().map(|h| h.json()["alarm"].to_string()).collect();
    assert!(
        texts.iter().any(|t| t.contains("video source lost")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("audio input lost")),
        "{texts:?}"
    );
    // The refused one again, the same event (the receiver deduplicates by
    // its id), a second or so later.
    let first = &got[0];
    let again = got[1..]
        .iter()
        .find(|h| h.json()["id"] == first.json()["id"])
        .expect("the refused event was retried");
    let gap = again.at.duration_since(first.at);
    assert!(gap >= std::time::Duration::from_millis(900), "{gap:?}");
    // And the session shows it.
    let s = api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json();
    assert!(s["alarms"].to_string().contains("video source lost"), "{s}");
    api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    d.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
