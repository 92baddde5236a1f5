//! The supervisor: an actor that keeps the index of sessions (running ones
//! as handles to their own actors, past ones as records) and admits new
//! ones. It only routes: every call it answers is a map lookup, so a slow
//! start, stop or status of one session never delays another. Its handle
//! implements the HTTP layer's [`SessionControl`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use studiocast_media::PipelineSpec;
use studiocast_server::{
    BoxFuture, ControlError, CreateSession, DeviceEntry, Health, SessionControl, SessionInfo,
};
use tokio::sync::{mpsc, oneshot};

use super::live::{LiveRegistry, Retiring};
use super::recording;
use super::session::{self, SessionCtx, SessionHandle, Settled};
use crate::config::RecordingConfig;

/// How long `/healthz` waits for the supervisor before calling it dead.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(800);
/// How long readiness waits for the disk checks (the HTTP layer gives the
/// whole answer 2 s).
const DISK_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

enum Slot {
    Settled(Box<SessionInfo>),
    Running(SessionHandle),
}

impl Slot {
    fn info(&self) -> SessionInfo {
        match self {
            Slot::Settled(i) => i.as_ref().clone(),
            Slot::Running(h) => h.info(),
        }
    }
}

/// What a lookup returns.
enum Found {
    Settled(Box<SessionInfo>),
    Running(SessionHandle),
}

enum Cmd {
    Create(CreateSession, session::Reply),
    List(oneshot::Sender<Vec<SessionInfo>>),
    Lookup(String, oneshot::Sender<Option<Found>>),
    Health(oneshot::Sender<Health>),
    Shutdown(oneshot::Sender<()>),
}

/// The supervisor's handle: cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    /// The job queue the HTTP layer reaches through this control.
    jobs: Option<Arc<crate::jobs::Jobs>>,
    /// The engine's filters for the player.
    filters: Option<Arc<dyn studiocast_server::hrtf::FilterSource>>,
    tx: mpsc::Sender<Cmd>,
    live: LiveRegistry,
    events: studiocast_server::events::EventBus,
    presets: Arc<HashMap<String, PipelineSpec>>,
    media_root: PathBuf,
    recording: RecordingConfig,
    retention: Arc<super::retention::RetentionConfig>,
}

pub struct SupervisorConfig {
    pub presets: HashMap<String, PipelineSpec>,
    pub recording: RecordingConfig,
    pub max_sessions: usize,
    pub retention: super::retention::RetentionConfig,
}

struct Actor {
    sessions: BTreeMap<String, Slot>,
    presets: HashMap<String, PipelineSpec>,
    ctx: Arc<SessionCtx>,
    max_sessions: usize,
    settled_tx: mpsc::UnboundedSender<Settled>,
    /// Waiting for the last session to finish, after a shutdown.
    shutting_down: Vec<oneshot::Sender<()>>,
    /// Set by a shutdown, never cleared: no start after it.
    closed: bool,
    /// Every session's actor.
    tasks: tokio::task::JoinSet<()>,
    /// Settled sessions' live views, removed when due.
    retiring: Retiring,
}

