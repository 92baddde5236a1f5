//! studiocast-server: the HTTP layer.
//!
//! * control API (`/api/v1/…`, bearer token) speaking to the session
//!   supervisor only through the [`SessionControl`] trait;
//! * HLS origin (`/live/{id}/…`, `/vod/{id}/…`) serving the packager's files
//!   with the right content types, cache headers and CORS;
//! * `/healthz`.
//!
//! It knows nothing about GStreamer or how media is made.

mod api;
mod meters;
mod origin;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

pub use api::ApiError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    /// starting | live | stopping | ended | failed | interrupted
    pub state: String,
    pub pipeline: String,
    pub title: String,
    pub course: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub urls: SessionUrls,
    /// Live health of a running session's inputs (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputStatus>,
}

/// What a technician watches on a running session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct InputStatus {
    /// Audio source: "synthetic" or the interface's host and name.
    pub audio_source: String,
    /// Frames delivered by the interface so far.
    pub audio_frames_in: u64,
    /// Callbacks that dropped frames because the ring was full.
    pub overruns: u64,
    /// Blocks padded with silence because the ring ran dry.
    pub underruns: u64,
    /// The interface's clock error as the drift loop estimates it.
    pub drift_ppm: f64,
    /// Deviation of the capture delay from its target (the A/V offset the
    /// drift loop is correcting), milliseconds.
    pub av_offset_ms: f64,
    /// Seconds since the last audio block left the input (signal present
    /// when small).
    pub last_block_age_s: f64,
    /// Blocks of silence played because the input went quiet.
    #[serde(default)]
    pub silent_blocks: u64,
    /// Encoder load: how far the encoded video trails the wall clock at
    /// each fragment's end, ms. Steady is fine; rising means overload.
    #[serde(default)]
    pub video_lag_ms: i64,
    /// A network or capture-card input (SRT, V4L2, DeckLink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoInputStatus>,
    /// Archival recording of this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingStatus>,
}

/// Health of a video input that can come and go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct VideoInputStatus {
    pub source: String,
    pub signal_present: bool,
    /// Seconds since the last frame or sample block (-1: never).
    pub last_packet_age_s: f64,
    /// Times the source came back after a loss.
    pub reconnects: u64,
    pub losses: u64,
    pub frames_in: u64,
    /// The program shows the slate now.
    pub on_slate: bool,
    pub slate_frames: u64,
    /// Output ticks that repeated the previous frame (source slower).
    pub repeated_frames: u64,
    /// Decoded frames never shown (source faster than the program).
    pub dropped_frames: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RecordingStatus {
    pub recording: bool,
    /// Why recording stopped early (disk full, write error).
    pub alarm: Option<String>,
    pub disk_free_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionUrls {
    pub hls: String,
    pub vod: String,
}

impl SessionUrls {
    pub fn for_id(id: &str) -> Self {
        SessionUrls {
            hls: format!("/live/{id}/master.m3u8"),
            vod: format!("/vod/{id}/master.m3u8"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub pipeline: String,
    pub title: String,
    #[serde(default)]
    pub course: String,
}

/// An input device as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceEntry {
    /// "audio" or "video".
    pub kind: String,
    /// Backend: ALSA, JACK, …
    pub host: String,
    pub name: String,
    pub max_input_channels: u16,
    pub sample_rates: Vec<u32>,
    pub available: bool,
    /// Why an expected device cannot be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Errors the supervisor reports; each maps to one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error("session '{0}' not found")]
    SessionNotFound(String),
    #[error("pipeline '{0}' not found")]
    PipelineNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// One channel's level over the last tenth of a second.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelMeter {
    /// "in 3", "bus ACN 0", "binaural L", …
    pub name: String,
    pub peak_dbfs: f32,
    pub rms_dbfs: f32,
    pub clip: bool,
}

/// What the meters WebSocket sends, about ten times a second.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MeterFrame {
    /// Increases with every reading.
    pub seq: u64,
    pub channels: Vec<ChannelMeter>,
}

/// Live levels of one running session.
pub trait MeterSource: Send + Sync {
    /// The latest reading (`None` before the first).
    fn read(&self) -> Option<MeterFrame>;
    /// `false` once the session has stopped.
    fn running(&self) -> bool;
}

/// What the HTTP layer needs from the session supervisor.
pub trait SessionControl: Send + Sync + 'static {
    /// Levels of a running session.
    fn meters(&self, id: String) -> BoxFuture<'_, Result<Arc<dyn MeterSource>, ControlError>>;
    fn create(&self, req: CreateSession) -> BoxFuture<'_, Result<SessionInfo, ControlError>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, ControlError>>;
    fn get(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>>;
    fn stop(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>>;
    fn devices(&self) -> BoxFuture<'_, Result<Vec<DeviceEntry>, ControlError>>;
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub api_token: String,
    /// Folder holding `sessions/{id}/hls/…`.
    pub data_dir: PathBuf,
    /// Origins allowed to fetch playback routes; `*` allows any.
    pub cors_origins: Vec<String>,
}

pub struct App {
    pub config: ServerConfig,
    pub control: Arc<dyn SessionControl>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

pub fn router(config: ServerConfig, control: Arc<dyn SessionControl>) -> Router {
    let cors = origin::cors_layer(&config.cors_origins);
    let state = AppState(Arc::new(App { config, control }));
    let api = Router::new()
        .route("/api/v1/sessions", post(api::create).get(api::list))
        .route("/api/v1/sessions/{id}", get(api::get_one))
        .route("/api/v1/sessions/{id}/stop", post(api::stop))
        .route("/api/v1/devices", get(api::devices))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ))
        // Browsers cannot set headers on a WebSocket: this route also takes
        // the token as `?token=`, and checks it itself.
        .route("/api/v1/sessions/{id}/meters", get(meters::socket));
    let playback = Router::new()
        .route("/live/{id}/{*path}", get(origin::live))
        .route("/vod/{id}/{*path}", get(origin::vod))
        .layer(cors);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(api)
        .merge(playback)
        .fallback(api::not_found)
        .with_state(state)
}
