//! The worker pool: each worker claims a job (a lease in the store),
//! runs its transcode at a lower CPU priority than live sessions, renews
//! the lease while it runs (and learns of a cancel through it), and ends
//! the job exactly once.
//!
//! Restart safety comes from the lease: a job whose worker died (a crash,
//! `kill -9`, a restart) is taken again once its lease runs out, by this
//! daemon after its restart or by another sharing the store. Its partial
//! output is in a hidden folder of the dead process and never visible; a
//! job whose lesson was already renamed into place before the crash is
//! finished from that lesson, not transcoded twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::store::{JobRecord, JobState, Lease, Store};
use super::{now_ms, Jobs};
use crate::config::Config;
use crate::transcode::TranscodeError;

/// A running job's shared state: its child's last progress, and the flag
/// that stops it (a cancel, a lost lease).
#[derive(Clone, Default)]
pub struct JobProgress {
    pub cancel: Arc<AtomicBool>,
    /// Percent done (0–100) and seconds left, as last reported.
    pub state: Arc<Mutex<(f64, Option<f64>)>>,
}

/// How long a claim holds a job without a heartbeat.
pub const LEASE_MS: i64 = 10_000;
/// Heartbeats (and cancel checks) this often: a cancel stops a running job
/// within about this long.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How often an idle first worker sweeps uploads left by ended jobs.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Nice value of a job's transcode process (every thread in it inherits
/// it, GStreamer's pooled ones included): live sessions come first.
const JOB_NICE: i32 = 10;
/// Runs of one job at most before it fails for good (a retried output
/// failure, or a worker that died running it).
const MAX_ATTEMPTS: u32 = 3;

/// Wakes idle workers when a job is queued (they also look every second).
#[derive(Clone, Default)]
pub struct Wake(Arc<(Mutex<u64>, Condvar)>);

impl Wake {
    pub fn notify(&self) {
        if let Ok(mut n) = self.0 .0.lock() {
            *n += 1;
        }
        self.0 .1.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        if let Ok(g) = self.0 .0.lock() {
            let seen = *g;
            let _ = self.0 .1.wait_timeout_while(g, timeout, |n| *n == seen);
        }
    }
}

pub struct Runner {
    stop: Arc<AtomicBool>,
    wake: Wake,
    workers: Vec<JoinHandle<()>>,
    /// Tasks beside the workers (the webhook deliverer).
    also: Vec<tokio_util::sync::CancellationToken>,
}