/// 64 random bits, hex: session ids are unguessable (they are in URLs).
pub fn random_id() -> Result<String, ControlError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| ControlError::Internal(format!("no randomness: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Supervisor {
    /// Start the actor with the records already in the store (past
    /// sessions, and interrupted ones after recovery).
    pub fn spawn(cfg: SupervisorConfig, ctx: SessionCtx, past: Vec<SessionInfo>) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let (settled_tx, settled_rx) = mpsc::unbounded_channel();
        let sessions = past
            .into_iter()
            .map(|i| (i.id.clone(), Slot::Settled(Box::new(i))))
            .collect();
        let shared = Arc::new(cfg.presets.clone());
        let (media_root, recording) = (ctx.media_root.clone(), cfg.recording.clone());
        let retention = Arc::new(cfg.retention.clone());
        let live = ctx.live.clone();
        let events = ctx.events.clone();
        let actor = Actor {
            sessions,
            presets: cfg.presets,
            ctx: Arc::new(ctx),
            max_sessions: cfg.max_sessions.max(1),
            settled_tx,
            shutting_down: Vec::new(),
            closed: false,
            tasks: tokio::task::JoinSet::new(),
            retiring: Retiring::default(),
        };
        tokio::spawn(actor.run(rx, settled_rx));
        Supervisor {
            jobs: None,
            filters: None,
            tx,
            live,
            events,
            presets: shared,
            media_root,
            recording,
            retention,
        }
    }

    /// Serve the engine's filters for the player through this control.
    pub fn with_filters(mut self, f: Arc<dyn studiocast_server::hrtf::FilterSource>) -> Self {
        self.filters = Some(f);
        self
    }

    /// Serve the job queue through this control too.
    pub fn with_jobs(mut self, jobs: Arc<crate::jobs::Jobs>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, ControlError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ControlError::Unavailable("the daemon is shutting down".into());
        self.tx.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    async fn lookup(&self, id: String) -> Result<Found, ControlError> {
        let found = self.ask(|r| Cmd::Lookup(id.clone(), r)).await?;
        found.ok_or(ControlError::SessionNotFound(id))
    }

    /// The GStreamer pipeline of a running session, for diagnostics (graph
    /// dumps, statistics, fault injection in tests).
    pub async fn pipeline(&self, id: &str) -> Option<gstreamer::Pipeline> {
        match self.lookup(id.to_string()).await {
            Ok(Found::Running(h)) => h.pipeline().await,
            _ => None,
        }
    }

    /// Stop every running session and wait until each has finalised its
    /// playlists and record.
    pub async fn shutdown(&self) {
        let _ = self.ask(Cmd::Shutdown).await;
    }
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut settled: mpsc::UnboundedReceiver<Settled>,
    ) {
        loop {
            if !self.shutting_down.is_empty() && !self.any_running() {
                for r in self.shutting_down.drain(..) {
                    let _ = r.send(());
                }
            }
            // Far off when nothing waits (the branch is disabled then).
            // One clock for both (tokio's, which tests may pause).
            let now = tokio::time::Instant::now();
            let next = self.retiring.next();
            let retire_at = next.map_or(
                now + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            );
            tokio::select! {
                _ = tokio::time::sleep_until(retire_at), if next.is_some() => {
                    let now = tokio::time::Instant::now().into_std();
                    for id in self.retiring.take_due(now) {
                        self.ctx.live.remove(&id);
                    }
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => return,
                },
                Some(s) = settled.recv() => self.on_settled(s),
                Some(r) = self.tasks.join_next() => {
                    // A panicking session still settles (its guard says so);
                    // here it is logged with its cause.
                    if let Err(e) = r {
                        tracing::error!(%e, "a session task failed");
                    }
                }
            }
        }
    }

    fn any_running(&self) -> bool {
        self.sessions
            .values()
            .any(|s| matches!(s, Slot::Running(_)))
    }

    fn running(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| matches!(s, Slot::Running(_)))
            .count()
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create(req, reply) => self.create(req, reply),
            Cmd::List(reply) => {
                // Oldest first (ids are random; their order means nothing).
                let mut all: Vec<SessionInfo> = self.sessions.values().map(Slot::info).collect();
                all.sort_by(|a, b| a.started_at.cmp(&b.started_at));
                let _ = reply.send(all);
            }
            Cmd::Lookup(id, reply) => {
                let _ = reply.send(self.sessions.get(&id).map(|s| match s {
                    Slot::Settled(i) => Found::Settled(i.clone()),
                    Slot::Running(h) => Found::Running(h.clone()),
                }));
            }
            Cmd::Health(reply) => {
                let _ = reply.send(self.health());
            }
            Cmd::Shutdown(reply) => {
                let handles: Vec<SessionHandle> = self
                    .sessions
                    .values()
                    .filter_map(|s| match s {
                        Slot::Running(h) => Some(h.clone()),
                        _ => None,
                    })
                    .collect();
                tracing::info!(sessions = handles.len(), "stopping all sessions");
                for h in handles {
                    // Queued, never awaited in turn: a busy session cannot
                    // hold the others' shutdown.
                    tokio::spawn(async move { h.shutdown().await });
                }
                self.shutting_down.push(reply);
                self.closed = true;
            }
        }
    }

    /// Admit a start: known preset, a free slot, disk space. The session's
    /// own actor does the rest and answers `reply`.
    fn create(&mut self, req: CreateSession, reply: session::Reply) {
        let refuse = |reply: session::Reply, e: ControlError| {
            let _ = reply.send(Err(e));
        };
        if self.closed {
            return refuse(
                reply,
                ControlError::Unavailable("the daemon is shutting down".into()),
            );
        }
        let Some(spec) = self.presets.get(&req.pipeline).cloned() else {
            return refuse(reply, ControlError::PipelineNotFound(req.pipeline));
        };
        let mut req = req;
        req.visibility = Some(req.visibility.unwrap_or(crate::visibility_of(&spec)));
        let running = self.running();
        if running >= self.max_sessions {
            return refuse(
                reply,
                ControlError::Unavailable(format!(
                    "session limit reached: {running} of {} sessions are running (server.max_sessions); stop one first",
                    self.max_sessions
                )),
            );
        }
        let id = match random_id() {
            Ok(id) => id,
            Err(e) => return refuse(reply, e),
        };
        let h = session::spawn(
            &mut self.tasks,
            self.ctx.clone(),
            id.clone(),
            req,
            spec,
            reply,
            self.settled_tx.clone(),
        );
        self.sessions.insert(id, Slot::Running(h));
    }

    fn on_settled(&mut self, s: Settled) {
        // Viewers get the files on disk (the ended playlists) once the
        // views go: not at once, for players holding the ended playlist.
        match self.ctx.live.linger(&s.id) {
            Some(linger) if !linger.is_zero() => {
                let now = tokio::time::Instant::now().into_std();
                self.retiring.add(now, s.id.clone(), linger);
            }
            _ => self.ctx.live.remove(&s.id),
        }
        match s.info {
            Some(info) => {
                self.sessions.insert(s.id, Slot::Settled(Box::new(info)));
            }
            // Refused before it had a record: as if it never was.
            None => {
                self.sessions.remove(&s.id);
            }
        }
        // Only now: the slot is free when the caller hears the end.
        for (reply, r) in s.answers {
            let _ = reply.send(r);
        }
    }

    /// What only the actor knows; the disk checks run outside it.
    fn health(&self) -> Health {
        let sessions = self.running();
        let mut reasons = Vec::new();
        if self.closed {
            reasons.push("the daemon is shutting down".to_string());
        }
        if sessions >= self.max_sessions {
            reasons.push(format!(
                "session limit reached ({sessions} of {})",
                self.max_sessions
            ));
        }
        Health {
            live: true,
            ready: reasons.is_empty(),
            reasons,
            sessions,
            max_sessions: self.max_sessions,
        }
    }
}

