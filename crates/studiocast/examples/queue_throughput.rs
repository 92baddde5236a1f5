//! The job queue's own speed, with trivial jobs (no media): how many jobs
//! a second go through claim and finish with W workers, each with its own
//! connection as separate daemons have, on the embedded SQLite store or a
//! PostgreSQL server, and how long after a dead worker's lease runs out
//! another worker has its job.
//!
//!   cargo run --release -p studiocast --example queue_throughput -- [JOBS] [WORKERS] [postgres://…]
//!
//! `benches/queue.sh` runs both, starting a throwaway PostgreSQL server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use studiocast::jobs::store::{JobRecord, JobState, Store};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let workers: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let db = args.next();
    let dir = std::env::temp_dir().join(format!("studiocast-queue-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("jobs.sqlite");
    let open = || match &db {
        Some(url) => Store::open_postgres(url),
        None => Store::open(&path),
    };
    let store = Arc::new(open()?);
    let spec = serde_json::json!({"preset": "audio-only", "input_format": "ambix"});
    let source = serde_json::json!({"path": "x.wav"});

    let t = Instant::now();
    for i in 0..jobs {
        store.insert(&JobRecord::new(
            format!("job-{i:08}"),
            spec.clone(),
            source.clone(),
            now_ms(),
        ))?;
    }
    let insert = t.elapsed();

    let t = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let store = open();
            std::thread::spawn(move || -> anyhow::Result<usize> {
                let store = store?;
                let owner = format!("bench:{w}");
                let mut done = 0;
                while let Some(j) = store.claim(&owner, now_ms(), 10_000, 3)? {
                    let ok =
                        store.finish(&j.id, &owner, now_ms(), JobState::Succeeded, None, None)?;
                    anyhow::ensure!(ok, "lost a job it held");
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let run = t.elapsed();
    anyhow::ensure!(total == jobs, "{total} of {jobs} jobs ran");
    let once = store.list(Some(JobState::Succeeded), jobs, 0)?;
    anyhow::ensure!(
        once.len() == jobs && once.iter().all(|j| j.attempts == 1),
        "a job ran twice"
    );

    // A worker takes a job and dies (no heartbeat): another, polling every
    // 50 ms as an idle one waits, takes it once the lease runs out.
    let lease = 1000;
    store.insert(&JobRecord::new("job-orphan".into(), spec, source, now_ms()))?;
    store.claim("dead", now_ms(), lease, 3)?;
    let expiry = Instant::now() + Duration::from_millis(lease as u64);
    let taken = loop {
        if store.claim("alive", now_ms(), lease, 3)?.is_some() {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let after = taken.saturating_duration_since(expiry);

    println!(
        "{}",
        serde_json::json!({
            "store": if db.is_some() { "postgres" } else { "sqlite" },
            "jobs": jobs,
            "workers": workers,
            "inserts_per_s": jobs as f64 / insert.as_secs_f64(),
            "jobs_per_s": jobs as f64 / run.as_secs_f64(),
            "takeover_after_lease_ms": after.as_secs_f64() * 1000.0,
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
