//! Job-end webhooks against a real daemon and a receiver on 127.0.0.1:
//! signed, retried after a 500, and owed across a restart.

mod support;

use std::path::Path;
use std::time::Duration;

use support::hook::Receiver;
use support::{api, tmpdir, wait_for, Daemon};

const SECRET: &str = "a-webhook-secret-of-some-length";

fn start(data: &Path, import: &Path, url: &str) -> Daemon {
    Daemon::start_with(
        data,
        &support::repo().join("pipelines"),
        &[
            ("STUDIOCAST_IMPORT_DIR", import.to_str().unwrap()),
            ("STUDIOCAST_WEBHOOKS", url),
            ("STUDIOCAST_WEBHOOK_SECRET", SECRET),
        ],
    )
}

/// Queues a job whose file is not audio: it fails at once, which is all
/// these tests need of it.
fn failing_job(d: &Daemon, import: &Path) -> String {
    std::fs::write(import.join("notes.wav"), b"these are not samples").unwrap();
    let r = api(
        d,
        "POST",
        "/api/v1/jobs",
        Some(r#"{"path": "notes.wav", "input_format": "ambix"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_for("the job to fail", 60, || {
        api(d, "GET", &format!("/api/v1/jobs/{id}"), None).json()["state"] == "failed"
    });
    id
}

#[test]
fn an_ended_job_is_posted_signed_and_posted_again_after_a_500() {
    let root = tmpdir("hooks-retry");
    let (data, import) = (root.join("data"), root.join("import"));
    std::fs::create_dir_all(&import).unwrap();
    let rx = Receiver::start(0, vec![500, 200]);
    let d = start(&data, &import, &rx.url());
    let id = failing_job(&d, &import);
    let got = rx.wait(2, 30);
    let (first, second) = (&got[0], &got[1]);
    for h in [first, second] {
        assert!(h.signed_by(SECRET), "bad signature: {:?}", h.headers);
        assert!(!h.signed_by("another-secret-entirely"));
        let e = h.json();
        assert_eq!(e["type"], "job.failed");
        assert_eq!(e["job"]["id"], id.as_str());
        assert_eq!(e["job"]["state"], "failed");
        assert!(e["job"]["error"].as_str().unwrap().len() > 5, "{e}");
        assert_eq!(
            h.headers["x-studiocast-event-id"],
            e["id"].as_str().unwrap()
        );
        assert_eq!(h.headers["x-studiocast-event"], "job.failed");
    }
    // The same event (one id to deduplicate on), after the first backoff.
    assert_eq!(first.json()["id"], second.json()["id"]);
    let gap = second.at - first.at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    // Delivered: nothing more comes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.got().len(), 2);
}

#[test]
fn an_event_the_receiver_missed_is_sent_after_a_restart() {
    let root = tmpdir("hooks-restart");
    let (data, import) = (root.join("data"), root.join("import"));
    std::fs::create_dir_all(&import).unwrap();
    // The receiver is down while the job ends.
    let port = Receiver::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/studiocast");
    let d = start(&data, &import, &url);
    let id = failing_job(&d, &import);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(d.terminate().success());
    // Up again, with the receiver now listening: the owed event arrives,
    // once.
    let rx = Receiver::start(port, vec![200]);
    let _d = start(&data, &import, &url);
    let got = rx.wait(1, 30);
    assert_eq!(got[0].json()["job"]["id"], id.as_str());
    assert!(got[0].signed_by(SECRET));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.got().len(), 1);
}
