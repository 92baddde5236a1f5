//! The job store's rules on PostgreSQL (a throwaway server the test
//! starts), on simulated time as the SQLite store's unit tests run: leases
//! and takeover, exactly one end, the poison-job limit, cancel, retry and
//! requeue, paging, the webhook outbox; and four stores (four daemons)
//! claiming at once, each job run once.

mod support;

use std::sync::Arc;

use serde_json::json;
use studiocast::jobs::outbox::Retry;
use studiocast::jobs::store::{JobRecord, JobState, Lease, Store};
use support::pg::Postgres;
use support::tmpdir;

fn job(id: &str, at: i64) -> JobRecord {
    JobRecord::new(
        id.into(),
        json!({"preset": "x"}),
        json!({"path": "a.wav"}),
        at,
    )
}

#[test]
fn the_store_rules_hold_on_postgres() {
    let root = tmpdir("pg-store");
    let pg = Postgres::start(&root);
    let s = Store::open_postgres(&pg.url)
        .unwrap()
        .with_webhooks(vec!["http://a.example/h".into()]);
    // Leases: one worker per job; a dead worker's job is taken over and
    // the late worker can no longer move it; one end.
    s.insert(&job("a", 1)).unwrap();
    s.insert(&job("b", 2)).unwrap();
    let a = s.claim("w1", 10, 1000, 3).unwrap().unwrap();
    assert_eq!((a.id.as_str(), a.attempts), ("a", 1));
    assert_eq!(s.claim("w2", 20, 1000, 3).unwrap().unwrap().id, "b");
    assert_eq!(s.claim("w3", 30, 1000, 3).unwrap(), None);
    assert_eq!(s.claim("w3", 1009, 1000, 3).unwrap(), None);
    let taken = s.claim("w3", 1011, 1000, 3).unwrap().unwrap();
    assert_eq!((taken.id.as_str(), taken.attempts), ("a", 2));
    assert_eq!(
        s.heartbeat("a", "w1", 1012, 1000, 50.0, None).unwrap(),
        Lease::Lost
    );
    assert!(!s
        .finish("a", "w1", 1013, JobState::Succeeded, None, None)
        .unwrap());
    assert!(s
        .finish(
            "a",
            "w3",
            1014,
            JobState::Succeeded,
            None,
            Some(&json!({"ok": 1}))
        )
        .unwrap());
    assert!(!s
        .finish("a", "w3", 1015, JobState::Failed, Some("late"), None)
        .unwrap());
    let a = s.get("a").unwrap().unwrap();
    assert_eq!(
        (a.state, a.progress, a.result),
        (JobState::Succeeded, 100.0, Some(json!({"ok": 1})))
    );
    // Cancel: the running "b" learns it at its heartbeat.
    s.cancel("b", 1100).unwrap();
    assert_eq!(
        s.heartbeat("b", "w2", 1101, 1000, 10.0, Some(3.0)).unwrap(),
        Lease::Held {
            cancel_requested: true
        }
    );
    assert!(s
        .finish("b", "w2", 1102, JobState::Cancelled, None, None)
        .unwrap());
    // Retry waits for its time; requeue does not count the attempt.
    s.insert(&job("c", 3)).unwrap();
    let c = s.claim("w", 2000, 1000, 3).unwrap().unwrap();
    assert!(s.retry(&c.id, "w", 2100, "disk full").unwrap());
    assert_eq!(s.claim("w", 2099, 1000, 3).unwrap(), None);
    let c = s.claim("w", 2100, 1000, 3).unwrap().unwrap();
    assert_eq!(c.attempts, 2);
    assert!(s.requeue("c", "w", "shutdown").unwrap());
    assert_eq!(s.claim("w", 2101, 1000, 3).unwrap().unwrap().attempts, 2);
    // A job that kills its workers fails after the last attempt.
    let mut now = 2102;
    assert_eq!(
        s.claim("x", now + 1001, 1000, 3).unwrap().unwrap().attempts,
        3
    );
    now += 2003;
    assert_eq!(s.claim("y", now, 1000, 3).unwrap(), None);
    let c = s.get("c").unwrap().unwrap();
    assert_eq!(c.state, JobState::Failed);
    assert!(c.error.unwrap().contains("3 times"));
    // A queued job cancelled at once; paging newest first.
    s.insert(&job("d", 4)).unwrap();
    assert_eq!(
        s.cancel("d", now).unwrap().unwrap().state,
        JobState::Cancelled
    );
    let ids = |v: Vec<JobRecord>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list(None, 10, 0).unwrap()), ["d", "c", "b", "a"]);
    assert_eq!(ids(s.list(None, 1, 1).unwrap()), ["c"]);
    assert_eq!(
        ids(s.list(Some(JobState::Cancelled), 10, 0).unwrap()),
        ["d", "b"]
    );
    // The outbox: an event per end, leased, retried, delivered.
    for id in ["a", "b", "c", "d"] {
        assert_eq!(s.deliveries_of(id).unwrap().len(), 1, "{id}");
    }
    let due = s.take_deliveries(now, 60_000, 10).unwrap();
    assert_eq!(due.len(), 4);
    assert!(s.take_deliveries(now + 1, 60_000, 10).unwrap().is_empty());
    assert_eq!(
        s.delivery_failed(&due[0], now, "HTTP 500").unwrap(),
        Retry::At(now + 1000)
    );
    for d in &due[1..] {
        s.delivered(d, now).unwrap();
    }
    assert_eq!(s.next_delivery_ms().unwrap(), Some(now + 1000));
    let again = s.take_deliveries(now + 1000, 60_000, 10).unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    // Jobs submitted within one millisecond run in submission order, not
    // in the order of their random ids.
    for id in ["zz", "aa", "mm"] {
        s.insert(&job(id, 5_000_000)).unwrap();
    }
    let order: Vec<String> = (0..3)
        .map(|_| s.claim("w", 5_000_001, 1000, 3).unwrap().unwrap().id)
        .collect();
    assert_eq!(order, ["zz", "aa", "mm"]);
    assert_eq!(ids(s.list(None, 3, 0).unwrap()), ["mm", "aa", "zz"]);
    drop(pg);
}

