//! One session, one actor: a task that owns the session's pipeline, its
//! packaging worker, its recording and its disk watch, takes commands over
//! a channel with oneshot replies, and never blocks: the start (filter
//! design, device opens: seconds, or forever when a device hangs), the
//! teardown, record writes and disk checks all run off the actor, which
//! keeps answering meanwhile.
//!
//! Life: starting → live → stopping → ended | failed. Every transition is
//! published on a `watch` channel (what `list` reads without asking) and
//! saved through the [`SessionStore`]. However the actor ends (even by a
//! panic), the supervisor hears that it is over.

mod launch;
mod lifecycle;
mod monitor;
mod record;

use std::sync::Arc;
use std::time::Duration;

use studiocast_media::master::RecordingState;
use studiocast_media::meters::MeterBank;
use studiocast_media::{PipelineSpec, QueueStats};
use studiocast_server::{ControlError, CreateSession, SessionInfo, SessionState};
use tokio::sync::{mpsc, oneshot, watch};

use super::media::{MediaBackend, Running};
use super::recording::Sidecar;
use super::store::SessionStore;
use super::worker::Update;
use crate::config::RecordingConfig;
use monitor::DiskReading;
use record::RecordWriter;

pub use launch::now;

/// How long a stop may take before the pipeline is torn down regardless.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the teardown (threads joined, the worker's last files) may
/// take before the session is settled without it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(8);

/// What every session of a daemon shares.
pub struct SessionCtx {
    pub store: Arc<dyn SessionStore>,
    /// `data/sessions`: one folder per session.
    pub media_root: std::path::PathBuf,
    pub recording: RecordingConfig,
    pub backend: Arc<dyn MediaBackend>,
    /// What the origin serves from memory, by session and rendition.
    pub live: super::live::LiveRegistry,
    /// Test hook (`STUDIOCAST_FAULT_FREEZE_LIVE`), see [`super::media::Faults`].
    pub freeze_live: Option<(String, std::time::Duration)>,
    /// Session and alarm changes, for `GET /api/v1/events`.
    pub events: studiocast_server::events::EventBus,
}

pub type Reply = oneshot::Sender<Result<SessionInfo, ControlError>>;

pub enum SessionCmd {
    Get(oneshot::Sender<SessionInfo>),
    Stop(Reply),
    Meters(oneshot::Sender<Result<Arc<MeterBank>, ControlError>>),
    Pipeline(oneshot::Sender<Option<gstreamer::Pipeline>>),
    /// The daemon is stopping: finish like a stop, no reply.
    Shutdown,
}

/// What a session tells the supervisor when it is over.
pub struct Settled {
    pub id: String,
    /// The final record; `None` when the start was refused before the
    /// session had a record (nothing to list).
    pub info: Option<SessionInfo>,
    /// The session's last answers (a failed start, finished stops), sent by
    /// the supervisor once the slot is free: a caller who hears "failed" or
    /// "ended" and starts again at once must not meet the session limit.
    pub answers: Vec<(Reply, Result<SessionInfo, ControlError>)>,
}

/// A running session as the supervisor and the HTTP layer reach it.
#[derive(Clone)]
pub struct SessionHandle {
    tx: mpsc::Sender<SessionCmd>,
    info: watch::Receiver<SessionInfo>,
}

