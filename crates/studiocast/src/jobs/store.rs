//! The persistent job queue: SQLite under the data folder (WAL, one file),
//! with leases so that a job runs on one worker at a time and a worker
//! that dies gives its job back when its lease runs out.
//!
//! Every state change is one statement or one immediate transaction, and
//! every change a worker makes is guarded by its lease (`lease_owner`):
//! a worker that lost its job (the lease expired, another took it over)
//! can no longer move it, so a job ends exactly once.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::outbox;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("job store: {0}")]
    Json(#[from] serde_json::Error),
    #[error("job store lock poisoned")]
    Poisoned,
    #[error("job store: no randomness for an event id: {0}")]
    Random(String),
    #[error("job store (PostgreSQL): {0}")]
    Postgres(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn ended(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// One job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub state: JobState,
    pub spec: serde_json::Value,
    pub source: serde_json::Value,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// 0–100.
    pub progress: f64,
    pub eta_s: Option<f64>,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub attempts: u32,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    /// A retried job waits until then.
    pub not_before_ms: i64,
}

impl JobRecord {
    pub fn new(id: String, spec: serde_json::Value, source: serde_json::Value, now: i64) -> Self {
        JobRecord {
            id,
            state: JobState::Queued,
            spec,
            source,
            created_ms: now,
            started_ms: None,
            finished_ms: None,
            progress: 0.0,
            eta_s: None,
            error: None,
            result: None,
            attempts: 0,
            cancel_requested: false,
            lease_owner: None,
            lease_until_ms: None,
            not_before_ms: now,
        }
    }
}

/// What a worker's heartbeat learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Held {
        cancel_requested: bool,
    },
    /// Expired and taken by another, or the job ended elsewhere.
    Lost,
}

/// Where the queue lives.
enum Db {
    /// One file under the data folder: one daemon.
    Lite(Mutex<Connection>),
    /// Shared by several daemons.
    Pg(Box<super::pg::Pg>),
}

pub struct Store {
    db: Db,
    /// Where job-end events go (see [`super::outbox`]).
    webhooks: Vec<String>,
    /// Called after an event is committed (wakes the deliverer).
    on_event: Option<Box<dyn Fn() + Send + Sync>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    progress REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    error TEXT,
    result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    not_before_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, not_before_ms, created_ms);
";

const COLUMNS: &str = "id, state, spec, source, created_ms, started_ms, finished_ms, progress, \
    eta_s, error, result, attempts, cancel_requested, lease_owner, lease_until_ms, not_before_ms";

