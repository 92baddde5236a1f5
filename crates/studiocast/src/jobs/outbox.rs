//! The webhook outbox: when a job ends, one delivery per configured URL is
//! written in the same transaction as the job's end, so an event is never
//! lost between "the job ended" and "someone was told" (a crash, a
//! restart). The deliverer ([`super::webhooks`]) takes due deliveries
//! under a lease (two daemons on one queue do not both send one), and
//! retries with exponential backoff for up to a day.
//!
//! Delivery is at least once: a daemon that dies after the receiver
//! answered but before it recorded the answer sends again after the lease.
//! The event id lets the receiver drop the duplicate.

use rusqlite::{params, Connection, OptionalExtension};

use super::store::{JobState, Store, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    lease_until_ms INTEGER,
    delivered_ms INTEGER,
    gave_up_ms INTEGER,
    last_error TEXT,
    PRIMARY KEY (event_id, url)
);
CREATE INDEX IF NOT EXISTS webhook_due ON webhook_deliveries (delivered_ms, gave_up_ms, next_ms);
";

/// A receiver that has not answered 2xx for this long is given up on.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;

/// The wait before attempt `failed + 1`, after `failed` failures: 1 s,
/// 2 s, 4 s … doubling up to an hour (about 30 attempts in a day).
pub fn retry_delay_ms(failed: u32) -> i64 {
    let exp = failed.saturating_sub(1).min(12);
    (1000_i64 << exp).min(3_600_000)
}

/// One event for one URL, taken for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub event_id: String,
    pub job_id: String,
    /// `job.succeeded`, `job.failed` or `job.cancelled`.
    pub kind: String,
    pub url: String,
    pub created_ms: i64,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    At(i64),
    GaveUp,
}

/// Writes the end event of `job_id` for each URL; called inside the
/// transaction that ends the job.
pub(super) fn record_end(
    db: &Connection,
    job_id: &str,
    state: JobState,
    now: i64,
    urls: &[String],
) -> Result<(), StoreError> {
    if urls.is_empty() {
        return Ok(());
    }
    let event_id = new_event_id()?;
    let kind = format!("job.{}", state.as_str());
    for url in urls {
        db.execute(
            "INSERT INTO webhook_deliveries (event_id, job_id, kind, url, created_ms, next_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![event_id, job_id, kind, url, now],
        )?;
    }
    Ok(())
}

