//! One session, one actor: a task that owns the session's pipeline, its
//! packaging worker, its recording and its disk watch, takes commands over
//! a channel with oneshot replies, and never blocks: the start (filter
//! design, device opens: seconds, or forever when a device hangs) and the
//! teardown run on the blocking pool while the actor keeps answering.
//!
//! Life: launching → live → stopping → ended | failed. Every transition is
//! published on a `watch` channel (what `list` reads without asking) and
//! saved through the [`SessionStore`].

mod launch;
mod monitor;

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

pub use launch::now;

/// How long a stop may take before the pipeline is torn down regardless.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What every session of a daemon shares.
pub struct SessionCtx {
    pub store: Arc<dyn SessionStore>,
    /// `data/sessions`: one folder per session.
    pub media_root: std::path::PathBuf,
    pub recording: RecordingConfig,
    pub backend: Arc<dyn MediaBackend>,
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

/// Start a session's actor. `reply` gets the session once it started (or
/// why it did not); the supervisor hears [`Settled`] when it is over.
pub fn spawn(
    ctx: Arc<SessionCtx>,
    id: String,
    req: CreateSession,
    spec: PipelineSpec,
    reply: Reply,
    settled: mpsc::UnboundedSender<Settled>,
) -> SessionHandle {
    let info = SessionInfo::starting(&id, &req, now());
    let (watch_tx, watch_rx) = watch::channel(info.clone());
    let (tx, rx) = mpsc::channel(32);
    let span = tracing::info_span!("session", %id, pipeline = %req.pipeline);
    let actor = Session {
        ctx,
        span: span.clone(),
        info,
        published: watch_tx,
        phase: Phase::Launching,
        create_reply: Some(reply),
        waiters: Vec::new(),
        stop_asked: false,
        recording: None,
        worker: None,
        queue: None,
        monitor: monitor::Monitor::default(),
        stop_deadline: None,
        early_end: None,
    };
    tokio::spawn(tracing::Instrument::instrument(
        actor.run(req, spec, rx, settled),
        span,
    ));
    SessionHandle { tx, info: watch_rx }
}

enum Phase {
    Launching,
    Running(Box<dyn Running>),
    /// The pipeline is gone (torn down or never started); waiting for the
    /// worker's last word.
    Draining,
    Done,
}

struct Session {
    ctx: Arc<SessionCtx>,
    span: tracing::Span,
    info: SessionInfo,
    published: watch::Sender<SessionInfo>,
    phase: Phase,
    create_reply: Option<Reply>,
    /// Stop requests waiting for the end.
    waiters: Vec<Reply>,
    /// A stop came while the session was still launching.
    stop_asked: bool,
    recording: Option<(Arc<RecordingState>, Sidecar)>,
    worker: Option<std::thread::JoinHandle<()>>,
    queue: Option<Arc<QueueStats>>,
    monitor: monitor::Monitor,
    stop_deadline: Option<tokio::time::Instant>,
    /// The worker's last word when it came before the start job returned
    /// (a pipeline that failed at once): acted on once the job is back.
    early_end: Option<Update>,
}

impl Session {
    async fn run(
        mut self,
        req: CreateSession,
        spec: PipelineSpec,
        mut rx: mpsc::Receiver<SessionCmd>,
        settled: mpsc::UnboundedSender<Settled>,
    ) {
        let (utx, mut urx) = mpsc::unbounded_channel::<Update>();
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
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recorded = false;
        while !matches!(self.phase, Phase::Done) {
            let deadline = self.stop_deadline;
            tokio::select! {
                r = async { launching.as_mut().expect("guarded").await }, if launching.is_some() => {
                    launching = None;
                    recorded = self.on_launched(r).await;
                    if let Some(u) = self.early_end.take() {
                        self.on_update(u).await;
                    }
                }
                Some(cmd) = rx.recv() => self.on_command(cmd),
                Some(u) = urx.recv() => self.on_update(u).await,
                _ = tick.tick(), if matches!(self.phase, Phase::Running(_)) => self.on_tick(),
                _ = sleep_until(deadline), if deadline.is_some() => {
                    tracing::warn!("pipeline did not drain in {} s; tearing it down", STOP_TIMEOUT.as_secs());
                    self.stop_deadline = None;
                    self.teardown().await;
                }
            }
        }
        let _ = settled.send(Settled {
            id: self.info.id.clone(),
            info: recorded.then(|| self.info.clone()),
        });
    }