impl SessionControl for Supervisor {
    fn filters(&self) -> Option<&dyn studiocast_server::hrtf::FilterSource> {
        self.filters.as_deref()
    }

    fn jobs(&self) -> Option<&dyn studiocast_server::JobControl> {
        self.jobs
            .as_deref()
            .map(|j| j as &dyn studiocast_server::JobControl)
    }

    fn live(
        &self,
        id: &str,
        rendition: &str,
    ) -> Option<tokio::sync::watch::Receiver<Arc<studiocast_server::LiveView>>> {
        self.live.subscribe(id, rendition)
    }

    fn published(&self, id: &str) -> Vec<studiocast_server::Published> {
        self.live.published(id)
    }

    fn events(&self) -> Option<&studiocast_server::events::EventBus> {
        Some(&self.events)
    }

    fn health(&self, deep: bool) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            let mut h = match tokio::time::timeout(HEALTH_TIMEOUT, self.ask(Cmd::Health)).await {
                Ok(Ok(h)) => h,
                _ => {
                    return Health {
                        live: false,
                        ready: false,
                        reasons: vec!["the session supervisor does not answer".into()],
                        ..Health::default()
                    }
                }
            };
            if !deep {
                return h;
            }
            // Disk checks may block (a slow or remote file system): off the
            // runtime, within what is left of the health budget.
            let (root, rec) = (self.media_root.clone(), self.recording.clone());
            let disk = tokio::task::spawn_blocking(move || disk_reasons(&root, &rec));
            match tokio::time::timeout(DISK_CHECK_TIMEOUT, disk).await {
                Ok(Ok(r)) => h.reasons.extend(r),
                _ => h.reasons.push("the data folder does not answer".into()),
            }
            h.ready = h.reasons.is_empty();
            h
        })
    }

    fn meters(
        &self,
        id: String,
    ) -> BoxFuture<'_, Result<Arc<dyn studiocast_server::MeterSource>, ControlError>> {
        Box::pin(async move {
            let bank = match self.lookup(id.clone()).await? {
                Found::Running(h) => h.meters().await?,
                Found::Settled(i) => {
                    return Err(ControlError::Conflict(format!(
                        "session {id} is {}: meters exist while it runs",
                        i.state
                    )))
                }
            };
            let src: Arc<dyn studiocast_server::MeterSource> =
                Arc::new(BankSource(Arc::downgrade(&bank)));
            Ok(src)
        })
    }

    fn create(&self, req: CreateSession) -> BoxFuture<'_, Result<SessionInfo, ControlError>> {
        Box::pin(async move { self.ask(|r| Cmd::Create(req, r)).await? })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, ControlError>> {
        Box::pin(async move { self.ask(Cmd::List).await })
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>> {
        Box::pin(async move {
            match self.lookup(id).await? {
                Found::Settled(i) => Ok(*i),
                Found::Running(h) => Ok(h.get().await),
            }
        })
    }

    fn stop(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>> {
        Box::pin(async move {
            match self.lookup(id.clone()).await? {
                Found::Running(h) => h.stop().await,
                Found::Settled(i) => Err(ControlError::Conflict(format!(
                    "session {id} is already {}",
                    i.state
                ))),
            }
        })
    }

    fn devices(&self) -> BoxFuture<'_, Result<Vec<DeviceEntry>, ControlError>> {
        Box::pin(async move {
            // Device probing talks to ALSA and JACK; keep it off the runtime.
            let presets = self.presets.clone();
            tokio::task::spawn_blocking(move || super::devices::device_entries(&presets))
                .await
                .map_err(|e| ControlError::Internal(e.to_string()))
        })
    }

    fn presets(&self) -> Vec<studiocast_server::PresetInfo> {
        super::devices::preset_infos(&self.presets)
    }

    fn disk_use(&self) -> BoxFuture<'_, Result<Vec<studiocast_server::DiskUse>, ControlError>> {
        Box::pin(async move {
            let list = self.list().await?;
            let (root, rules) = (self.media_root.clone(), self.retention.clone());
            tokio::task::spawn_blocking(move || super::retention::disk_use(&root, &rules, &list))
                .await
                .map_err(|e| ControlError::Internal(e.to_string()))
        })
    }

    fn pin(&self, id: String, pinned: bool) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(async move {
            // The session must exist (and its id is then a folder name).
            self.get(id.clone()).await?;
            let marker = super::retention::pin_file(&self.media_root.join(&id));
            tokio::task::spawn_blocking(move || {
                if pinned {
                    std::fs::write(&marker, b"kept by PUT /api/v1/sessions/{id}/pin\n")
                } else {
                    match std::fs::remove_file(&marker) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                        r => r,
                    }
                }
            })
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .map_err(|e| ControlError::Internal(format!("pin not saved: {e}")))
        })
    }
}

