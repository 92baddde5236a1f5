//! studiocast-server: the HTTP layer.
//!
//! * control API (`/api/v1/…`, bearer token) speaking to the session
//!   supervisor only through the [`SessionControl`] trait;
//! * meters WebSocket (`/api/v1/sessions/{id}/meters`);
//! * HLS origin (`/live/{id}/…`, `/vod/{id}/…`): live renditions from the
//!   packager's in-memory [`LiveView`]s (low-latency HLS with blocking
//!   reloads, delta updates and preload hints), everything else from its
//!   files, with the right content types, cache headers and CORS;
//! * `/healthz` and `/readyz` for load balancers and systemd.
//!
//! It knows nothing about GStreamer or how media is made. [`router`] builds
//! the routes; [`serve`] runs them on a listener with the connection limits
//! below, over plain HTTP/1.1 or, with [`ServeOptions::tls`], HTTPS with
//! HTTP/2. Run the router with [`serve`], not `axum::serve`, which has no
//! header timeout, no connection cap and an unbounded graceful shutdown.
//!
//! # Limits and timeouts
//!
//! | what | default | set in | when exceeded |
//! |---|---|---|---|
//! | request headers (also a keep-alive connection's idle time) | 10 s | [`ServeOptions::header_read_timeout`] | connection closed |
//! | TLS handshake (then the headers get as long again) | the header timeout | [`ServeOptions::header_read_timeout`] | connection closed |
//! | HTTP/2 connection with no stream running (preface never sent included) | the header timeout | [`ServeOptions::header_read_timeout`] | connection closed; HTTP/2 pings (same interval) close a peer that vanished mid-stream |
//! | HTTP/2 streams per connection | 200 | — | the client waits (`MAX_CONCURRENT_STREAMS`) |
//! | open connections | 1024 by default here (the daemon sets 4096, `server.max_connections`), capped by the descriptor limit ([`connection_budget`]) | [`ServeOptions::max_connections`] | the oldest idle connection is closed; if none is idle, the new one is |
//! | shutdown | 10 s | [`ServeOptions::shutdown_grace`] | remaining connections closed, [`serve`] returns |
//! | a write without progress (client stopped reading) | 30 s | [`ServeOptions::write_stall_timeout`] | connection closed |
//! | control API request | 30 s ([`API_TIMEOUT`]; a stop drains for up to 15 s) | [`ServerConfig::api_timeout`] | 504 `timeout` |
//! | playback request, until the response head | 10 s ([`PLAYBACK_TIMEOUT`]) | [`ServerConfig::playback_timeout`] | 504 |
//! | blocking playlist reload, or a request for the hinted part | 3 × the target duration, and 0.5 s less than the playback timeout | [`ServerConfig::playback_timeout`] | 503 (never the unchanged playlist) |
//! | `_HLS_msn` ahead of the last part's segment | 2 segments | — | 400 at once |
//! | TLS certificate or key file | 1 MiB ([`MAX_PEM_BYTES`]) | — | [`load_tls`] fails |
//! | meters WebSocket | none: long-lived by design; a client that stops reading is dropped after 5 s | — | — |
//! | supervisor health answer | 2 s ([`HEALTH_TIMEOUT`]) | [`ServerConfig::health_timeout`] | not live (503) |
//! | control API body | 64 KiB ([`API_BODY_LIMIT`]) | [`ServerConfig::api_body_limit`] | 413 `payload_too_large` |
//! | job upload (`POST /api/v1/jobs`, multipart): size | what [`JobControl::upload_target`] allows (the daemon's `[jobs] max_upload_mb`, less when the disk is short) | the daemon | 413 before the body is read when `Content-Length` says so, else where it passes; partial file removed |
//! | job upload: a body that stops coming | 30 s ([`upload::IDLE`]) per piece; no total timeout (an upload may take minutes) | — | 400, partial file removed |
//! | title / course | 1–200 / 0–200 characters, no control characters | — | 400 `bad_request` |
//!
//! # Control API
//!
//! Every control route, the meters WebSocket included, needs the token, and
//! the supervisor is never called before it is checked. It comes as
//! `Authorization: Bearer <token>` (scheme in any case, one or more spaces);
//! the WebSocket also takes it as the subprotocol pair
//! `studiocast.bearer, <token>` or as `?token=`. A token is hashed (SHA-256)
//! and compared with every configured hash in constant time, so neither
//! which token matched nor its length leaks through timing; each route
//! needs one scope ([`auth::ROUTES`]). An empty configured token admits
//! nobody. Errors are `{"code", "message"}` with the
//! stable codes of [`ApiError`]; internal causes are logged, never returned.
//!
//! # Health
//!
//! Both routes are open (no token), answer `Cache-Control: no-store` and say
//! nothing about sessions: `/healthz` is 200 `{"status":"ok"}` while the
//! supervisor answers [`SessionControl::health`] as live within the health
//! timeout, else 503 `{"status":"unavailable"}`; `/readyz` is 200
//! `{"status":"ready"}` when a session could start now, else 503
//! `{"status":"not_ready","reasons":[…]}`.
//!
//! # Live playback from memory
//!
//! For `/live/{id}/{rendition}/…` the origin asks [`SessionControl::live`]
//! (a synchronous registry lookup) for the rendition's [`LiveView`] and
//! answers from it; with no view (a finished session, a standard-latency
//! stream, after a restart), or for a file the view does not hold (an older
//! DVR segment), it serves the disk as below. `/live/{id}/master.m3u8` is
//! always the disk's.
//!
//! * Low-latency views (`part_target` set) honour the delivery directives
//!   of RFC 8216bis 6.2.5: `_HLS_msn=M` (with `_HLS_part=P`) waits until
//!   the view holds segment M (part P of it), on the view's `watch` channel
//!   (no polling: 2000 waiting requests used about 0.1 ms of CPU in 2 s),
//!   then answers; after the limit above, 503. An ended view answers at
//!   once; a publisher that goes away without ending gives 503 at once.
//!   `_HLS_msn` more than two segments ahead, `_HLS_part` without
//!   `_HLS_msn`, a malformed or repeated number, or an `_HLS_skip` other
//!   than `YES`/`v2` is 400 at once. `_HLS_skip=YES` (or `v2`, the same
//!   here: we send no date ranges), alone or with the blocking directives,
//!   answers the view's delta update when it has one, else the full
//!   playlist. Other query parameters are ignored.
//! * Standard views (no parts) advertise no `CAN-BLOCK-RELOAD`, so the
//!   blocking directives are ignored there (RFC 8216bis: a server ignores a
//!   directive it does not support, as any file server would): the current
//!   playlist at once, whatever the query; a delta update only if the view
//!   has one.
//! * The part the view's preload hint names (or the next segment's first
//!   part, which the muxer may start instead) waits the same way until it
//!   is published, then 200 with its bytes; if the view moves past it
//!   without it, the disk answers (404: parts are in memory only); after
//!   the limit, 503. Any other unknown file goes to the disk at once.
//! * Headers: playlists `application/vnd.apple.mpegurl` with `no-cache`,
//!   or `public, max-age=N` for an answer to `_HLS_msn`, N being three part
//!   targets rounded up (1 s for 0.333 s parts; at most 10): such an answer
//!   is keyed by the directive and stays right as later parts come, and a
//!   copy that old never takes a player past its PART-HOLD-BACK. Parts and
//!   segments `video/iso.segment`, init segments `video/mp4`, both
//!   `public, max-age=31536000, immutable` with a strong `ETag` from the
//!   name and length (`If-None-Match` 304, `If-Range`) and single `Range`
//!   requests (206, 416). Every answer has `Content-Length`, and CORS as
//!   below; 400 and 503 are `text/plain` with `no-store`.
//!
//! # TLS and HTTP/2
//!
//! [`load_tls`] reads a PEM certificate chain and key (errors name the file:
//! missing, too large, not PEM, no certificate, no key, a key that is not
//! the certificate's) into a [`TlsConfig`] for [`ServeOptions::tls`]. Then
//! [`serve`] speaks HTTPS only, with rustls (ring), offering ALPN `h2` and
//! `http/1.1`: HTTP/2 when the client takes `h2`, else HTTP/1.1 (WebSockets,
//! such as the meters, need HTTP/1.1; browsers open them that way). Every
//! limit above holds for both, and the shutdown ends HTTP/2 streams with
//! their connections. Without TLS, plain HTTP/1.1 as before.
//!
//! # Origin guarantees
//!
//! * A request path maps to a file only through [`studiocast_hls::resolve`]
//!   (a fixed set of names); anything else, encoded traversal included, is
//!   404 without touching the file system.
//! * Below `data_dir/sessions/{id}/` no symlink is followed: the session
//!   folder, `hls/`, the rendition folder and the file are each checked with
//!   `symlink_metadata`, and only a regular file is served (a FIFO or device
//!   placed there would block a thread). A symlinked `data_dir` is the
//!   operator's choice and works.
//! * Files are served by tower-http's `ServeFile`: `Range` (206, 416),
//!   `HEAD`, `If-Modified-Since`; on top, a strong `ETag` (length and
//!   modification time) with `If-None-Match` (304) and `If-Range`.
//! * Playlists are `application/vnd.apple.mpegurl` (live `no-cache`, VOD
//!   `public, max-age=300`), init segments `video/mp4` and media segments
//!   `video/iso.segment`, both `public, max-age=31536000, immutable`.
//! * CORS follows [`ServerConfig::cors_origins`] and exposes
//!   `Content-Length`, `Content-Range`, `Accept-Ranges` and `ETag`.