impl Runner {
    pub fn start(
        store: Arc<Store>,
        jobs: Arc<Jobs>,
        cfg: Config,
        workers: usize,
        wake: Wake,
    ) -> std::io::Result<Runner> {
        let stop = Arc::new(AtomicBool::new(false));
        // Leases name their holder: host, process, worker.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let mut handles = Vec::new();
        for n in 0..workers {
            let owner = format!("{host}:{}:{n}", std::process::id());
            let w = Worker {
                store: store.clone(),
                jobs: jobs.clone(),
                cfg: cfg.clone(),
                owner,
                stop: stop.clone(),
                wake: wake.clone(),
                first: n == 0,
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("job-worker-{n}"))
                    .spawn(move || w.run())?,
            );
        }
        Ok(Runner {
            stop,
            wake,
            workers: handles,
            also: Vec::new(),
        })
    }

    /// `token` is cancelled at shutdown too.
    pub fn with_stop_also(mut self, token: tokio_util::sync::CancellationToken) -> Runner {
        self.also.push(token);
        self
    }

    /// Stop taking jobs and cancel the running ones (their leases lapse
    /// and they run again after a restart).
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify();
        for t in &self.also {
            t.cancel();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

struct Worker {
    store: Arc<Store>,
    jobs: Arc<Jobs>,
    cfg: Config,
    owner: String,
    stop: Arc<AtomicBool>,
    wake: Wake,
    /// Worker 0 also does the pool's housekeeping.
    first: bool,
}

impl Worker {
    fn run(self) {
        let mut short = false;
        let mut last_sweep = std::time::Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            // Below the recording threshold, jobs wait: the disk is the
            // live sessions' first.
            if let Err(e) = self.jobs.room_mb() {
                if !short {
                    tracing::warn!(error = ?e, "jobs wait for disk space");
                }
                short = true;
                self.wake.wait(Duration::from_secs(5));
                continue;
            }
            short = false;
            match self
                .store
                .claim(&self.owner, now_ms(), LEASE_MS, MAX_ATTEMPTS)
            {
                Ok(Some(job)) => {
                    let span = tracing::info_span!("job", id = %job.id, attempt = job.attempts);
                    span.in_scope(|| self.run_job(job));
                }
                Ok(None) => {
                    // Jobs that end inside a claim (a cancel or a poison
                    // job at takeover) leave their upload: the first
                    // worker sweeps now and then while idle.
                    if self.first && last_sweep.elapsed() > SWEEP_EVERY {
                        self.jobs.sweep_uploads();
                        last_sweep = std::time::Instant::now();
                    }
                    self.wake.wait(Duration::from_secs(1))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim a job");
                    self.wake.wait(Duration::from_secs(1));
                }
            }
        }
    }

    fn run_job(&self, job: JobRecord) {
        tracing::info!("job started");
        let progress = JobProgress::default();
        let done = Arc::new(AtomicBool::new(false));
        let beat = self.heartbeat(&job.id, progress.clone(), done.clone());
        // The transcode runs in a child process; a panic here (reading its
        // report) must still end the job rather than leave the heartbeat
        // renewing a lease nobody works on.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.transcode(&job, progress)
        }))
        .unwrap_or_else(|_| {
            Err(TranscodeError::Output(anyhow::anyhow!(
                "the job worker panicked"
            )))
        });
        done.store(true, Ordering::SeqCst);
        let lost = beat.join().unwrap_or(true);
        if lost {
            // Another worker has it (our lease lapsed): its outcome counts.
            tracing::warn!("lease lost: leaving the job to its new worker");
            return;
        }
        let now = now_ms();
        let ended = match outcome {
            Ok(result) => {
                tracing::info!("job succeeded");
                self.store.finish(
                    &job.id,
                    &self.owner,
                    now,
                    JobState::Succeeded,
                    None,
                    Some(&result),
                )
            }
            Err(TranscodeError::Cancelled) if self.stop.load(Ordering::SeqCst) => {
                // The daemon is stopping, nobody cancelled: the job runs
                // again after the restart (or on another worker now).
                tracing::info!("job interrupted by the shutdown; queued again");
                self.store
                    .requeue(&job.id, &self.owner, "interrupted by a shutdown")
            }
            Err(TranscodeError::Cancelled) => {
                tracing::info!("job cancelled");
                self.store
                    .finish(&job.id, &self.owner, now, JobState::Cancelled, None, None)
            }
            Err(TranscodeError::Output(e)) if job.attempts < MAX_ATTEMPTS => {
                // A full disk, a failed encoder: try again later.
                let backoff = 2_000i64 << job.attempts.min(10);
                let why = format!("{e:#}");
                tracing::warn!(error = %why, backoff_ms = backoff, "job failed; will retry");
                self.store.retry(&job.id, &self.owner, now + backoff, &why)
            }
            Err(e) => {
                let why = e.to_string();
                tracing::warn!(error = %why, "job failed");
                self.store.finish(
                    &job.id,
                    &self.owner,
                    now,
                    JobState::Failed,
                    Some(&why),
                    None,
                )
            }
        };
        if let Err(e) = ended {
            tracing::error!(error = %e, "cannot record the job's end");
        }
        if let Ok(Some(now)) = self.store.get(&job.id) {
            self.jobs.release_upload(&now);
        }
        // A job that made no lesson leaves no folder (the lesson's own
        // partial folder is already gone); fails if anything is inside.
        let _ = std::fs::remove_dir(self.jobs.job_dir(&job.id));
    }

    /// The transcode, or the lesson an earlier run already published.
    fn transcode(
        &self,
        job: &JobRecord,
        progress: JobProgress,
    ) -> Result<serde_json::Value, TranscodeError> {
        let args = self
            .jobs
            .transcode_args(job)
            .map_err(|e| TranscodeError::Input(anyhow::anyhow!("{e}")))?;
        let report_file = args.out.join("loudness.json");
        if !args.out.exists() {
            child::run(&self.cfg, &args, &progress, &self.stop)?;
        }
        // Renamed into place (now, or by a run that died before recording
        // the end: the rename is atomic, the lesson whole).
        let text = std::fs::read(&report_file)
            .map_err(|e| TranscodeError::Output(anyhow::anyhow!("{e}")))?;
        serde_json::from_slice(&text).map_err(|e| TranscodeError::Output(anyhow::anyhow!("{e}")))
    }

    /// Renews the lease until `done`; sets the cancel flag when a cancel is
    /// asked or the lease is lost. Joins to whether the lease was lost.
    fn heartbeat(
        &self,
        id: &str,
        progress: JobProgress,
        done: Arc<AtomicBool>,
    ) -> JoinHandle<bool> {
        let (store, id, owner) = (self.store.clone(), id.to_string(), self.owner.clone());
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            let mut lost = false;
            let mut renewed = now_ms();
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(HEARTBEAT);
                let (pct, eta) = progress.state.lock().map(|s| *s).unwrap_or((0.0, None));
                match store.heartbeat(&id, &owner, now_ms(), LEASE_MS, pct, eta) {
                    Ok(Lease::Held { cancel_requested }) => {
                        renewed = now_ms();
                        if cancel_requested || stop.load(Ordering::SeqCst) {
                            progress.cancel.store(true, Ordering::SeqCst);
                        }
                    }
                    Ok(Lease::Lost) => {
                        lost = true;
                        progress.cancel.store(true, Ordering::SeqCst);
                    }
                    // The store is busy or failing: the lease has slack,
                    // until it may have run out; then another worker may
                    // hold the job, and this one stops (as if lost).
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat failed");
                        if now_ms() - renewed > LEASE_MS - 2 * HEARTBEAT.as_millis() as i64 {
                            tracing::error!(
                                "no heartbeat for the lease's length: giving the job up"
                            );
                            lost = true;
                            progress.cancel.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
            lost
        })
    }
}