    fn publish(&mut self) {
        self.info.alarms = self.monitor.alarms();
        self.published.send_replace(self.info.clone());
    }

    fn save(&mut self) {
        if let Err(e) = self.ctx.store.save(&self.info) {
            // Never silent: the live stream goes on, the alarm says the
            // record is behind.
            tracing::error!(%e, state = %self.info.state, "cannot save the session record");
            self.monitor
                .raise("store", format!("session record not saved: {e}"));
        }
        self.publish();
    }
}

impl Session {
    /// The start job came back.
    async fn on_launched(
        &mut self,
        r: Result<Result<launch::Launched, launch::LaunchError>, tokio::task::JoinError>,
    ) -> bool {
        let r = r.unwrap_or_else(|e| {
            tracing::error!(%e, "the start job panicked");
            Err(launch::LaunchError::Refused(
                "internal error while starting".into(),
            ))
        });
        match r {
            Ok(l) => {
                self.phase = Phase::Running(l.running);
                self.worker = Some(l.worker);
                self.recording = Some(l.recording);
                self.queue = Some(l.queue);
                tracing::info!(title = %self.info.title, "session started");
                self.publish();
                if let Some(reply) = self.create_reply.take() {
                    let _ = reply.send(Ok(self.info.clone()));
                }
                if self.stop_asked {
                    self.begin_stop();
                }
                true
            }
            Err(launch::LaunchError::Refused(msg)) => {
                tracing::warn!(reason = %msg, "start refused");
                self.phase = Phase::Done;
                if let Some(reply) = self.create_reply.take() {
                    let _ = reply.send(Err(ControlError::Unavailable(msg.clone())));
                }
                for w in self.waiters.drain(..) {
                    let _ = w.send(Err(ControlError::Conflict(format!(
                        "the session did not start: {msg}"
                    ))));
                }
                false
            }
            Err(launch::LaunchError::Failed { msg, recording }) => {
                tracing::error!(reason = %msg, "start failed");
                self.info.state = SessionState::Failed;
                self.info.error = Some(msg.clone());
                self.info.ended_at = Some(now());
                if let Some((state, mut sidecar)) = recording {
                    sidecar.finish(self.info.ended_at.as_deref().unwrap_or_default(), &state);
                }
                self.save();
                self.phase = Phase::Done;
                if let Some(reply) = self.create_reply.take() {
                    let _ = reply.send(Err(ControlError::Unavailable(msg)));
                }
                for w in self.waiters.drain(..) {
                    let _ = w.send(Ok(self.info.clone()));
                }
                true
            }
        }
    }

    fn on_command(&mut self, cmd: SessionCmd) {
        match cmd {
            SessionCmd::Get(reply) => {
                let mut info = self.info.clone();
                info.alarms = self.monitor.alarms();
                if let Phase::Running(r) = &self.phase {
                    info.inputs = Some(monitor::input_status(
                        r.status(),
                        self.recording.as_ref().map(|(s, _)| s.as_ref()),
                        &self.ctx.media_root.join(&self.info.id),
                    ));
                }
                let _ = reply.send(info);
            }
            SessionCmd::Stop(reply) => match self.info.state {
                SessionState::Starting | SessionState::Live | SessionState::Stopping => {
                    self.waiters.push(reply);
                    self.begin_stop();
                }
                state => {
                    let _ = reply.send(Err(ControlError::Conflict(format!(
                        "session {} is already {state}",
                        self.info.id
                    ))));
                }
            },
            SessionCmd::Meters(reply) => {
                let r = match &self.phase {
                    Phase::Running(r) if self.info.state.is_active() => r
                        .meters()
                        .ok_or_else(|| ControlError::Conflict("this session has no meters".into())),
                    _ => Err(ControlError::Conflict(format!(
                        "session {} is {}: meters exist while it runs",
                        self.info.id, self.info.state
                    ))),
                };
                let _ = reply.send(r);
            }
            SessionCmd::Pipeline(reply) => {
                let p = match &self.phase {
                    Phase::Running(r) => r.pipeline(),
                    _ => None,
                };
                let _ = reply.send(p);
            }
            SessionCmd::Shutdown => {
                if self.info.state.is_active() {
                    self.begin_stop();
                }
            }
        }
    }