pub mod access;
mod api;
pub mod audit;
pub mod auth;
mod connection;
mod conns;
mod console;
mod directives;
mod embed;
pub mod events;
mod health;
pub mod hrtf;
mod jobs;
mod live;
mod memfile;
mod meters;
pub mod metrics;
pub mod openapi;
mod origin;
mod playback;
mod serve;
mod tls;
mod types;
pub mod upload;
mod viewers;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

pub use access::{PlaybackKey, Visibility};
pub use api::ApiError;
pub use auth::{Caller, Scope, TokenSpec, ROUTES};
pub use jobs::{JobControl, JobInfo, JobOutputs, JobQuery, UploadTarget, Uploaded, MAX_PAGE};
pub use serve::{
    bind, connection_budget, raise_fd_limit, serve, ServeOptions, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE, DEFAULT_WRITE_STALL_TIMEOUT, FD_RESERVE,
    LISTEN_BACKLOG, MIN_CONNECTIONS,
};
pub use studiocast_hls::{LiveView, PartRef};
pub use tls::{load_tls, TlsConfig, TlsError, MAX_PEM_BYTES};
pub use types::{
    integral, ChannelMeter, CreateSession, DeviceEntry, DiskUse, Health, InputStatus, MeterFrame,
    PresetDevice, PresetInfo, RecordingStatus, SessionInfo, SessionState, SessionUrls,
    VideoInputStatus,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    Unavailable(String),
    /// A request the daemon refuses (a job spec it cannot run).
    #[error("{0}")]
    BadRequest(String),
    /// Another kind of record that is not there (a job).
    #[error("{0}")]
    NotFound(String),
    /// An upload over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("internal error")]
    Internal(String),
}