impl SessionHandle {
    /// The latest published state, without asking the actor.
    pub fn info(&self) -> SessionInfo {
        self.info.borrow().clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> SessionCmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The session with its live status; the last published state when the
    /// actor has just finished.
    pub async fn get(&self) -> SessionInfo {
        match self.ask(SessionCmd::Get).await {
            Some(i) => i,
            None => self.info(),
        }
    }

    pub async fn stop(&self) -> Result<SessionInfo, ControlError> {
        match self.ask(SessionCmd::Stop).await {
            Some(r) => r,
            None => {
                let i = self.info();
                Err(ControlError::Conflict(format!(
                    "session {} is already {}",
                    i.id, i.state
                )))
            }
        }
    }

    pub async fn meters(&self) -> Result<Arc<MeterBank>, ControlError> {
        match self.ask(SessionCmd::Meters).await {
            Some(r) => r,
            None => Err(ControlError::Conflict(
                "the session has ended: meters exist while it runs".into(),
            )),
        }
    }

    pub async fn pipeline(&self) -> Option<gstreamer::Pipeline> {
        self.ask(SessionCmd::Pipeline).await.flatten()
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(SessionCmd::Shutdown).await;
    }
}

/// Start a session's actor on `tasks`. `reply` gets the session once it
/// started (or why it did not); the supervisor hears [`Settled`] when it is
/// over.
pub fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    ctx: Arc<SessionCtx>,
    id: String,
    req: CreateSession,
    spec: PipelineSpec,
    reply: Reply,
    settled: mpsc::UnboundedSender<Settled>,
) -> SessionHandle {
    let info = SessionInfo::starting(&id, &req, now());
    let (watch_tx, watch_rx) = watch::channel(info.clone());
    ctx.events.send("session", session_event(&info));
    let (tx, rx) = mpsc::channel(32);
    let span = tracing::info_span!("session", %id, pipeline = %req.pipeline);
    let (store_errors_tx, store_errors) = mpsc::unbounded_channel();
    let actor = Session {
        record: RecordWriter::spawn(ctx.store.clone(), store_errors_tx),
        ctx,
        span: span.clone(),
        info,
        published: watch_tx,
        phase: Phase::Launching,
        create_reply: Some(reply),
        waiters: Vec::new(),
        last_answers: Vec::new(),
        stop_asked: false,
        recording: None,
        worker: None,
        queue: None,
        monitor: monitor::Monitor::default(),
        announced_alarms: Vec::new(),
        stop_deadline: None,
        early_end: None,
        outcome: None,
        recorded: false,
        closing: None,
    };
    let guard = SettledGuard {
        id,
        settled,
        last: actor.published.subscribe(),
        done: false,
    };
    tasks.spawn(tracing::Instrument::instrument(
        actor.run(req, spec, rx, store_errors, guard),
        span,
    ));
    SessionHandle { tx, info: watch_rx }
}

/// Tells the supervisor the session is over, whatever ends the actor: its
/// normal end, or a panic (then with the last published state, failed).
struct SettledGuard {
    id: String,
    settled: mpsc::UnboundedSender<Settled>,
    last: watch::Receiver<SessionInfo>,
    done: bool,
}

impl SettledGuard {
    fn send(
        mut self,
        info: Option<SessionInfo>,
        answers: Vec<(Reply, Result<SessionInfo, ControlError>)>,
    ) {
        self.done = true;
        let _ = self.settled.send(Settled {
            id: self.id.clone(),
            info,
            answers,
        });
    }
}

impl Drop for SettledGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut info = self.last.borrow().clone();
        if info.state.is_active() {
            info.state = SessionState::Failed;
            info.error = Some("the session's task failed; see the log".into());
            info.ended_at = Some(now());
        }
        tracing::error!(id = %self.id, "session task ended abnormally");
        let _ = self.settled.send(Settled {
            id: self.id.clone(),
            info: Some(info),
            answers: Vec::new(),
        });
    }
}

enum Phase {
    Launching,
    Running(Box<dyn Running>),
    /// The pipeline and worker are being stopped and joined, off the actor.
    Closing,
    Done,
}

