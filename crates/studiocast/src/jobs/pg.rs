//! The job queue on PostgreSQL, for several daemons (on several machines)
//! sharing one queue: the same operations as the SQLite store, with the
//! same lease rules, where a claim takes its row with
//! `SELECT … FOR UPDATE SKIP LOCKED` so that two workers never take one
//! job and never wait on each other.
//!
//! One connection per daemon, behind a mutex (the calls are short); a
//! broken connection is dropped and made again at the next call. Calls
//! block: they run on worker threads and in `spawn_blocking`, never on the
//! async runtime's threads (the client runs its own small runtime).

use std::sync::Mutex;

use postgres::{Client, NoTls, Row, Transaction};

use super::outbox::{Delivery, DeliveryState};
use super::store::{JobRecord, JobState, Lease, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    finished_ms BIGINT,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    eta_s DOUBLE PRECISION,
    error TEXT,
    result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    not_before_ms BIGINT NOT NULL,
    -- Submission order within one millisecond (the id is random).
    seq BIGSERIAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, not_before_ms, created_ms);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    lease_until_ms BIGINT,
    delivered_ms BIGINT,
    gave_up_ms BIGINT,
    last_error TEXT,
    PRIMARY KEY (event_id, url)
);
CREATE INDEX IF NOT EXISTS webhook_due ON webhook_deliveries (delivered_ms, gave_up_ms, next_ms);
";

const COLUMNS: &str = "id, state, spec, source, created_ms, started_ms, finished_ms, progress, \
    eta_s, error, result, attempts, cancel_requested, lease_owner, lease_until_ms, not_before_ms";

pub struct Pg {
    config: postgres::Config,
    client: Mutex<Option<Client>>,
}

/// The client owns a small tokio runtime, which panics if dropped inside
/// another runtime's task (the daemon drops its store there at shutdown):
/// it goes on a thread of its own.
impl Drop for Pg {
    fn drop(&mut self) {
        let client = self.client.get_mut().ok().and_then(Option::take);
        if let Some(c) = client {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(c));
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(e.to_string())
    }
}

fn record(row: &Row) -> Result<JobRecord, StoreError> {
    let spec: String = row.try_get(2)?;
    let source: String = row.try_get(3)?;
    let result: Option<String> = row.try_get(10)?;
    let state: String = row.try_get(1)?;
    let attempts: i32 = row.try_get(11)?;
    let cancel: i32 = row.try_get(12)?;
    Ok(JobRecord {
        id: row.try_get(0)?,
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        spec: serde_json::from_str(&spec)?,
        source: serde_json::from_str(&source)?,
        created_ms: row.try_get(4)?,
        started_ms: row.try_get(5)?,
        finished_ms: row.try_get(6)?,
        progress: row.try_get(7)?,
        eta_s: row.try_get(8)?,
        error: row.try_get(9)?,
        result: result.and_then(|t| serde_json::from_str(&t).ok()),
        attempts: attempts.max(0) as u32,
        cancel_requested: cancel != 0,
        lease_owner: row.try_get(13)?,
        lease_until_ms: row.try_get(14)?,
        not_before_ms: row.try_get(15)?,
    })
}

/// The end event of `job_id` for each URL, inside the ending transaction.
fn record_end(
    tx: &mut Transaction<'_>,
    job_id: &str,
    state: JobState,
    now: i64,
    urls: &[String],
) -> Result<(), StoreError> {
    if urls.is_empty() {
        return Ok(());
    }
    let event_id = super::outbox::new_event_id()?;
    let kind = format!("job.{}", state.as_str());
    for url in urls {
        tx.execute(
            "INSERT INTO webhook_deliveries (event_id, job_id, kind, url, created_ms, next_ms) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            &[&event_id, &job_id, &kind, url, &now],
        )?;
    }
    Ok(())
}