/// Live levels of one running session.
pub trait MeterSource: Send + Sync {
    /// The latest reading (`None` before the first).
    fn read(&self) -> Option<MeterFrame>;
    /// `false` once the session has stopped.
    fn running(&self) -> bool;
}

/// One rendition's publication counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub rendition: String,
    pub segments: u64,
    pub parts: u64,
}

/// What the HTTP layer needs from the session supervisor.
pub trait SessionControl: Send + Sync + 'static {
    /// Liveness (`deep` false: the supervisor answers, nothing else is
    /// checked, so a slow disk never reads as a dead daemon) or readiness
    /// (`deep` true: also the disk and the data folder, within the health
    /// timeout). Must answer promptly even while a session starts or stops.
    fn health(&self, deep: bool) -> BoxFuture<'_, Health>;
    /// Levels of a running session.
    fn meters(&self, id: String) -> BoxFuture<'_, Result<Arc<dyn MeterSource>, ControlError>>;
    fn create(&self, req: CreateSession) -> BoxFuture<'_, Result<SessionInfo, ControlError>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, ControlError>>;
    fn get(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>>;
    fn stop(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>>;
    fn devices(&self) -> BoxFuture<'_, Result<Vec<DeviceEntry>, ControlError>>;
    /// The presets a session can start with, sorted by name.
    fn presets(&self) -> Vec<PresetInfo> {
        Vec::new()
    }
    /// Every session's disk use, and what retention would remove now.
    fn disk_use(&self) -> BoxFuture<'_, Result<Vec<DiskUse>, ControlError>> {
        Box::pin(async { Err(ControlError::Unavailable("no retention here".into())) })
    }
    /// Keep a session whole (`true`) whatever the retention rules say, or
    /// let them apply again.
    fn pin(&self, id: String, pinned: bool) -> BoxFuture<'_, Result<(), ControlError>> {
        let _ = (id, pinned);
        Box::pin(async { Err(ControlError::Unavailable("no retention here".into())) })
    }
    /// The live view of one rendition of a running session, from the
    /// daemon's registry: synchronous and immediate (no supervisor round
    /// trip), since every playlist and part request asks. `None` when the
    /// session or rendition publishes none (finished, standard latency
    /// files only, after a restart): the origin then serves the disk.
    fn live(
        &self,
        id: &str,
        rendition: &str,
    ) -> Option<tokio::sync::watch::Receiver<Arc<LiveView>>>;
    /// The job queue, when this daemon runs one.
    fn jobs(&self) -> Option<&dyn JobControl> {
        None
    }
    /// Segments and parts published so far by each rendition of a running
    /// session (for `/metrics`); empty when it publishes nothing live.
    fn published(&self, _id: &str) -> Vec<Published> {
        Vec::new()
    }
    /// Session, job and alarm changes (`GET /api/v1/events`), when this
    /// daemon publishes them.
    fn events(&self) -> Option<&events::EventBus> {
        None
    }
    /// The spatial engine's filters for the player, when this daemon has
    /// them.
    fn filters(&self) -> Option<&dyn hrtf::FilterSource> {
        None
    }
}

