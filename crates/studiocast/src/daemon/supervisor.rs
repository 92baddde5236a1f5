//! The session supervisor: an actor that owns every session's pipeline and
//! record, takes commands over a channel with oneshot replies, and hears
//! from packaging workers. Its handle implements the HTTP layer's
//! [`SessionControl`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use studiocast_media::{PipelineSpec, SessionPipeline};
use studiocast_server::{
    BoxFuture, ControlError, CreateSession, DeviceEntry, SessionControl, SessionInfo, SessionUrls,
};
use studiocast_spatial::{DecoderMethod, DesignOptions};
use tokio::sync::{mpsc, oneshot};

use super::recording::{self, Recording, RecordingConfig, Sidecar};
use super::store::{FileStore, SessionStore};
use super::worker::{self, Update};
use crate::config::SpatialConfig;
use studiocast_media::master::RecordingState;

/// How long a stop may take before the pipeline is torn down regardless.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

type Reply = oneshot::Sender<Result<SessionInfo, ControlError>>;

enum Cmd {
    Create(CreateSession, Reply),
    List(oneshot::Sender<Vec<SessionInfo>>),
    Get(String, Reply),
    Stop(String, Reply),
    ForceStop(String),
    Pipeline(String, oneshot::Sender<Option<gstreamer::Pipeline>>),
    Meters(
        String,
        oneshot::Sender<Result<Arc<studiocast_media::meters::MeterBank>, ControlError>>,
    ),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::Sender<Cmd>,
    presets: Arc<HashMap<String, PipelineSpec>>,
}

struct Entry {
    info: SessionInfo,
    /// Recording state while the session runs (alarms), and its sidecar.
    recording: Option<(Arc<RecordingState>, Sidecar)>,
    pipeline: Option<SessionPipeline>,
    worker: Option<std::thread::JoinHandle<()>>,
    waiters: Vec<Reply>,
}

impl Entry {
    /// A session that is not running (past, failed or interrupted).
    fn settled(info: SessionInfo) -> Self {
        Entry {
            info,
            recording: None,
            pipeline: None,
            worker: None,
            waiters: Vec::new(),
        }
    }
}

struct Actor {
    sessions: BTreeMap<String, Entry>,
    presets: HashMap<String, PipelineSpec>,
    store: Arc<FileStore>,
    spatial: SpatialConfig,
    recording: RecordingConfig,
    updates: mpsc::UnboundedSender<Update>,
    me: mpsc::Sender<Cmd>,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = u64::from_le_bytes(b) ^ t.rotate_left(17);
    format!("{:016x}", x)
}

fn active(state: &str) -> bool {
    matches!(state, "starting" | "live" | "stopping")
}

impl Supervisor {
    /// Start the actor. Records left active by a previous run (a crash) are
    /// marked `interrupted`.
    pub fn spawn(
        presets: HashMap<String, PipelineSpec>,
        store: Arc<FileStore>,
        spatial: SpatialConfig,
        recording: RecordingConfig,
    ) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel(64);
        let (utx, urx) = mpsc::unbounded_channel();
        let mut sessions = BTreeMap::new();
        for mut info in store.load_all()? {
            if active(&info.state) {
                info.state = "interrupted".into();
                let mut msg = "the daemon stopped while this session was running".to_string();
                let sdir = store.session_dir(&info.id);
                let master = sdir.join("master.wav");
                let mut recovered = None;
                if master.exists() {
                    match studiocast_audiofile::pcm::repair(&master) {
                        Ok(h) => {
                            let secs = h.frames() as f64 / h.sample_rate.max(1) as f64;
                            msg.push_str(&format!("; master recovered: {secs:.1} s"));
                            recovered = Some(secs);
                            tracing::warn!(id = %info.id, seconds = secs, "recovered interrupted master");
                        }
                        Err(e) => msg.push_str(&format!("; master could not be repaired: {e}")),
                    }
                }
                let program = sdir.join("program.mp4");
                if program.exists() {
                    match recording::repair_fmp4(&program) {
                        Ok(bytes) => {
                            msg.push_str(&format!("; program video kept: {} MB", bytes / 1_000_000))
                        }
                        Err(e) => {
                            msg.push_str(&format!("; program video could not be repaired: {e}"))
                        }
                    }
                }
                recording::mark_interrupted(&sdir.join("master.json"), recovered, &now());
                match presets.get(&info.pipeline) {
                    Some(spec) => match worker::republish(&sdir.join("hls"), spec) {
                        Ok(secs) => {
                            msg.push_str(&format!("; stream republished: {secs:.1} s"));
                            tracing::warn!(id = %info.id, seconds = secs, "republished interrupted stream");
                        }
                        Err(e) => msg.push_str(&format!("; stream not republished: {e}")),
                    },
                    None => msg.push_str(&format!(
                        "; stream not republished: preset '{}' is gone",
                        info.pipeline
                    )),
                }
                info.error = Some(msg);
                store.save(&info)?;
            }
            sessions.insert(info.id.clone(), Entry::settled(info));
        }
        let shared = Arc::new(presets.clone());
        let actor = Actor {
            sessions,
            presets,
            store,
            spatial,
            recording,
            updates: utx,
            me: tx.clone(),
        };
        tokio::spawn(actor.run(rx, urx));
        Ok(Supervisor {
            tx,
            presets: shared,
        })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, ControlError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ControlError::Unavailable("the daemon is shutting down".into()))?;
        rx.await
            .map_err(|_| ControlError::Unavailable("the daemon is shutting down".into()))
    }

    /// The GStreamer pipeline of a running session, for diagnostics (graph
    /// dumps, statistics, fault injection in tests).
    pub async fn pipeline(&self, id: &str) -> Option<gstreamer::Pipeline> {
        let id = id.to_string();
        self.ask(|r| Cmd::Pipeline(id, r)).await.ok().flatten()
    }

    /// Stop every running session and finalise its playlists.
    pub async fn shutdown(&self) {
        let _ = self.ask(Cmd::Shutdown).await;
    }
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