/// A transcode as a child process (`studiocast transcode --progress-json`)
/// at nice 10: every thread it has, GStreamer's pooled ones included,
/// runs below live sessions, and a crash in a codec on a hostile file
/// takes the job down, not the daemon.
mod child {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use clap::ValueEnum;

    use super::{JobProgress, JOB_NICE};
    use crate::config::Config;
    use crate::transcode::{TranscodeArgs, TranscodeError};

    /// A transcode that reports nothing for this long is stuck: killed.
    const STALL: Duration = Duration::from_secs(120);

    fn command(cfg: &Config, a: &TranscodeArgs) -> Command {
        let exe = std::env::current_exe().unwrap_or_else(|_| "studiocast".into());
        let sp = &a.spatial;
        let mut c = Command::new(exe);
        c.arg("transcode")
            .arg(&a.input)
            .arg("--out")
            .arg(&a.out)
            .args(["--preset", &a.preset])
            .args(
                a.visibility
                    .and_then(|v| v.to_possible_value())
                    .map(|v| format!("--visibility={}", v.get_name())),
            )
            .arg("--pipelines")
            .arg(a.pipelines.as_ref().unwrap_or(&cfg.server.pipelines_dir))
            .arg(format!("--loudness={}", a.loudness))
            .arg(format!("--true-peak={}", a.true_peak))
            .arg("--order")
            .arg(sp.order.to_string())
            .arg("--hrtf")
            .arg(sp.hrtf.as_ref().unwrap_or(&cfg.spatial.hrtf))
            .args([
                "--method",
                sp.method.as_ref().unwrap_or(&cfg.spatial.method),
            ])
            .arg("--block")
            .arg(sp.block.unwrap_or(cfg.spatial.block).to_string())
            .arg("--progress-json");
        if let Some(v) = sp.input_format.to_possible_value() {
            c.args(["--input-format", v.get_name()]);
        }
        if let Some(l) = &sp.layout {
            c.args(["--layout", l]);
        }
        if let Some(s) = &sp.scene {
            c.arg("--scene").arg(s);
        }
        if sp.max_re || cfg.spatial.max_re {
            c.arg("--max-re");
        }
        if let Some(eq) = sp
            .headphone_eq
            .as_ref()
            .or(cfg.spatial.headphone_eq.as_ref())
        {
            c.arg("--headphone-eq").arg(eq);
        }
        c.env("STUDIOCAST_LOG", "warn,sofar=error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setpriority, setsid and prctl are plain system calls in
        // the forked child (no allocation, no lock).
        unsafe {
            c.pre_exec(|| {
                rustix::process::setpriority_process(None, JOB_NICE)
                    .map_err(std::io::Error::from)?;
                // Its own session: a Ctrl-C at the daemon's terminal reaches
                // the daemon, which requeues the job and stops the child,
                // instead of killing the child first (a wasted attempt).
                rustix::process::setsid().map_err(std::io::Error::from)?;
                // Dies with the daemon (a kill -9): otherwise it would go
                // on writing while another daemon takes the job over.
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        c
    }

    /// Run the transcode to its end, a cancel, a stall or a shutdown.
    pub(super) fn run(
        cfg: &Config,
        a: &TranscodeArgs,
        progress: &JobProgress,
        stop: &AtomicBool,
    ) -> Result<(), TranscodeError> {
        let out = |e: std::io::Error| TranscodeError::Output(e.into());
        let mut child = command(cfg, a).spawn().map_err(out)?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| out(std::io::ErrorKind::Other.into()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| out(std::io::ErrorKind::Other.into()))?;
        let state = progress.state.clone();
        let last = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
        let seen = last.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let (Some(p), Ok(mut s)) = (v["progress"].as_f64(), state.lock()) {
                    *s = (p, v["eta"].as_f64());
                }
                if let Ok(mut t) = seen.lock() {
                    *t = Instant::now();
                }
            }
        });
        // Its last words: the error line, on failure.
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let ended = loop {
            if let Some(status) = child.try_wait().map_err(out)? {
                break Some(status);
            }
            let stalled = last.lock().map(|t| t.elapsed() > STALL).unwrap_or(false);
            if progress.cancel.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) || stalled {
                let _ = child.kill();
                let _ = child.wait();
                if stalled {
                    tracing::warn!(pid, "transcode made no progress for 120 s: killed");
                }
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = reader.join();
        let text = errors.join().unwrap_or_default();
        // Its partial folder, whatever happened (a success renamed it).
        remove_partial(a, pid);
        let Some(status) = ended else {
            return Err(
                if last.lock().map(|t| t.elapsed() > STALL).unwrap_or(false) {
                    TranscodeError::Output(anyhow::anyhow!("the transcode stalled"))
                } else {
                    TranscodeError::Cancelled
                },
            );
        };
        let why = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("studiocast: error: "))
            .unwrap_or("")
            .to_string();
        match status.code() {
            Some(0) => Ok(()),
            Some(2) => Err(TranscodeError::Input(anyhow::anyhow!("{why}"))),
            Some(4) => Err(TranscodeError::Cancelled),
            _ if !why.is_empty() => Err(TranscodeError::Output(anyhow::anyhow!("{why}"))),
            _ => Err(TranscodeError::Output(anyhow::anyhow!(
                "the transcode process ended with {status}"
            ))),
        }
    }

    fn remove_partial(a: &TranscodeArgs, pid: u32) {
        let (Some(parent), Some(prefix)) =
            (a.out.parent(), crate::transcode::partial_prefix(&a.out))
        else {
            return;
        };
        let _ = std::fs::remove_dir_all(parent.join(format!("{prefix}{pid}")));
    }
}