/// Control API requests that take longer get 504 `timeout`. A stop drains
/// the pipeline for up to 15 s, so this leaves it room.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);
/// Playback requests that have no response head by then get 504. Only the
/// head is bounded: a large segment may take longer to stream.
pub const PLAYBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// A supervisor that does not answer a health check in this time is
/// reported as not live.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest control API body; a session request is a few hundred bytes.
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// What the router needs to know. [`ServerConfig::new`] fills in the
/// defaults; set the other fields to override them.
#[derive(Clone)]
pub struct ServerConfig {
    /// The control token, with every scope; empty: none (only `tokens`).
    pub api_token: String,
    /// Named tokens with their scopes (`[[auth.token]]`).
    pub tokens: Vec<auth::TokenSpec>,
    /// Folder holding `sessions/{id}/hls/…`.
    pub data_dir: PathBuf,
    /// Origins allowed to fetch playback routes; `*` allows any.
    pub cors_origins: Vec<String>,
    /// See [`API_TIMEOUT`].
    pub api_timeout: Duration,
    /// See [`PLAYBACK_TIMEOUT`].
    pub playback_timeout: Duration,
    /// See [`HEALTH_TIMEOUT`].
    pub health_timeout: Duration,
    /// See [`API_BODY_LIMIT`].
    pub api_body_limit: usize,
    /// Folder holding job lessons (`{job id}/hls/…`) when it is not the
    /// data folder's `sessions/` (a folder shared by several daemons).
    pub jobs_dir: Option<PathBuf>,
    /// Signs and checks private lessons' playback tokens; without it no
    /// private lesson plays and no token is minted.
    pub playback_key: Option<PlaybackKey>,
    /// Origins that embed the player (the Campus, the Hub): they alone may
    /// frame a private lesson, and the player's API talks only to them.
    pub embed_origins: Vec<String>,
    /// The daemon's public address (`https://media.example.org`, a path
    /// prefix allowed) for the absolute URLs of oEmbed; else the request's
    /// `Host`.
    pub public_url: Option<String>,
    /// The listener speaks HTTPS (absolute URLs are built with it).
    pub https: bool,
}

impl ServerConfig {
    /// Defaults for everything but the token and the data folder; CORS
    /// allows any origin.
    pub fn new(api_token: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            api_token: api_token.into(),
            data_dir: data_dir.into(),
            ..ServerConfig::default()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_token: String::new(),
            tokens: Vec::new(),
            data_dir: PathBuf::new(),
            cors_origins: vec!["*".into()],
            api_timeout: API_TIMEOUT,
            playback_timeout: PLAYBACK_TIMEOUT,
            health_timeout: HEALTH_TIMEOUT,
            api_body_limit: API_BODY_LIMIT,
            jobs_dir: None,
            playback_key: None,
            embed_origins: Vec::new(),
            public_url: None,
            https: false,
        }
    }
}

// By hand, so that the token never reaches a log through `{:?}`.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("api_token", &"<redacted>")
            .field("tokens", &self.tokens)
            .field("data_dir", &self.data_dir)
            .field("cors_origins", &self.cors_origins)
            .field("api_timeout", &self.api_timeout)
            .field("playback_timeout", &self.playback_timeout)
            .field("health_timeout", &self.health_timeout)
            .field("api_body_limit", &self.api_body_limit)
            .field("jobs_dir", &self.jobs_dir)
            .field("playback_key", &self.playback_key)
            .field("embed_origins", &self.embed_origins)
            .field("public_url", &self.public_url)
            .field("https", &self.https)
            .finish()
    }
}