impl Pg {
    /// Connects and makes the tables (once, whoever comes first).
    pub fn open(url: &str) -> Result<Pg, StoreError> {
        let mut config: postgres::Config = url.parse()?;
        // A server that does not answer must not hold the queue's one
        // connection (and every worker behind its lock) for minutes, and
        // a vanished one must be noticed.
        config
            .connect_timeout(std::time::Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(30))
            .options("-c statement_timeout=10000");
        let pg = Pg {
            config,
            client: Mutex::new(None),
        };
        pg.with(|c| {
            let mut tx = c.transaction()?;
            // Two daemons starting at once would race on CREATE … IF NOT
            // EXISTS (a unique violation in the catalogue).
            tx.execute("SELECT pg_advisory_xact_lock(727427001)", &[])?;
            tx.batch_execute(SCHEMA)?;
            // A queue made before `seq` gets it once, its rows numbered in
            // their stored order. Asked first: ALTER TABLE locks the whole
            // table, even when IF NOT EXISTS finds the column there.
            let has_seq = tx.query_opt(
                "SELECT 1 FROM information_schema.columns \
                 WHERE table_name = 'jobs' AND column_name = 'seq' \
                 AND table_schema = current_schema()",
                &[],
            )?;
            if has_seq.is_none() {
                tx.batch_execute("ALTER TABLE jobs ADD COLUMN seq BIGSERIAL")?;
            }
            tx.commit()?;
            Ok(())
        })?;
        Ok(pg)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.client.lock().map_err(|_| StoreError::Poisoned)?;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(self.config.connect(NoTls)?);
        }
        let client = guard.as_mut().ok_or(StoreError::Poisoned)?;
        let out = f(client);
        if client.is_closed() {
            *guard = None;
        }
        out
    }

    pub fn insert(&self, j: &JobRecord) -> Result<(), StoreError> {
        let spec = serde_json::to_string(&j.spec)?;
        let source = serde_json::to_string(&j.source)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO jobs (id, state, spec, source, created_ms, not_before_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &j.id,
                    &j.state.as_str(),
                    &spec,
                    &source,
                    &j.created_ms,
                    &j.not_before_ms,
                ],
            )?;
            Ok(())
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.with(|c| {
            let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
            c.query_opt(&sql, &[&id])?.as_ref().map(record).transpose()
        })
    }

    pub fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let state = state.map(JobState::as_str);
        let (limit, offset) = (limit as i64, offset as i64);
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM jobs WHERE ($1::TEXT IS NULL OR state = $1) \
                 ORDER BY created_ms DESC, seq DESC LIMIT $2 OFFSET $3"
            );
            c.query(&sql, &[&state, &limit, &offset])?
                .iter()
                .map(record)
                .collect()
        })
    }

    /// See [`super::store::Store::claim`]; true in `.1` when an event was
    /// written (the job ended at the claim).
    pub fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        max_attempts: u32,
        urls: &[String],
    ) -> Result<(Option<JobRecord>, bool), StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let found = tx.query_opt(
                "SELECT id, cancel_requested, state, attempts FROM jobs \
                 WHERE (state = 'queued' AND not_before_ms <= $1) \
                    OR (state = 'running' AND lease_until_ms < $1) \
                 ORDER BY created_ms, seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[&now],
            )?;
            let Some(row) = found else {
                return Ok((None, false));
            };
            let id: String = row.try_get(0)?;
            let cancel: i32 = row.try_get(1)?;
            let state: String = row.try_get(2)?;
            let attempts: i32 = row.try_get(3)?;
            let ended = super::store::end_at_claim(
                cancel != 0,
                &state,
                attempts.max(0) as u32,
                max_attempts,
            );
            if let Some((end, error)) = ended {
                tx.execute(
                    "UPDATE jobs SET state = $2, finished_ms = $3, error = COALESCE($4, error), \
                     lease_owner = NULL, lease_until_ms = NULL WHERE id = $1",
                    &[&id, &end.as_str(), &now, &error],
                )?;
                record_end(&mut tx, &id, end, now, urls)?;
                tx.commit()?;
                return Ok((None, !urls.is_empty()));
            }
            tx.execute(
                "UPDATE jobs SET state = 'running', lease_owner = $2, lease_until_ms = $3, \
                 attempts = attempts + 1, started_ms = COALESCE(started_ms, $4), progress = 0, \
                 eta_s = NULL WHERE id = $1",
                &[&id, &owner, &(now + lease_ms), &now],
            )?;
            let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
            let job = record(&tx.query_one(&sql, &[&id])?)?;
            tx.commit()?;
            Ok((Some(job), false))
        })
    }

    pub fn heartbeat(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
        progress: f64,
        eta_s: Option<f64>,
    ) -> Result<Lease, StoreError> {
        self.with(|c| {
            let row = c.query_opt(
                "UPDATE jobs SET lease_until_ms = $3, progress = $4, eta_s = $5 \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running' \
                 RETURNING cancel_requested",
                &[&id, &owner, &(now + lease_ms), &progress, &eta_s],
            )?;
            Ok(match row {
                None => Lease::Lost,
                Some(r) => Lease::Held {
                    cancel_requested: r.try_get::<_, i32>(0)? != 0,
                },
            })
        })
    }

    #[allow(clippy::too_many_arguments)] // the store's own signature, plus the URLs
    pub fn finish(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        state: JobState,
        error: Option<&str>,
        result: Option<&str>,
        progress: f64,
        urls: &[String],
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE jobs SET state = $3, finished_ms = $4, error = $5, result = $6, \
                 progress = CASE WHEN $7::FLOAT8 >= 0 THEN $7::FLOAT8 ELSE progress END, eta_s = NULL, \
                 lease_owner = NULL, lease_until_ms = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &state.as_str(), &now, &error, &result, &progress],
            )?;
            if n == 1 {
                record_end(&mut tx, id, state, now, urls)?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    pub fn retry(
        &self,
        id: &str,
        owner: &str,
        not_before: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE jobs SET state = 'queued', not_before_ms = $3, error = $4, progress = 0, \
                 eta_s = NULL, lease_owner = NULL, lease_until_ms = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &not_before, &error],
            )?;
            Ok(n == 1)
        })
    }

    pub fn requeue(&self, id: &str, owner: &str, why: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE jobs SET state = 'queued', error = $3, progress = 0, eta_s = NULL, \
                 attempts = GREATEST(attempts - 1, 0), lease_owner = NULL, lease_until_ms = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &why],
            )?;
            Ok(n == 1)
        })
    }

    /// True when the cancel ended a queued job (an event was written).
    pub fn cancel(&self, id: &str, now: i64, urls: &[String]) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let ended = tx.execute(
                "UPDATE jobs SET state = 'cancelled', finished_ms = $2 \
                 WHERE id = $1 AND state = 'queued'",
                &[&id, &now],
            )?;
            if ended == 1 {
                record_end(&mut tx, id, JobState::Cancelled, now, urls)?;
            }
            tx.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'",
                &[&id],
            )?;
            tx.commit()?;
            Ok(ended == 1)
        })
    }

    pub fn take_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let rows = tx.query(
                "SELECT event_id, job_id, kind, url, created_ms, attempts FROM webhook_deliveries \
                 WHERE delivered_ms IS NULL AND gave_up_ms IS NULL AND next_ms <= $1 \
                   AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
                 ORDER BY next_ms, created_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&now, &(limit as i64)],
            )?;
            let mut due = Vec::with_capacity(rows.len());
            for r in &rows {
                let attempts: i32 = r.try_get(5)?;
                due.push(Delivery {
                    event_id: r.try_get(0)?,
                    job_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    url: r.try_get(3)?,
                    created_ms: r.try_get(4)?,
                    attempts: attempts.max(0) as u32,
                });
            }
            for d in &due {
                tx.execute(
                    "UPDATE webhook_deliveries SET lease_until_ms = $3 WHERE event_id = $1 AND url = $2",
                    &[&d.event_id, &d.url, &(now + lease_ms)],
                )?;
            }
            tx.commit()?;
            Ok(due)
        })
    }

    pub fn delivered(&self, d: &Delivery, now: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE webhook_deliveries SET delivered_ms = $3, lease_until_ms = NULL, \
                 attempts = attempts + 1 WHERE event_id = $1 AND url = $2",
                &[&d.event_id, &d.url, &now],
            )?;
            Ok(())
        })
    }

    pub fn delivery_failed(
        &self,
        d: &Delivery,
        failed: u32,
        next: i64,
        gave_up: Option<i64>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE webhook_deliveries SET attempts = $3, next_ms = $4, gave_up_ms = $5, \
                 last_error = $6, lease_until_ms = NULL WHERE event_id = $1 AND url = $2",
                &[
                    &d.event_id,
                    &d.url,
                    &(failed as i32),
                    &next,
                    &gave_up,
                    &error,
                ],
            )?;
            Ok(())
        })
    }

    pub fn next_delivery_ms(&self) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            let row = c.query_one(
                "SELECT MIN(GREATEST(next_ms, COALESCE(lease_until_ms + 1, 0))) \
                 FROM webhook_deliveries WHERE delivered_ms IS NULL AND gave_up_ms IS NULL",
                &[],
            )?;
            Ok(row.try_get(0)?)
        })
    }

    pub fn deliveries_of(&self, job_id: &str) -> Result<Vec<DeliveryState>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT event_id, kind, url, attempts, delivered_ms, gave_up_ms, last_error \
                 FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_ms, url",
                &[&job_id],
            )?;
            rows.iter()
                .map(|r| {
                    let attempts: i32 = r.try_get(3)?;
                    Ok(DeliveryState {
                        event_id: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        url: r.try_get(2)?,
                        attempts: attempts.max(0) as u32,
                        delivered_ms: r.try_get(4)?,
                        gave_up_ms: r.try_get(5)?,
                        last_error: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }
}