impl SessionControl for Supervisor {
    fn meters(
        &self,
        id: String,
    ) -> BoxFuture<'_, Result<Arc<dyn studiocast_server::MeterSource>, ControlError>> {
        Box::pin(async move {
            let bank = self.ask(|r| Cmd::Meters(id, r)).await??;
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
        Box::pin(async move { self.ask(|r| Cmd::Get(id, r)).await? })
    }
    fn stop(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>> {
        Box::pin(async move { self.ask(|r| Cmd::Stop(id, r)).await? })
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
}

fn input_status(a: studiocast_media::AudioSnapshot) -> studiocast_server::InputStatus {
    let finite = |x: f64| if x.is_finite() { x } else { -1.0 };
    let video = a.ingest.map(|i| {
        let v = a.video.clone().unwrap_or_default();
        studiocast_server::VideoInputStatus {
            source: i.source,
            signal_present: i.connected,
            last_packet_age_s: finite(i.last_packet_age_s),
            reconnects: i.reconnects,
            losses: i.losses,
            frames_in: i.frames_in,
            on_slate: v.on_slate,
            slate_frames: v.slate_frames,
            repeated_frames: v.repeated_frames,
            dropped_frames: v.dropped_frames,
            last_error: i.last_error,
        }
    });
    studiocast_server::InputStatus {
        silent_blocks: a.silent_blocks,
        video_lag_ms: a.video_lag_ms,
        video,
        recording: None,
        audio_source: a.source,
        audio_frames_in: a.frames_in,
        overruns: a.overruns,
        underruns: a.underruns,
        drift_ppm: a.drift_ppm,
        av_offset_ms: a.av_offset_ms,
        // JSON has no infinity: a source that never delivered reads -1.
        last_block_age_s: if a.last_block_age_s.is_finite() {
            a.last_block_age_s
        } else {
            -1.0
        },
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, mut urx: mpsc::UnboundedReceiver<Update>) {
        let mut shutting_down: Option<oneshot::Sender<()>> = None;
        loop {
            if shutting_down.is_some() && !self.sessions.values().any(|e| active(&e.info.state)) {
                if let Some(r) = shutting_down.take() {
                    let _ = r.send(());
                }
                return;
            }
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Shutdown(reply)) => {
                        let ids: Vec<String> = self.sessions.iter().filter(|(_, e)| active(&e.info.state)).map(|(k, _)| k.clone()).collect();
                        tracing::info!(sessions = ids.len(), "stopping all sessions");
                        for id in ids {
                            self.begin_stop(&id);
                        }
                        shutting_down = Some(reply);
                    }
                    Some(cmd) => self.handle(cmd).await,
                },
                Some(u) = urx.recv() => self.on_update(u).await,
            }
        }
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create(req, reply) => {
                let r = self.create(req).await;
                let _ = reply.send(r);
            }
            Cmd::List(reply) => {
                let _ = reply.send(self.sessions.values().map(|e| e.info.clone()).collect());
            }
            Cmd::Get(id, reply) => {
                let _ = reply.send(
                    self.sessions
                        .get(&id)
                        .map(|e| {
                            let mut info = e.info.clone();
                            info.inputs = e.pipeline.as_ref().map(|p| {
                                let mut s = input_status(p.audio_status());
                                s.recording = e.recording.as_ref().map(|(r, _)| {
                                    studiocast_server::RecordingStatus {
                                        recording: !r.stopped() && r.alarm().is_none(),
                                        alarm: r.alarm(),
                                        disk_free_mb: recording::free_mb(
                                            &self.store.session_dir(&id),
                                        )
                                        .unwrap_or(0),
                                    }
                                });
                                s
                            });
                            info
                        })
                        .ok_or(ControlError::SessionNotFound(id)),
                );
            }
            Cmd::Stop(id, reply) => {
                let Some(e) = self.sessions.get(&id) else {
                    let _ = reply.send(Err(ControlError::SessionNotFound(id)));
                    return;
                };
                if !matches!(e.info.state.as_str(), "starting" | "live" | "stopping") {
                    let _ = reply.send(Err(ControlError::Conflict(format!(
                        "session {id} is already {}",
                        e.info.state
                    ))));
                    return;
                }
                self.begin_stop(&id);
                if let Some(e) = self.sessions.get_mut(&id) {
                    e.waiters.push(reply);
                }
            }
            Cmd::ForceStop(id) => {
                if self
                    .sessions
                    .get(&id)
                    .is_some_and(|e| e.info.state == "stopping")
                {
                    tracing::warn!(%id, "pipeline did not drain in time; tearing it down");
                    self.teardown(&id).await;
                }
            }
            Cmd::Meters(id, reply) => {
                let r = match self.sessions.get(&id) {
                    None => Err(ControlError::SessionNotFound(id)),
                    Some(e) => match &e.pipeline {
                        Some(p) if active(&e.info.state) => Ok(p.meters()),
                        _ => Err(ControlError::Conflict(format!(
                            "session {id} is {}: meters exist while it runs",
                            e.info.state
                        ))),
                    },
                };
                let _ = reply.send(r);
            }
            Cmd::Pipeline(id, reply) => {
                let p = self
                    .sessions
                    .get(&id)
                    .and_then(|e| e.pipeline.as_ref())
                    .map(|p| p.pipeline().clone());
                let _ = reply.send(p);
            }
            Cmd::Shutdown(_) => {}
        }
    }

    fn begin_stop(&mut self, id: &str) {
        let Some(e) = self.sessions.get_mut(id) else {
            return;
        };
        if e.info.state == "stopping" {
            return;
        }
        e.info.state = "stopping".into();
        if let Some(p) = &e.pipeline {
            p.request_eos();
        }
        let _ = self.store.save(&e.info);
        let me = self.me.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(STOP_TIMEOUT).await;
            let _ = me.send(Cmd::ForceStop(id)).await;
        });
    }

    async fn create(&mut self, req: CreateSession) -> Result<SessionInfo, ControlError> {
        let spec = self
            .presets
            .get(&req.pipeline)
            .cloned()
            .ok_or_else(|| ControlError::PipelineNotFound(req.pipeline.clone()))?;
        let id = random_id();
        let span = tracing::info_span!("session", %id, pipeline = %req.pipeline);
        let _g = span.enter();
        recording::check_start(self.store.root(), &self.recording)
            .map_err(ControlError::Unavailable)?;
        let order = spec.audio.source.order();
        let method: DecoderMethod = self
            .spatial
            .method
            .parse()
            .map_err(ControlError::Internal)?;
        let hrtf = self.spatial.hrtf.clone();
        let rate = spec.audio.sample_rate;
        let filters = tokio::task::spawn_blocking(move || {
            crate::render::designed_filters(&hrtf, rate, &DesignOptions::new(method, order))
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?
        .map_err(|e| {
            ControlError::Unavailable(format!("cannot prepare the binaural renderer: {e:#}"))
        })?;
        let (etx, erx) = std::sync::mpsc::channel();
        // Building renders the slate and checks devices: off the runtime.
        let bspec = spec.clone();
        let mut pipeline =
            tokio::task::spawn_blocking(move || SessionPipeline::build(&bspec, &filters, etx))
                .await
                .map_err(|e| ControlError::Internal(e.to_string()))?
                .map_err(|e| {
                    ControlError::Unavailable(format!("cannot build pipeline '{}': {e}", spec.name))
                })?;
        // Only now the session gets a folder: a refused start leaves none.
        let dir = self.store.session_dir(&id).join("hls");
        std::fs::create_dir_all(&dir).map_err(|e| ControlError::Internal(e.to_string()))?;
        // Live inputs are recorded untouched next to the stream; the
        // program video of every session with video is kept too.
        let sdir = self.store.session_dir(&id);
        let state = Arc::new(RecordingState::default());
        let map = spec.audio.source.channel_map();
        if map.is_some() {
            pipeline.set_master(sdir.join("master.wav"), state.clone());
        }
        let device = match &spec.audio.source {
            studiocast_media::spec::AudioSource::Device { host, device, .. } => {
                serde_json::json!({ "host": host, "device": device })
            }
            studiocast_media::spec::AudioSource::Embedded { .. } => {
                serde_json::json!({ "embedded_in": spec.video.as_ref().map(|v| studiocast_media::ingest::IngestSpec::describe_source(&v.source)) })
            }
            _ => serde_json::json!({ "synthetic": true }),
        };
        let sidecar = Sidecar::create(
            sdir.join("master.json"),
            serde_json::json!({
                "title": req.title,
                "course": req.course,
                "pipeline": req.pipeline,
                "session": id,
                "audio_source": device,
                "audio_master": map.map(|_| "master.wav"),
                "channels": map.map(|m| m.channels),
                "sample_rate": rate,
                "channel_map": map.map(|m| serde_json::json!({
                    "ambisonic": m.ambisonic,
                    "objects": m.objects,
                    "bed": m.bed,
                    "stereo": m.stereo,
                })),
                "audio_format": "WAV/RF64, 32-bit float, untouched input samples",
                "video_master": spec.video.as_ref().map(|_| "program.mp4"),
                "video_format": "fragmented MP4, H.264 (the program as streamed)",
                "started_at": now(),
            }),
        );
        recording::watch_disk(
            sdir.clone(),
            self.recording.stop_below_mb,
            Arc::downgrade(&state),
        );
        let program = spec.video.as_ref().map(|_| Recording {
            video: sdir.join("program.mp4"),
            state: state.clone(),
        });
        let info = SessionInfo {
            id: id.clone(),
            state: "starting".into(),
            pipeline: req.pipeline.clone(),
            title: req.title,
            course: req.course,
            started_at: now(),
            ended_at: None,
            error: None,
            urls: SessionUrls::for_id(&id),
            inputs: None,
        };
        self.store
            .save(&info)
            .map_err(|e| ControlError::Internal(format!("{e:#}")))?;
        let updates = self.updates.clone();
        let wid = id.clone();
        let worker = std::thread::Builder::new()
            .name(format!("pack-{id}"))
            .spawn(move || worker::run(wid, dir, spec, erx, updates, program))
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        // Opening inputs can take seconds (an interface, a camera, a port).
        let (pipeline, started) = tokio::task::spawn_blocking(move || {
            let r = pipeline.start();
            (pipeline, r)
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        if let Err(e) = started {
            // Dropping the pipeline stops its threads and closes the event
            // channel, so the worker finalises and exits; the record says why.
            let msg = format!("cannot start pipeline: {e}");
            let _ = tokio::task::spawn_blocking(move || drop(pipeline)).await;
            // Not joined here: should it linger, it must not hold up the
            // reply. Its final update is ignored (the record is settled).
            drop(worker);
            let mut info = info;
            info.state = "failed".into();
            info.error = Some(msg.clone());
            info.ended_at = Some(now());
            let mut sidecar = sidecar;
            sidecar.finish(info.ended_at.as_deref().unwrap_or_default(), &state);
            let _ = self.store.save(&info);
            self.sessions.insert(id, Entry::settled(info));
            return Err(ControlError::Unavailable(msg));
        }
        tracing::info!(title = %info.title, "session started");
        self.sessions.insert(
            id,
            Entry {
                info: info.clone(),
                recording: Some((state, sidecar)),
                pipeline: Some(pipeline),
                worker: Some(worker),
                waiters: Vec::new(),
            },
        );
        Ok(info)
    }

    async fn on_update(&mut self, u: Update) {
        match u {
            Update::Live { id } => {
                if let Some(e) = self.sessions.get_mut(&id) {
                    if e.info.state == "starting" {
                        e.info.state = "live".into();
                        let _ = self.store.save(&e.info);
                    }
                }
            }
            Update::Ended { id } => self.finish(&id, None).await,
            Update::Failed { id, error } => {
                tracing::error!(%id, %error, "session failed");
                self.finish(&id, Some(error)).await
            }
        }
    }

    /// Tear the pipeline down; the worker then finalises the playlists and
    /// reports, which calls [`Actor::finish`].
    async fn teardown(&mut self, id: &str) {
        if let Some(p) = self.sessions.get_mut(id).and_then(|e| e.pipeline.take()) {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }

    async fn finish(&mut self, id: &str, error: Option<String>) {
        self.teardown(id).await;
        let Some(e) = self.sessions.get_mut(id) else {
            return;
        };
        if !active(&e.info.state) {
            // Already settled (a start that failed); nothing to change.
            return;
        }
        if let Some(w) = e.worker.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        e.info.state = if error.is_some() {
            "failed".into()
        } else {
            "ended".into()
        };
        e.info.error = error;
        e.info.ended_at = Some(now());
        if let Some((state, mut sidecar)) = e.recording.take() {
            sidecar.finish(e.info.ended_at.as_deref().unwrap_or_default(), &state);
            if let Some(a) = state.alarm() {
                let note = format!("recording stopped early: {a}");
                e.info.error = Some(match e.info.error.take() {
                    Some(x) => format!("{x}; {note}"),
                    None => note,
                });
            }
        }
        let _ = self.store.save(&e.info);
        tracing::info!(%id, state = %e.info.state, "session finished");
        for w in e.waiters.drain(..) {
            let _ = w.send(Ok(e.info.clone()));
        }
    }
}

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
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer::prelude::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    async fn wait_state(sup: &Supervisor, id: &str, want: &str) -> SessionInfo {
        for _ in 0..200 {
            let i = sup.get(id.to_string()).await.unwrap();
            if i.state == want {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("session {id} never reached {want}");
    }

    /// An element error fails that session (with the message) and the
    /// supervisor keeps serving: the next session starts and ends cleanly.
    #[test]
    fn element_error_fails_the_session_and_the_daemon_carries_on() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            studiocast_media::init().unwrap();
            let data = std::env::temp_dir().join(format!("studiocast-sup-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&data);
            std::env::set_var("STUDIOCAST_CACHE_DIR", data.join("cache"));
            let store = Arc::new(FileStore::new(&data).unwrap());
            let presets = load_presets(&repo().join("pipelines")).unwrap();
            let sup = Supervisor::spawn(
                presets,
                store,
                SpatialConfig::default(),
                RecordingConfig {
                    min_free_mb: 1,
                    stop_below_mb: 0,
                },
            )
            .unwrap();
            let req = |t: &str| CreateSession {
                pipeline: "demo".into(),
                title: t.into(),
                course: String::new(),
            };
            let a = sup.create(req("will fail")).await.unwrap();
            wait_state(&sup, &a.id, "live").await;
            let p = sup.pipeline(&a.id).await.expect("running pipeline");
            let enc = p
                .iterate_elements()
                .into_iter()
                .flatten()
                .find(|e| e.name().starts_with("x264enc"))
                .unwrap();
            gstreamer::element_error!(
                enc,
                gstreamer::StreamError::Encode,
                ["simulated encoder failure"]
            );
            let failed = wait_state(&sup, &a.id, "failed").await;
            let msg = failed.error.unwrap_or_default();
            assert!(msg.contains("simulated encoder failure"), "{msg}");
            assert!(failed.ended_at.is_some());
            // The playlists were still finalised.
            let live = std::fs::read_to_string(
                data.join("sessions")
                    .join(&a.id)
                    .join("hls/video/live.m3u8"),
            )
            .unwrap();
            assert!(live.trim_end().ends_with("#EXT-X-ENDLIST"));
            assert!(matches!(
                sup.stop(a.id.clone()).await,
                Err(ControlError::Conflict(_))
            ));
            // The daemon carries on.
            let b = sup.create(req("next one")).await.unwrap();
            wait_state(&sup, &b.id, "live").await;
            let ended = sup.stop(b.id.clone()).await.unwrap();
            assert_eq!(ended.state, "ended");
            sup.shutdown().await;
        });
    }
}