pub struct App {
    pub config: ServerConfig,
    pub control: Arc<dyn SessionControl>,
    tokens: auth::Tokens,
    audit: audit::AuditLog,
    metrics: metrics::HttpMetrics,
    access: access::AccessCache,
    hrtf: hrtf::HrtfCache,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

/// Every route: control API, meters WebSocket, origin, health. Serve it with
/// [`serve`].
pub fn router(config: ServerConfig, control: Arc<dyn SessionControl>) -> Router {
    routers(config, control).0
}

/// The router, and a second one that serves `GET /metrics` alone and
/// without a token: for `[server] metrics_listen`, a scrape address kept
/// apart from the public one. Both share one state (the same counters).
pub fn routers(config: ServerConfig, control: Arc<dyn SessionControl>) -> (Router, Router) {
    let cors = origin::cors_layer(&config.cors_origins);
    let api_timeout =
        TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, config.api_timeout);
    let playback_timeout =
        TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, config.playback_timeout);
    let body_limit = DefaultBodyLimit::max(config.api_body_limit);
    let tokens = auth::Tokens::new(&config.api_token, &config.tokens);
    // (No data folder: a router made for a test; the trail stays in memory.)
    let audit = audit::AuditLog::open(
        (!config.data_dir.as_os_str().is_empty()).then_some(config.data_dir.as_path()),
    );
    let state = AppState(Arc::new(App {
        config,
        control,
        tokens,
        audit,
        metrics: metrics::HttpMetrics::default(),
        access: access::AccessCache::default(),
        hrtf: hrtf::HrtfCache::default(),
    }));
    // `layer` wraps the routes added before it, outermost last: the token is
    // checked before anything else runs, then the body limit and timeout.
    let api = Router::new()
        .route("/api/v1/sessions", post(api::create).get(api::list))
        .route("/api/v1/sessions/{id}", get(api::get_one))
        .route("/api/v1/sessions/{id}/stop", post(api::stop))
        .route("/api/v1/devices", get(api::devices))
        .route("/api/v1/presets", get(api::presets))
        .route("/api/v1/retention", get(api::disk_use))
        .route(
            "/api/v1/sessions/{id}/pin",
            axum::routing::put(api::pin).delete(api::unpin),
        )
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/events", get(events::stream))
        .route("/metrics", get(metrics::scrape))
        .route("/api/v1/jobs/{id}", get(jobs::get_one).delete(jobs::cancel))
        .route(
            "/api/v1/sessions/{id}/playback-token",
            post(playback::mint_for_session),
        )
        .route(
            "/api/v1/jobs/{id}/playback-token",
            post(playback::mint_for_job),
        )
        .layer(api_timeout)
        // Uploads take minutes: these two apply the timeout themselves.
        .route("/api/v1/jobs", post(jobs::submit).get(jobs::list))
        .layer(body_limit)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // Browsers cannot set headers on a WebSocket: this route also takes
        // the token from a subprotocol or `?token=`, and checks it itself.
        // It stays out of the request timeout: the socket is long-lived by
        // design (the timeout would only bound the time to the 101 answer,
        // but keeping it off says so plainly).
        .route("/api/v1/sessions/{id}/meters", get(meters::socket))
        .layer(axum::middleware::map_response(api::json_errors));
    let playback = Router::new()
        .route("/live/{id}/{*path}", get(origin::live))
        .route("/vod/{id}/{*path}", get(origin::vod))
        .layer(playback_timeout)
        .layer(cors);
    let viewer = Router::new()
        .route("/embed/{id}", get(embed::page))
        .route("/player/{file}", get(embed::asset))
        .route("/oembed", get(embed::oembed))
        .route("/console", get(console::page))
        .route("/console/{file}", get(console::asset))
        .route("/api/v1/hrtf/{file}", get(hrtf::filters))
        .layer(playback_timeout);
    let main = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/openapi.json", get(openapi::document_route))
        .merge(api)
        .merge(playback)
        .merge(viewer)
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state.clone());
    let scrape = Router::new()
        .route("/metrics", get(metrics::scrape))
        .with_state(state);
    (main, scrape)
}