pub(super) fn new_event_id() -> Result<String, StoreError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(format!(
        "evt-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

impl Store {
    /// Up to `limit` deliveries due at `now`, leased to the caller until
    /// `now + lease_ms` (an attempt must end before then).
    pub fn take_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.take_deliveries(now, lease_ms, limit);
        }
        let mut db = self.db()?;
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let due: Vec<Delivery> = {
            let mut stmt = tx.prepare(
                "SELECT event_id, job_id, kind, url, created_ms, attempts FROM webhook_deliveries \
                 WHERE delivered_ms IS NULL AND gave_up_ms IS NULL AND next_ms <= ?1 \
                   AND (lease_until_ms IS NULL OR lease_until_ms < ?1) \
                 ORDER BY next_ms, created_ms LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], |r| {
                Ok(Delivery {
                    event_id: r.get(0)?,
                    job_id: r.get(1)?,
                    kind: r.get(2)?,
                    url: r.get(3)?,
                    created_ms: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        for d in &due {
            tx.execute(
                "UPDATE webhook_deliveries SET lease_until_ms = ?3 WHERE event_id = ?1 AND url = ?2",
                params![d.event_id, d.url, now + lease_ms],
            )?;
        }
        tx.commit()?;
        Ok(due)
    }

    /// The receiver answered 2xx.
    pub fn delivered(&self, d: &Delivery, now: i64) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.delivered(d, now);
        }
        self.db()?.execute(
            "UPDATE webhook_deliveries SET delivered_ms = ?3, lease_until_ms = NULL, \
             attempts = attempts + 1 WHERE event_id = ?1 AND url = ?2",
            params![d.event_id, d.url, now],
        )?;
        Ok(())
    }

    /// An attempt failed: schedule the next, or give up after a day.
    pub fn delivery_failed(
        &self,
        d: &Delivery,
        now: i64,
        error: &str,
    ) -> Result<Retry, StoreError> {
        let failed = d.attempts + 1;
        let next = now + retry_delay_ms(failed);
        let outcome = if next - d.created_ms > GIVE_UP_AFTER_MS {
            Retry::GaveUp
        } else {
            Retry::At(next)
        };
        let gave_up = (outcome == Retry::GaveUp).then_some(now);
        if let Some(pg) = self.pg() {
            pg.delivery_failed(d, failed, next, gave_up, error)?;
            return Ok(outcome);
        }
        self.db()?.execute(
            "UPDATE webhook_deliveries SET attempts = ?3, next_ms = ?4, gave_up_ms = ?5, \
             last_error = ?6, lease_until_ms = NULL WHERE event_id = ?1 AND url = ?2",
            params![d.event_id, d.url, failed, next, gave_up, error],
        )?;
        Ok(outcome)
    }

    /// When the next pending delivery is due (or its lease ends).
    pub fn next_delivery_ms(&self) -> Result<Option<i64>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.next_delivery_ms();
        }
        let next: Option<i64> = self
            .db()?
            .query_row(
                "SELECT MIN(MAX(next_ms, COALESCE(lease_until_ms + 1, 0))) FROM webhook_deliveries \
                 WHERE delivered_ms IS NULL AND gave_up_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(next)
    }

    /// Every delivery of a job's events, for the API and the tests:
    /// (event id, url, attempts, delivered, gave up, last error).
    pub fn deliveries_of(&self, job_id: &str) -> Result<Vec<DeliveryState>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.deliveries_of(job_id);
        }
        let db = self.db()?;
        let mut stmt = db.prepare(
            "SELECT event_id, kind, url, attempts, delivered_ms, gave_up_ms, last_error \
             FROM webhook_deliveries WHERE job_id = ?1 ORDER BY created_ms, url",
        )?;
        let rows = stmt.query_map(params![job_id], |r| {
            Ok(DeliveryState {
                event_id: r.get(0)?,
                kind: r.get(1)?,
                url: r.get(2)?,
                attempts: r.get(3)?,
                delivered_ms: r.get(4)?,
                gave_up_ms: r.get(5)?,
                last_error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryState {
    pub event_id: String,
    pub kind: String,
    pub url: String,
    pub attempts: u32,
    pub delivered_ms: Option<i64>,
    pub gave_up_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::JobRecord;
    use serde_json::json;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let p =
            std::env::temp_dir().join(format!("studiocast-outbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    const URLS: [&str; 2] = ["http://a.example/hook", "http://b.example/hook"];

    fn open(d: &Dir) -> Store {
        Store::open(&d.0.join("jobs.sqlite"))
            .unwrap()
            .with_webhooks(URLS.iter().map(|u| u.to_string()).collect())
    }

    fn job(id: &str) -> JobRecord {
        JobRecord::new(id.into(), json!({}), json!({"path": "a.wav"}), 0)
    }

    #[test]
    fn the_schedule_doubles_to_an_hour() {
        let d: Vec<i64> = (1..=4).map(retry_delay_ms).collect();
        assert_eq!(d, [1000, 2000, 4000, 8000]);
        assert_eq!(retry_delay_ms(13), 3_600_000);
        assert_eq!(retry_delay_ms(40), 3_600_000);
    }

    #[test]
    fn a_job_end_is_one_event_per_url_leased_retried_and_kept_across_a_restart() {
        let d = dir("restart");
        let s = open(&d);
        s.insert(&job("j")).unwrap();
        s.claim("w", 10, 1000, 3).unwrap().unwrap();
        // Nothing to tell before the job ends.
        assert!(s.take_deliveries(20, 60_000, 10).unwrap().is_empty());
        assert!(s
            .finish("j", "w", 100, JobState::Succeeded, None, None)
            .unwrap());
        let due = s.take_deliveries(100, 60_000, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].event_id, due[1].event_id, "one event, two URLs");
        assert_eq!(due[0].kind, "job.succeeded");
        // Leased: a second deliverer (another daemon) does not take them.
        assert!(s.take_deliveries(101, 60_000, 10).unwrap().is_empty());
        s.delivered(&due[0], 150).unwrap();
        assert_eq!(
            s.delivery_failed(&due[1], 150, "HTTP 500").unwrap(),
            Retry::At(1150)
        );
        assert!(s.take_deliveries(1149, 60_000, 10).unwrap().is_empty());
        // A restart: the pending delivery is still there, the sent one is not.
        drop(s);
        let s = open(&d);
        assert_eq!(s.next_delivery_ms().unwrap(), Some(1150));
        let again = s.take_deliveries(1150, 60_000, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].url.as_str(), again[0].attempts), (URLS[1], 1));
        // A deliverer that dies mid-attempt: its lease runs out and the
        // delivery comes back (at least once).
        assert!(s
            .take_deliveries(1150 + 60_000, 60_000, 10)
            .unwrap()
            .is_empty());
        assert_eq!(
            s.take_deliveries(1151 + 60_000, 60_000, 10).unwrap().len(),
            1
        );
        let states = s.deliveries_of("j").unwrap();
        assert!(states[0].delivered_ms.is_some());
        assert_eq!(states[1].last_error.as_deref(), Some("HTTP 500"));
    }

    #[test]
    fn a_receiver_down_for_a_day_is_given_up_on() {
        let d = dir("giveup");
        let s = open(&d).with_webhooks(vec![URLS[0].into()]);
        s.insert(&job("j")).unwrap();
        s.claim("w", 0, 1000, 3).unwrap().unwrap();
        s.finish("j", "w", 0, JobState::Failed, Some("bad"), None)
            .unwrap();
        let mut now = 0;
        let mut attempts = 0;
        loop {
            let due = s.take_deliveries(now, 60_000, 10).unwrap();
            assert_eq!(due.len(), 1, "due at {now}");
            assert_eq!(due[0].kind, "job.failed");
            attempts += 1;
            match s.delivery_failed(&due[0], now, "refused").unwrap() {
                Retry::At(t) => now = t,
                Retry::GaveUp => break,
            }
        }
        assert!(now <= GIVE_UP_AFTER_MS && now > GIVE_UP_AFTER_MS - 3_600_000);
        assert!((25..=40).contains(&attempts), "{attempts} attempts");
        assert!(s
            .take_deliveries(i64::MAX / 2, 60_000, 10)
            .unwrap()
            .is_empty());
        assert_eq!(s.next_delivery_ms().unwrap(), None);
    }

    #[test]
    fn cancels_and_takeover_ends_are_events_too_and_no_urls_no_events() {
        let d = dir("kinds");
        let s = open(&d);
        s.insert(&job("q")).unwrap();
        s.cancel("q", 5).unwrap();
        assert_eq!(s.deliveries_of("q").unwrap()[0].kind, "job.cancelled");
        // A running job asked to cancel whose worker died ends at takeover.
        s.insert(&job("r")).unwrap();
        s.claim("w", 10, 1000, 3).unwrap().unwrap();
        s.cancel("r", 11).unwrap();
        assert!(s.deliveries_of("r").unwrap().is_empty(), "not ended yet");
        assert_eq!(s.claim("w2", 2000, 1000, 3).unwrap(), None);
        assert_eq!(s.deliveries_of("r").unwrap().len(), 2);
        let quiet = Store::open(&d.0.join("quiet.sqlite")).unwrap();
        quiet.insert(&job("x")).unwrap();
        quiet.cancel("x", 1).unwrap();
        assert!(quiet.deliveries_of("x").unwrap().is_empty());
    }
}