    /// Drain: EOS to the pipeline, `stopping` saved, a deadline set. Once:
    /// later stops only wait. A session still launching stops as soon as it
    /// has started.
    fn begin_stop(&mut self) {
        match &self.phase {
            Phase::Launching => {
                self.stop_asked = true;
            }
            Phase::Running(r) if self.info.state != SessionState::Stopping => {
                r.request_eos();
                self.info.state = SessionState::Stopping;
                self.stop_deadline = Some(tokio::time::Instant::now() + STOP_TIMEOUT);
                tracing::info!("stopping");
                self.save();
            }
            _ => {}
        }
    }

    async fn on_update(&mut self, u: Update) {
        if matches!(self.phase, Phase::Launching)
            && matches!(u, Update::Ended | Update::Failed { .. })
        {
            self.early_end = Some(u);
            return;
        }
        match u {
            Update::Live => {
                if self.info.state == SessionState::Starting {
                    self.info.state = SessionState::Live;
                    self.save();
                }
            }
            Update::WriteFailed { file, error } => self
                .monitor
                .raise("hls", format!("cannot write HLS files ({file}: {error})")),
            Update::WritesRecovered => self.monitor.clear("hls"),
            Update::Ended => self.finish(None).await,
            Update::Failed { error } => {
                tracing::error!(%error, "session failed");
                self.finish(Some(error)).await
            }
        }
    }

    fn on_tick(&mut self) {
        let Phase::Running(r) = &self.phase else {
            return;
        };
        let status = r.status();
        let dir = self.ctx.media_root.join(&self.info.id);
        let verdict = self.monitor.tick(
            &status,
            self.queue.as_deref(),
            self.recording.as_ref().map(|(s, _)| s.as_ref()),
            &dir,
            &self.ctx.recording,
        );
        if verdict.stop {
            self.begin_stop();
        }
        if self.info.alarms != self.monitor.alarms() {
            self.publish();
        }
    }

    /// Stop the pipeline's threads (off the runtime); the worker then
    /// reports the end.
    async fn teardown(&mut self) {
        if let Phase::Running(r) = std::mem::replace(&mut self.phase, Phase::Draining) {
            let _ = tokio::task::spawn_blocking(move || r.shutdown()).await;
        }
    }

    /// The stream is over: everything stopped and joined, the record
    /// settled, every waiting stop answered. Exactly once.
    async fn finish(&mut self, error: Option<String>) {
        if matches!(self.phase, Phase::Done) || !self.info.state.is_active() {
            return;
        }
        self.teardown().await;
        if let Some(w) = self.worker.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        self.stop_deadline = None;
        self.info.state = if error.is_some() {
            SessionState::Failed
        } else {
            SessionState::Ended
        };
        self.info.error = error;
        self.info.ended_at = Some(now());
        if let Some((state, mut sidecar)) = self.recording.take() {
            sidecar.finish(self.info.ended_at.as_deref().unwrap_or_default(), &state);
            if let Some(a) = state.alarm() {
                self.monitor
                    .raise("recording", format!("recording stopped early: {a}"));
            }
        }
        self.save();
        tracing::info!(state = %self.info.state, "session finished");
        for w in self.waiters.drain(..) {
            let _ = w.send(Ok(self.info.clone()));
        }
        self.phase = Phase::Done;
    }
}

async fn sleep_until(d: Option<tokio::time::Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