fn record(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        let text: String = row.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    let result: Option<String> = row.get(10)?;
    let state: String = row.get(1)?;
    Ok(JobRecord {
        id: row.get(0)?,
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        spec: json(2)?,
        source: json(3)?,
        created_ms: row.get(4)?,
        started_ms: row.get(5)?,
        finished_ms: row.get(6)?,
        progress: row.get(7)?,
        eta_s: row.get(8)?,
        error: row.get(9)?,
        result: result.and_then(|t| serde_json::from_str(&t).ok()),
        attempts: row.get(11)?,
        cancel_requested: row.get::<_, i64>(12)? != 0,
        lease_owner: row.get(13)?,
        lease_until_ms: row.get(14)?,
        not_before_ms: row.get(15)?,
    })
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        // WAL: readers (the API) never wait for the writer (a worker).
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        db.execute_batch(super::outbox::SCHEMA)?;
        Ok(Store {
            db: Db::Lite(Mutex::new(db)),
            webhooks: Vec::new(),
            on_event: None,
        })
    }

    /// The queue on a PostgreSQL server (`postgres://user@host:port/db`).
    /// Blocks: call it off the async runtime.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Ok(Store {
            db: Db::Pg(Box::new(super::pg::Pg::open(url)?)),
            webhooks: Vec::new(),
            on_event: None,
        })
    }

    pub(super) fn pg(&self) -> Option<&super::pg::Pg> {
        match &self.db {
            Db::Pg(pg) => Some(pg),
            Db::Lite(_) => None,
        }
    }

    /// `f` runs after each committed job-end event.
    pub fn with_event_hook(mut self, f: impl Fn() + Send + Sync + 'static) -> Store {
        self.on_event = Some(Box::new(f));
        self
    }

    fn events_written(&self) {
        if let (Some(f), false) = (&self.on_event, self.webhooks.is_empty()) {
            f();
        }
    }

    /// From now on, every job that ends gets an event for each URL.
    pub fn with_webhooks(mut self, urls: Vec<String>) -> Store {
        self.webhooks = urls;
        self
    }

    pub(super) fn db(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        match &self.db {
            Db::Lite(c) => c.lock().map_err(|_| StoreError::Poisoned),
            // Every caller takes the PostgreSQL branch first.
            Db::Pg(_) => Err(StoreError::Postgres("not an SQLite store".into())),
        }
    }

    pub fn insert(&self, j: &JobRecord) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.insert(j);
        }
        self.db()?.execute(
            "INSERT INTO jobs (id, state, spec, source, created_ms, not_before_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                j.id,
                j.state.as_str(),
                serde_json::to_string(&j.spec)?,
                serde_json::to_string(&j.source)?,
                j.created_ms,
                j.not_before_ms
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.get(id);
        }
        let db = self.db()?;
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1");
        Ok(db.query_row(&sql, params![id], record).optional()?)
    }

    /// Newest first.
    pub fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.list(state, limit, offset);
        }
        let db = self.db()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) \
             ORDER BY created_ms DESC, rowid DESC LIMIT ?2 OFFSET ?3"
        );
        let mut stmt = db.prepare(&sql)?;
        let rows = stmt.query_map(
            params![state.map(JobState::as_str), limit as i64, offset as i64],
            record,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Take the oldest runnable job for `owner` until `now + lease_ms`: a
    /// queued one whose time has come, or a running one whose worker's
    /// lease ran out (it died). A taken-over job that was asked to cancel
    /// ends cancelled instead, and one whose workers died `max_attempts`
    /// times ends failed (a file that kills whatever runs it must not be
    /// run for ever).
    pub fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<JobRecord>, StoreError> {
        if let Some(pg) = self.pg() {
            let (job, event) = pg.claim(owner, now, lease_ms, max_attempts, &self.webhooks)?;
            if event {
                self.events_written();
            }
            return Ok(job);
        }
        let mut db = self.db()?;
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: Option<(String, i64, String, u32)> = tx
            .query_row(
                "SELECT id, cancel_requested, state, attempts FROM jobs \
                 WHERE (state = 'queued' AND not_before_ms <= ?1) \
                    OR (state = 'running' AND lease_until_ms < ?1) \
                 ORDER BY created_ms, rowid LIMIT 1",
                params![now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((id, cancel, state, attempts)) = found else {
            return Ok(None);
        };
        let ended = end_at_claim(cancel != 0, &state, attempts, max_attempts);
        if let Some((end, error)) = ended {
            tx.execute(
                "UPDATE jobs SET state = ?2, finished_ms = ?3, error = COALESCE(?4, error), \
                 lease_owner = NULL, lease_until_ms = NULL WHERE id = ?1",
                params![id, end.as_str(), now, error],
            )?;
            outbox::record_end(&tx, &id, end, now, &self.webhooks)?;
            tx.commit()?;
            self.events_written();
            return Ok(None);
        }
        tx.execute(
            "UPDATE jobs SET state = 'running', lease_owner = ?2, lease_until_ms = ?3, \
             attempts = attempts + 1, started_ms = COALESCE(started_ms, ?4), progress = 0, \
             eta_s = NULL WHERE id = ?1",
            params![id, owner, now + lease_ms, now],
        )?;
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1");
        let job = tx.query_row(&sql, params![id], record)?;
        tx.commit()?;
        Ok(Some(job))
    }

    /// Extend the lease and report progress; learn of a cancel request.
    pub fn heartbeat(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
        progress: f64,
        eta_s: Option<f64>,
    ) -> Result<Lease, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.heartbeat(id, owner, now, lease_ms, progress, eta_s);
        }
        let db = self.db()?;
        let n = db.execute(
            "UPDATE jobs SET lease_until_ms = ?3, progress = ?4, eta_s = ?5 \
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![id, owner, now + lease_ms, progress, eta_s],
        )?;
        if n == 0 {
            return Ok(Lease::Lost);
        }
        let cancel: i64 = db.query_row(
            "SELECT cancel_requested FROM jobs WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        Ok(Lease::Held {
            cancel_requested: cancel != 0,
        })
    }

    /// End a running job held by `owner`; false if it no longer holds it
    /// (nothing changes then).
    pub fn finish(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        state: JobState,
        error: Option<&str>,
        result: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let result = result.map(serde_json::to_string).transpose()?;
        let progress = if state == JobState::Succeeded {
            100.0
        } else {
            -1.0
        };
        if let Some(pg) = self.pg() {
            let r = result.as_deref();
            let done = pg.finish(id, owner, now, state, error, r, progress, &self.webhooks)?;
            if done {
                self.events_written();
            }
            return Ok(done);
        }
        let mut db = self.db()?;
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE jobs SET state = ?3, finished_ms = ?4, error = ?5, result = ?6, \
             progress = CASE WHEN ?7 >= 0 THEN ?7 ELSE progress END, eta_s = NULL, \
             lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![id, owner, state.as_str(), now, error, result, progress],
        )?;
        if n == 1 {
            outbox::record_end(&tx, id, state, now, &self.webhooks)?;
        }
        tx.commit()?;
        if n == 1 {
            self.events_written();
        }
        Ok(n == 1)
    }

    /// Give a running job back to the queue after a transient failure, to
    /// run again from `not_before`.
    pub fn retry(
        &self,
        id: &str,
        owner: &str,
        not_before: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.retry(id, owner, not_before, error);
        }
        let n = self.db()?.execute(
            "UPDATE jobs SET state = 'queued', not_before_ms = ?3, error = ?4, progress = 0, \
             eta_s = NULL, lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![id, owner, not_before, error],
        )?;
        Ok(n == 1)
    }

    /// Put a running job back in the queue at once, as if it had not been
    /// started (a shutdown interrupted it: that run does not count).
    pub fn requeue(&self, id: &str, owner: &str, why: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.requeue(id, owner, why);
        }
        let n = self.db()?.execute(
            "UPDATE jobs SET state = 'queued', error = ?3, progress = 0, eta_s = NULL, \
             attempts = MAX(attempts - 1, 0), lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![id, owner, why],
        )?;
        Ok(n == 1)
    }

    /// Cancel: a queued job ends now; a running one is asked to stop (its
    /// worker sees it at its next heartbeat). `None`: no such job.
    pub fn cancel(&self, id: &str, now: i64) -> Result<Option<JobRecord>, StoreError> {
        if let Some(pg) = self.pg() {
            if pg.cancel(id, now, &self.webhooks)? {
                self.events_written();
            }
        } else {
            let mut db = self.db()?;
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ended = tx.execute(
                "UPDATE jobs SET state = 'cancelled', finished_ms = ?2 \
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now],
            )?;
            if ended == 1 {
                outbox::record_end(&tx, id, JobState::Cancelled, now, &self.webhooks)?;
            }
            tx.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND state = 'running'",
                params![id],
            )?;
            tx.commit()?;
            if ended == 1 {
                self.events_written();
            }
        }
        self.get(id)
    }
}

