//! `job` events for `GET /api/v1/events`: the queue is read once a second
//! and an event goes out when a job appears or changes state (a shared
//! queue's jobs run by other daemons included; progress alone is not an
//! event).
//!
//! Each read takes the newest jobs (a job submitted and finished between
//! two reads shows there), every queued and running job (one submitted long
//! ago that starts or ends now), and, one by one, each job last seen
//! queued or running that neither list holds any more (it ended and fell
//! out of both). Only jobs that can still change are remembered, plus the
//! ended ones the newest page holds, so the memory is bounded by the queue
//! depth, and an ended job is never announced twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use studiocast_server::{JobInfo, JobQuery, SessionControl};

use super::supervisor;

/// The newest jobs read each second.
const NEWEST: usize = 200;

fn ended(state: &str) -> bool {
    !matches!(state, "queued" | "running")
}

/// What has been announced: each remembered job's state.
#[derive(Debug, Default)]
pub struct JobWatch {
    known: HashMap<String, String>,
    baseline_taken: bool,
}

impl JobWatch {
    /// Jobs last seen queued or running that `read` does not hold: their
    /// end must be read one by one.
    pub fn missing<'a>(&'a self, read: &'a [JobInfo]) -> impl Iterator<Item = &'a String> + 'a {
        let ids: HashSet<&str> = read.iter().map(|j| j.id.as_str()).collect();
        self.known
            .iter()
            .filter(move |(id, s)| !ended(s) && !ids.contains(id.as_str()))
            .map(|(id, _)| id)
    }

    /// One read of the queue: the jobs that appeared or changed state
    /// since the last (none on the first, whose jobs are the baseline).
    pub fn observe(&mut self, read: Vec<JobInfo>) -> Vec<JobInfo> {
        let mut news = Vec::new();
        let mut seen = HashSet::new();
        for j in read {
            if !seen.insert(j.id.clone()) {
                continue;
            }
            if self.known.get(&j.id) != Some(&j.state) {
                self.known.insert(j.id.clone(), j.state.clone());
                if self.baseline_taken {
                    news.push(j);
                }
            }
        }
        // Forget the ended jobs this read no longer holds: they cannot
        // change, and will not come back into the newest page.
        self.known.retain(|id, s| !ended(s) || seen.contains(id));
        self.baseline_taken = true;
        news
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.known.len()
    }
}

fn query(state: Option<&str>, limit: usize) -> JobQuery {
    JobQuery {
        state: state.map(str::to_string),
        limit: Some(limit),
        offset: None,
    }
}

/// Read the queue once a second and announce changes on the event bus,
/// until the supervisor is gone.
pub async fn run(supervisor: supervisor::Supervisor) {
    let mut watch = JobWatch::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(jobs), Some(bus)) = (supervisor.jobs(), supervisor.events()) else {
            return;
        };
        let mut read = Vec::new();
        let mut failed = false;
        for q in [
            query(None, NEWEST),
            query(Some("running"), studiocast_server::MAX_PAGE),
            query(Some("queued"), studiocast_server::MAX_PAGE),
        ] {
            match jobs.list(q).await {
                Ok(l) => read.extend(l),
                Err(_) => failed = true,
            }
        }
        if failed {
            // A partial read would make every job it missed look ended.
            continue;
        }
        let gone: Vec<String> = watch.missing(&read).cloned().collect();
        for id in gone {
            if let Ok(j) = jobs.get(id).await {
                read.push(j);
            }
        }
        for j in watch.observe(read) {
            bus.send(
                "job",
                serde_json::json!({
                    "id": j.id, "state": j.state, "progress": j.progress,
                    "error": j.error, "outputs": j.outputs,
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: usize, state: &str) -> JobInfo {
        JobInfo {
            id: format!("j{id}"),
            state: state.into(),
            created: String::new(),
            started: None,
            finished: None,
            progress: 0.0,
            eta_seconds: None,
            error: None,
            attempts: 0,
            spec: serde_json::Value::Null,
            source: serde_json::Value::Null,
            loudness: None,
            outputs: None,
        }
    }

    fn ids(v: &[JobInfo]) -> Vec<String> {
        v.iter().map(|j| format!("{} {}", j.id, j.state)).collect()
    }

    /// A job queued long ago (no longer among the newest) that ends is
    /// announced; ended jobs leaving the newest page are not announced
    /// again, and are forgotten.
    #[test]
    fn an_old_job_that_ends_is_announced_once() {
        let mut w = JobWatch::default();
        // Baseline: j0 queued (old), 300 newer jobs ended.
        let mut read: Vec<JobInfo> = (1..=NEWEST).map(|i| job(i, "succeeded")).collect();
        read.push(job(0, "queued"));
        assert!(w.observe(read).is_empty());
        // j0 runs.
        let mut read: Vec<JobInfo> = (1..=NEWEST).map(|i| job(i, "succeeded")).collect();
        read.push(job(0, "running"));
        assert_eq!(ids(&w.observe(read)), ["j0 running"]);
        // 500 more jobs come and end; j0 ended meanwhile and is in no list:
        // the watch asks for it.
        let newest: Vec<JobInfo> = (1000..1000 + NEWEST).map(|i| job(i, "failed")).collect();
        assert_eq!(w.missing(&newest).collect::<Vec<_>>(), ["j0"]);
        let mut read = newest.clone();
        read.push(job(0, "succeeded"));
        let news = w.observe(read);
        assert_eq!(news.len(), NEWEST + 1);
        assert!(ids(&news).contains(&"j0 succeeded".to_string()));
        // Next read: the same page, nothing new; j0 and the old page are
        // forgotten (bounded memory), and never re-announced.
        assert!(w.observe(newest.clone()).is_empty());
        assert_eq!(w.remembered(), NEWEST);
        assert!(w.observe(newest).is_empty());
    }

    /// A job that appears in two of the reads is one job.
    #[test]
    fn a_job_in_two_lists_is_announced_once() {
        let mut w = JobWatch::default();
        assert!(w.observe(vec![]).is_empty());
        let news = w.observe(vec![job(1, "queued"), job(1, "queued")]);
        assert_eq!(ids(&news), ["j1 queued"]);
    }
}