struct Session {
    ctx: Arc<SessionCtx>,
    span: tracing::Span,
    info: SessionInfo,
    published: watch::Sender<SessionInfo>,
    record: RecordWriter,
    phase: Phase,
    create_reply: Option<Reply>,
    /// Stop requests waiting for the end.
    waiters: Vec<Reply>,
    /// Answers held until the supervisor has freed the slot (see
    /// [`Settled::answers`]).
    last_answers: Vec<(Reply, Result<SessionInfo, ControlError>)>,
    /// A stop came while the session was still starting.
    stop_asked: bool,
    recording: Option<(Arc<RecordingState>, Sidecar)>,
    worker: Option<std::thread::JoinHandle<Option<String>>>,
    queue: Option<Arc<QueueStats>>,
    monitor: monitor::Monitor,
    /// The alarms as last announced on the event bus.
    announced_alarms: Vec<(&'static str, String)>,
    stop_deadline: Option<tokio::time::Instant>,
    /// The worker's last word when it came before the start job returned
    /// (a pipeline that failed at once): acted on once the job is back.
    early_end: Option<Update>,
    /// How the stream ended, once known: `Some(None)` cleanly, `Some(Some(e))`
    /// with an error.
    outcome: Option<Option<String>>,
    /// The session has a record (its start got that far).
    recorded: bool,
    /// The closing job, handed to the run loop (which awaits it).
    closing: Option<(
        tokio::task::JoinHandle<lifecycle::Closed>,
        tokio::time::Instant,
    )>,
}

impl Session {
    async fn run(
        mut self,
        req: CreateSession,
        spec: PipelineSpec,
        mut rx: mpsc::Receiver<SessionCmd>,
        mut store_errors: mpsc::UnboundedReceiver<String>,
        guard: SettledGuard,
    ) {
        let (utx, mut urx) = mpsc::unbounded_channel::<Update>();
        let (disk_tx, mut disk) = mpsc::channel::<DiskReading>(4);
        let job = launch::Job {
            ctx: self.ctx.clone(),
            id: self.info.id.clone(),
            req,
            spec,
            updates: utx,
            span: self.span.clone(),
            started_at: self.info.started_at.clone(),
        };
        let mut launching = Some(tokio::task::spawn_blocking(move || launch::run(job)));
        let mut disk_tx = Some(disk_tx);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut worker_gone = false;
        let mut closing = None;
        while !matches!(self.phase, Phase::Done) {
            if let Some(c) = self.closing.take() {
                closing = Some(c);
            }
            let deadline = self.stop_deadline;
            let running = matches!(self.phase, Phase::Running(_));
            tokio::select! {
                r = async { launching.as_mut().expect("guarded").await }, if launching.is_some() => {
                    launching = None;
                    self.on_launched(r);
                    if matches!(self.phase, Phase::Running(_)) {
                        if let Some(tx) = disk_tx.take() {
                            let dir = self.ctx.media_root.join(&self.info.id);
                            monitor::spawn_disk_watch(dir, tx);
                        }
                    }
                    if let Some(u) = self.early_end.take() {
                        self.on_update(u);
                    }
                }
                Some(cmd) = rx.recv() => self.on_command(cmd),
                u = urx.recv(), if !worker_gone => match u {
                    Some(u) => self.on_update(u),
                    None => {
                        // Every sender is gone: the worker exited. Without
                        // its last word it died; the session must not sit
                        // `live` for ever.
                        worker_gone = true;
                        if self.info.state.is_active() && self.outcome.is_none() && launching.is_none() {
                            self.on_update(Update::Failed { error: "the packaging worker died".into() });
                        }
                    }
                },
                Some(e) = store_errors.recv() => {
                    tracing::error!(error = %e, "cannot save the session record");
                    self.monitor.raise("store", format!("session record not saved: {e}"));
                    self.publish();
                }
                Some(d) = disk.recv() => self.on_disk(d),
                _ = tick.tick(), if running => self.on_tick(),
                _ = sleep_until(deadline), if deadline.is_some() => {
                    tracing::warn!("pipeline did not drain in {} s; tearing it down", STOP_TIMEOUT.as_secs());
                    self.stop_deadline = None;
                    self.close();
                }
                r = lifecycle::closed(&mut closing), if closing.is_some() => {
                    self.on_closed(r).await;
                }
            }
        }
        let info = self.recorded.then(|| self.info.clone());
        guard.send(info, std::mem::take(&mut self.last_answers));
    }

    fn publish(&mut self) {
        self.info.alarms = self.monitor.alarms();
        let before = self.published.send_replace(self.info.clone());
        self.announce(&before);
    }

    /// Events for what changed since the last publish: the state, alarms
    /// raised and alarms cleared (by kind: a new figure in an alarm's text
    /// is not a new alarm).
    fn announce(&mut self, before: &SessionInfo) {
        let (id, now) = (&self.info.id, &self.info);
        let bus = &self.ctx.events;
        if before.state != now.state {
            bus.send("session", session_event(now));
        }
        for c in monitor::alarm_changes(&self.announced_alarms, self.monitor.active()) {
            bus.send(
                "alarm",
                serde_json::json!({
                    "session": id, "kind": c.kind, "alarm": c.text, "raised": c.raised,
                }),
            );
        }
        self.announced_alarms = self.monitor.active().to_vec();
    }

    /// Publish and queue the record (with the alarms it has now).
    fn save(&mut self) {
        self.publish();
        self.record.save(&self.info);
    }
}

/// A `session` event's body.
fn session_event(i: &SessionInfo) -> serde_json::Value {
    serde_json::json!({
        "id": i.id, "state": i.state, "pipeline": i.pipeline,
        "title": i.title, "error": i.error,
    })
}

async fn sleep_until(d: Option<tokio::time::Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