#[test]
fn four_daemons_claiming_at_once_run_each_job_once() {
    let root = tmpdir("pg-race");
    let pg = Postgres::start(&root);
    let first = Store::open_postgres(&pg.url).unwrap();
    for i in 0..400 {
        first.insert(&job(&format!("j{i:04}"), i)).unwrap();
    }
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let url = pg.url.clone();
            std::thread::spawn(move || {
                let s = Arc::new(Store::open_postgres(&url).unwrap());
                let owner = format!("d{w}");
                let mut ran = Vec::new();
                while let Some(j) = s.claim(&owner, 10_000, 60_000, 3).unwrap() {
                    assert!(s
                        .finish(&j.id, &owner, 10_001, JobState::Succeeded, None, None)
                        .unwrap());
                    ran.push(j.id);
                }
                ran
            })
        })
        .collect();
    let mut all: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len(), 400, "every job ran");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400, "no job ran twice");
    let done = first.list(Some(JobState::Succeeded), 500, 0).unwrap();
    assert!(done.len() == 400 && done.iter().all(|j| j.attempts == 1));
    drop(pg);
}

/// A queue made before the submission-order column gets it when a daemon
/// of this version opens it, its waiting jobs numbered as they were
/// stored: they still run first come, first served.
#[test]
fn an_older_queue_gets_the_order_column() {
    let root = tmpdir("pg-migrate");
    let pg = Postgres::start(&root);
    let mut c = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    c.batch_execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, spec TEXT NOT NULL,
            source TEXT NOT NULL, created_ms BIGINT NOT NULL, started_ms BIGINT,
            finished_ms BIGINT, progress DOUBLE PRECISION NOT NULL DEFAULT 0,
            eta_s DOUBLE PRECISION, error TEXT, result TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT, lease_until_ms BIGINT, not_before_ms BIGINT NOT NULL);
         INSERT INTO jobs (id, state, spec, source, created_ms, not_before_ms) VALUES
            ('zz', 'queued', '{}', '{}', 7, 7), ('aa', 'queued', '{}', '{}', 7, 7);",
    )
    .unwrap();
    drop(c);
    let s = Store::open_postgres(&pg.url).unwrap();
    // A second daemon opening it changes nothing.
    let again = Store::open_postgres(&pg.url).unwrap();
    assert_eq!(s.claim("w", 8, 1000, 3).unwrap().unwrap().id, "zz");
    assert_eq!(again.claim("w", 8, 1000, 3).unwrap().unwrap().id, "aa");
    s.insert(&job("mm", 7)).unwrap();
    assert_eq!(s.claim("w", 8, 1000, 3).unwrap().unwrap().id, "mm");
    drop(pg);
}