/// How a claim ends a job instead of running it: one asked to cancel, or
/// one whose workers died `max_attempts` times (a file that kills
/// whatever runs it must not be run for ever).
pub(super) fn end_at_claim(
    cancel: bool,
    state: &str,
    attempts: u32,
    max_attempts: u32,
) -> Option<(JobState, Option<String>)> {
    if cancel {
        Some((JobState::Cancelled, None))
    } else if state == "running" && attempts >= max_attempts {
        Some((
            JobState::Failed,
            Some(format!(
                "its worker stopped without a word {attempts} times (a crash, a kill)"
            )),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (Store, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        (Store::open(&dir.0.join("jobs.sqlite")).unwrap(), dir)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let n = std::sync::atomic::AtomicU64::new(0);
                let p = std::env::temp_dir().join(format!(
                    "studiocast-jobs-{}-{:?}-{}",
                    std::process::id(),
                    std::thread::current().id(),
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn job(id: &str, at: i64) -> JobRecord {
        JobRecord::new(
            id.into(),
            json!({"preset": "x"}),
            json!({"path": "a.wav"}),
            at,
        )
    }

    #[test]
    fn one_worker_per_job_and_a_dead_workers_job_is_taken_over() {
        let (s, _d) = store();
        s.insert(&job("a", 1)).unwrap();
        s.insert(&job("b", 2)).unwrap();
        let a = s.claim("w1", 10, 1000, 3).unwrap().unwrap();
        assert_eq!((a.id.as_str(), a.attempts), ("a", 1));
        // The next claim takes the other job, never the held one.
        assert_eq!(s.claim("w2", 20, 1000, 3).unwrap().unwrap().id, "b");
        assert_eq!(s.claim("w3", 30, 1000, 3).unwrap(), None);
        // w1 dies: after its lease, w3 takes "a" over, and w1 can no
        // longer move it.
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
        // Exactly once: a second finish changes nothing.
        assert!(!s
            .finish("a", "w3", 1015, JobState::Failed, Some("late"), None)
            .unwrap());
        let a = s.get("a").unwrap().unwrap();
        assert_eq!(a.state, JobState::Succeeded);
        assert_eq!(a.progress, 100.0);
        assert_eq!(a.result, Some(json!({"ok": 1})));
    }

    #[test]
    fn jobs_of_one_millisecond_run_in_submission_order() {
        let (s, _d) = store();
        // The ids are random: "zz" sorts last but was submitted first.
        for id in ["zz", "aa", "mm"] {
            s.insert(&job(id, 5)).unwrap();
        }
        let order: Vec<String> = (0..3)
            .map(|_| s.claim("w", 6, 1000, 3).unwrap().unwrap().id)
            .collect();
        assert_eq!(order, ["zz", "aa", "mm"]);
        let newest: Vec<String> = s
            .list(None, 10, 0)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(newest, ["mm", "aa", "zz"]);
    }

    #[test]
    fn a_job_that_kills_its_workers_fails_after_the_last_attempt() {
        let (s, _d) = store();
        s.insert(&job("poison", 1)).unwrap();
        // Three workers die running it, one after another's lease.
        let mut now = 10;
        for (n, w) in ["w1", "w2", "w3"].iter().enumerate() {
            let j = s.claim(w, now, 1000, 3).unwrap().unwrap();
            assert_eq!(j.attempts, n as u32 + 1);
            now += 1001;
        }
        // The next worker does not run it: it ends failed, saying why.
        assert_eq!(s.claim("w4", now, 1000, 3).unwrap(), None);
        let j = s.get("poison").unwrap().unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert!(j.error.unwrap().contains("3 times"));
        // A shutdown's requeue does not count as an attempt.
        s.insert(&job("calm", 2)).unwrap();
        let j = s.claim("w5", now, 1000, 3).unwrap().unwrap();
        assert!(s.requeue(&j.id, "w5", "shutdown").unwrap());
        let again = s.claim("w6", now, 1000, 3).unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), ("calm", 1));
    }

    #[test]
    fn cancel_retry_and_listing() {
        let (s, _d) = store();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            s.insert(&job(id, i as i64)).unwrap();
        }
        // A queued job is cancelled at once and never runs.
        assert_eq!(
            s.cancel("a", 5).unwrap().unwrap().state,
            JobState::Cancelled
        );
        let b = s.claim("w", 10, 1000, 3).unwrap().unwrap();
        assert_eq!(b.id, "b");
        // A running one is asked; its worker learns it.
        s.cancel("b", 11).unwrap();
        assert_eq!(
            s.heartbeat("b", "w", 12, 1000, 10.0, Some(3.0)).unwrap(),
            Lease::Held {
                cancel_requested: true
            }
        );
        // A transient failure waits for its backoff.
        let c = s.claim("w", 20, 1000, 3).unwrap().unwrap();
        assert!(s.retry(&c.id, "w", 100, "disk full").unwrap());
        assert_eq!(s.claim("w2", 99, 1000, 3).unwrap(), None);
        let again = s.claim("w2", 100, 1000, 3).unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), ("c", 2));
        assert_eq!(s.cancel("nope", 1).unwrap(), None);
        let all: Vec<String> = s
            .list(None, 10, 0)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(all, ["c", "b", "a"]);
        let page: Vec<String> = s
            .list(None, 1, 1)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(page, ["b"]);
        let cancelled = s.list(Some(JobState::Cancelled), 10, 0).unwrap();
        assert_eq!(cancelled.len(), 1);
        // A dead worker's job that was asked to cancel ends cancelled.
        assert_eq!(s.claim("w3", 5000, 1000, 3).unwrap(), None);
        assert_eq!(s.get("b").unwrap().unwrap().state, JobState::Cancelled);
    }
}
