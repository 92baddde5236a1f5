//! Two daemons sharing one job queue on a real PostgreSQL server (started
//! by the test) and one output folder: ten jobs, one daemon killed with
//! `kill -9` mid-job. Every job succeeds exactly once, with one lesson
//! each, nothing half-written, and one webhook event each.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use support::hook::Receiver;
use support::pg::Postgres;
use support::{api, tmpdir, wait_for, write_foa, Daemon};

const SECRET: &str = "shared-queue-webhook-secret";

fn start(data: &Path, shared: &Path, import: &Path, db: &str, hook: &str) -> Daemon {
    Daemon::start_with(
        data,
        &support::repo().join("pipelines"),
        &[
            ("STUDIOCAST_JOBS_DATABASE", db),
            ("STUDIOCAST_SHARED_DIR", shared.to_str().unwrap()),
            ("STUDIOCAST_IMPORT_DIR", import.to_str().unwrap()),
            ("STUDIOCAST_WEBHOOKS", hook),
            ("STUDIOCAST_WEBHOOK_SECRET", SECRET),
        ],
    )
}

/// The pid of a daemon's running transcode child, if any.
fn transcode_child(daemon: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(daemon) && String::from_utf8_lossy(&cmd).contains("transcode") {
            return Some(pid);
        }
    }
    None
}

#[test]
fn two_daemons_share_a_queue_and_a_killed_ones_job_runs_once_elsewhere() {
    let root = tmpdir("shared-queue");
    let pg = Postgres::start(&root.join("pg"));
    let (shared, import) = (root.join("shared"), root.join("import"));
    std::fs::create_dir_all(&import).unwrap();
    // Long enough (a few seconds of transcode) that a surviving child
    // would still be running when checked.
    write_foa(&import.join("lesson.wav"), 60.0);
    let rx = Receiver::start(0, vec![200]);
    let mut a = start(&root.join("a"), &shared, &import, &pg.url, &rx.url());
    let b = start(&root.join("b"), &shared, &import, &pg.url, &rx.url());
    let mut ids = Vec::new();
    for n in 0..10 {
        let d = if n % 2 == 0 { &a } else { &b };
        let body = format!(
            r#"{{"path": "lesson.wav", "input_format": "ambix", "order": 1, "title": "take {n}"}}"#
        );
        let r = api(d, "POST", "/api/v1/jobs", Some(&body));
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    // Both daemons list the same queue.
    assert_eq!(
        api(&b, "GET", "/api/v1/jobs?limit=50", None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        10
    );
    // Daemon A dies mid-job, its transcode with it.
    let mut child = None;
    wait_for("a transcode on daemon A", 60, || {
        child = transcode_child(a.child.id());
        child.is_some()
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let orphan = format!("/proc/{}", child.unwrap());
    // Gone, or a zombie waiting for whoever adopted it to reap it.
    wait_for("A's transcode to die with it", 1, || {
        std::fs::read_to_string(format!("{orphan}/stat")).map_or(true, |st| {
            st.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    });
    // B finishes everything, A's job after A's lease ran out.
    let mut jobs: Vec<serde_json::Value> = Vec::new();
    wait_for("all ten jobs to succeed", 300, || {
        jobs = ids
            .iter()
            .map(|id| api(&b, "GET", &format!("/api/v1/jobs/{id}"), None).json())
            .collect();
        jobs.iter().all(|j| j["state"] == "succeeded")
    });
    let retried: Vec<&serde_json::Value> = jobs.iter().filter(|j| j["attempts"] != 1).collect();
    assert_eq!(retried.len(), 1, "one job was taken over: {retried:?}");
    assert_eq!(retried[0]["attempts"], 2);
    // Exactly one lesson per job, nothing partial beside them.
    let lessons = shared.join("sessions");
    let mut names: Vec<String> = std::fs::read_dir(&lessons)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(names, want);
    for id in &ids {
        let inside: Vec<String> = std::fs::read_dir(lessons.join(id))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(inside, ["hls"], "{id}: {inside:?}");
        assert!(lessons.join(id).join("hls/master.m3u8").is_file());
    }
    // B serves every lesson from the shared folder, A's included.
    let master = retried[0]["outputs"]["master"].as_str().unwrap();
    assert_eq!(support::get(&b, master).status, 200);
    // One event per job (delivery is at least once: a repeat carries the
    // same event id), each signed, none lost.
    wait_for("ten webhook events", 30, || {
        let got = rx.got();
        got.iter()
            .map(|h| h.json()["job"]["id"].as_str().unwrap().to_string())
            .collect::<HashSet<_>>()
            .len()
            == 10
    });
    let mut per_job: HashMap<String, HashSet<String>> = HashMap::new();
    for h in rx.got() {
        assert!(h.signed_by(SECRET));
        let e = h.json();
        assert_eq!(e["type"], "job.succeeded");
        per_job
            .entry(e["job"]["id"].as_str().unwrap().into())
            .or_default()
            .insert(e["id"].as_str().unwrap().into());
    }
    assert_eq!(per_job.len(), 10);
    assert!(
        per_job.values().all(|events| events.len() == 1),
        "{per_job:?}"
    );
    // A clean stop with the PostgreSQL client open (its own runtime must
    // not be dropped inside the daemon's).
    let status = b.terminate();
    assert!(status.success(), "{status:?}");
    drop(pg);
}
