//! An audio interface whose server stops answering (a frozen JACK server:
//! every client's open blocks) while a session starts on it: the start
//! fails after its 10 s open timeout with a clear 503, the live session
//! beside it and the daemon carry on, and nothing waits for the stuck
//! open. Its own process: libjack keeps per-process state (see README).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Resumes the frozen server even if the test fails, so it can be stopped.
struct Thaw(u32);
impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn a_frozen_audio_server_fails_the_start_without_stalling_anything() {
    let server = format!("studiocast-frozen-{}", std::process::id());
    std::env::set_var("JACK_DEFAULT_SERVER", &server);
    let jackd = studiocast_capture::jack_server::JackServer::start(&server, 48_000, 256, 16)
        .expect("JACK dummy server");
    let d = Daemon::start(&tmpdir("jack-hang"));
    let live = start_live(&d, "demo");
    // Freeze the server: connecting clients now block.
    assert!(Command::new("kill")
        .args(["-STOP", &jackd.pid().to_string()])
        .status()
        .unwrap()
        .success());
    let thaw = Thaw(jackd.pid());
    let addr = d.addr.clone();
    let t0 = Instant::now();
    let starting = std::thread::spawn(move || {
        let auth = format!("Bearer {TOKEN}");
        let r = request(
            &addr,
            "POST",
            "/api/v1/sessions",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            br#"{"pipeline":"jack-16ch-3oa","title":"Frozen"}"#,
        );
        (r, t0.elapsed())
    });
    // Meanwhile the live session answers and goes on.
    let seg = last_segment(&d, &live, "720p");
    let mut worst = Duration::ZERO;
    while !starting.is_finished() && t0.elapsed() < Duration::from_secs(25) {
        let t = Instant::now();
        let s = api(&d, "GET", &format!("/api/v1/sessions/{live}"), None);
        worst = worst.max(t.elapsed());
        assert_eq!(s.json()["state"], "live");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (r, took) = starting.join().unwrap();
    eprintln!("start on a frozen JACK server: {} after {took:?} ({}); GET of the live session worst {worst:?}", r.status, r.text());
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("did not open within 10 s"),
        "{}",
        r.text()
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(worst < Duration::from_millis(250), "{worst:?}");
    assert!(
        last_segment(&d, &live, "720p") > seg,
        "the live session stalled"
    );
    // The failed start is on record as failed, its slot free again.
    let list = api(&d, "GET", "/api/v1/sessions", None).json();
    let frozen = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "Frozen")
        .expect("the failed start is listed");
    assert_eq!(frozen["state"], "failed", "{list}");
    assert_eq!(get(&d, "/readyz").status, 200);
    drop(thaw);
    api(&d, "POST", &format!("/api/v1/sessions/{live}/stop"), None);
    assert!(d.terminate().success());
}