/// Why no session could start for lack of disk: too little free space, or
/// a data folder that cannot be written.
fn disk_reasons(root: &std::path::Path, rec: &RecordingConfig) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Err(e) = recording::check_start(root, rec) {
        reasons.push(e);
    }
    let probe = root.join(".ready-probe");
    if let Err(e) = super::store::write_atomic(&probe, b"ok") {
        reasons.push(format!("the data folder is not writable: {e}"));
    }
    let _ = std::fs::remove_file(&probe);
    reasons
}

/// A session's meter bank as the HTTP layer sees it; weak, so a socket
/// left open does not keep a stopped session's meters alive.
struct BankSource(std::sync::Weak<studiocast_media::meters::MeterBank>);

impl studiocast_server::MeterSource for BankSource {
    fn read(&self) -> Option<studiocast_server::MeterFrame> {
        let (seq, levels) = self.0.upgrade()?.read()?;
        Some(studiocast_server::MeterFrame {
            seq,
            channels: levels
                .into_iter()
                .map(|l| studiocast_server::ChannelMeter {
                    name: l.label,
                    role: l.role,
                    peak_dbfs: l.peak_dbfs,
                    rms_dbfs: l.rms_dbfs,
                    clip: l.clip,
                })
                .collect(),
        })
    }

    fn running(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// Every preset in `dir` (`*.toml`), checked; an invalid one stops the
/// daemon's start with the file name and the reason.
pub fn load_presets(dir: &std::path::Path) -> anyhow::Result<HashMap<String, PipelineSpec>> {
    use anyhow::Context;
    let mut out = HashMap::new();
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read pipelines folder {}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for p in files {
        let text = crate::filters::read_bounded(&p, 1 << 20)
            .and_then(|b| String::from_utf8(b).context("not UTF-8"))
            .with_context(|| format!("cannot read {}", p.display()))?;
        let spec = PipelineSpec::parse(&text)
            .with_context(|| format!("invalid pipeline preset {}", p.display()))?;
        if out.contains_key(&spec.name) {
            anyhow::bail!(
                "pipeline name '{}' is used twice ({})",
                spec.name,
                p.display()
            );
        }
        out.insert(spec.name.clone(), spec);
    }
    Ok(out)
}
