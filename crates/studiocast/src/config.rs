//! Daemon and CLI configuration: one TOML file (unknown keys rejected),
//! overlaid by `STUDIOCAST_*` environment variables and then CLI flags.
//! This module is a leaf: the daemon, the renderer and the filter designer
//! read it; it reads none of them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Where `serve` and `render` look when no `--config` is given.
pub const DEFAULT_CONFIG: &str = "config/studiocast.toml";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub spatial: SpatialConfig,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub recording: RecordingConfig,
    #[serde(default)]
    pub jobs: JobsSection,
    /// Named tokens with scopes (`[[auth.token]]`).
    #[serde(default)]
    pub auth: crate::auth::AuthSection,
    /// Ended sessions' files removed by age (`[retention]`).
    #[serde(default)]
    pub retention: crate::daemon::retention::RetentionConfig,
}

/// Transcoding jobs (`/api/v1/jobs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    /// Jobs running at once, each in its own worker at a lower CPU
    /// priority than live sessions. 0: this daemon runs no jobs (the API
    /// answers 503). One on a 2-core machine.
    #[serde(default = "one")]
    pub workers: usize,
    /// A job's `path` must lie inside this folder (no `..`, no symlink out
    /// of it). Unset: path jobs are refused.
    #[serde(default)]
    pub import_dir: Option<PathBuf>,
    /// Receivers of job-end events: a signed JSON POST to each when a job
    /// succeeds, fails or is cancelled, retried for up to a day.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// The queue: unset, SQLite in the data folder (one daemon);
    /// `postgres://user@host:port/db`, one queue for several daemons
    /// (with `shared_dir`).
    #[serde(default)]
    pub database: Option<String>,
    /// Where lessons (`sessions/{job id}/hls`) and uploads (`uploads/`)
    /// go: a folder every daemon on a shared queue sees at the same path
    /// (NFS, say). Default: the data folder.
    #[serde(default)]
    pub shared_dir: Option<PathBuf>,
    /// Largest upload (`POST /api/v1/jobs` with a file), MiB. A longer
    /// request is refused before it is read (413), or cut off there.
    #[serde(default = "default_max_upload_mb")]
    pub max_upload_mb: u64,
    /// Key of the events' HMAC-SHA256 signature (at least 16 characters),
    /// required with `webhooks`. Empty: `STUDIOCAST_WEBHOOK_SECRET`.
    #[serde(default)]
    pub webhook_secret: String,
    /// The origin as viewers and the Campus reach it
    /// (`https://media.example.org`): events give output URLs under it.
    /// Unset: paths (`/vod/{id}/master.m3u8`).
    #[serde(default)]
    pub public_url: Option<String>,
}

fn one() -> usize {
    1
}

/// 16 GiB: an hour of 16 channels of 32-bit float at 48 kHz is 11 GB.
fn default_max_upload_mb() -> u64 {
    16 * 1024
}

/// An absolute http(s) URL with a host (`key` names it: `[jobs] webhooks`).
fn http_url(key: &str, url: &str) -> Result<()> {
    let key = if key.starts_with('[') {
        key.to_string()
    } else {
        format!("[jobs] {key}")
    };
    let uri: hyper::http::Uri = url
        .parse()
        .with_context(|| format!("{key}: {url:?} is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!("{key}: {url:?} must be an http:// or https:// URL with a host");
    }
    Ok(())
}

/// A browser origin: scheme, host and port, nothing more
/// (`https://campus.example.org`), as CSP and postMessage compare them.
fn web_origin(key: &str, origin: &str) -> Result<()> {
    http_url(key, origin)?;
    let uri: hyper::http::Uri = origin.parse()?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") || origin.ends_with('/') {
        bail!("{key}: {origin:?} must be an origin (scheme://host[:port]), without a path or a trailing slash");
    }
    // As browsers write it (CSP and postMessage compare the text): lower
    // case, no default port.
    let default_port = matches!(
        (uri.scheme_str(), uri.port_u16()),
        (Some("http"), Some(80)) | (Some("https"), Some(443))
    );
    if origin != origin.to_ascii_lowercase() || default_port {
        bail!("{key}: {origin:?}: write it as a browser does, in lower case and without a default port");
    }
    Ok(())
}

impl JobsSection {
    fn validate(&self) -> Result<()> {
        if let Some(db) = &self.database {
            if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
                bail!("[jobs] database = {db:?}: a postgres:// URL (unset: SQLite in the data folder)");
            }
        }
        if self.max_upload_mb == 0 {
            bail!("[jobs] max_upload_mb = 0 (at least 1)");
        }
        for url in &self.webhooks {
            http_url("webhooks", url)?;
        }
        if !self.webhooks.is_empty() && self.webhook_secret.len() < 16 {
            bail!(
                "[jobs] webhooks need webhook_secret (or STUDIOCAST_WEBHOOK_SECRET) of at least 16 characters: receivers check events with it"
            );
        }
        if let Some(u) = &self.public_url {
            http_url("public_url", u)?;
        }
        Ok(())
    }
}

impl Default for JobsSection {
    fn default() -> Self {
        JobsSection {
            workers: one(),
            import_dir: None,
            webhooks: Vec::new(),
            database: None,
            shared_dir: None,
            max_upload_mb: default_max_upload_mb(),
            webhook_secret: String::new(),
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Session records and media.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Session presets (`*.toml`).
    #[serde(default = "default_pipelines")]
    pub pipelines_dir: PathBuf,
    /// Bearer token for the control API. Empty: `STUDIOCAST_API_TOKEN`, or a
    /// random one printed at start.
    #[serde(default)]
    pub api_token: String,
    /// Origins allowed to embed playback (CORS); "*" allows any.
    #[serde(default = "default_cors")]
    pub cors_origins: Vec<String>,
    /// Sessions that may run at once; a start beyond it gets 503. 0: one
    /// per CPU core (a 720p session with its spatial render takes about a
    /// third of a core here; more than this and the encoders fall behind).
    #[serde(default)]
    pub max_sessions: usize,
    /// HTTP connections held at once (also capped by the file-descriptor
    /// limit); at the cap the oldest idle connection makes room.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A second listen address serving `GET /metrics` alone, without a
    /// token (for a Prometheus on the studio network); unset: `/metrics`
    /// only on the main address, with a token of scope `metrics`.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Receivers of alarm events (a session's alarm raised or cleared),
    /// signed with `[jobs] webhook_secret` as job events are.
    #[serde(default)]
    pub alarm_webhooks: Vec<String>,
    /// PEM certificate chain: with `tls_key`, the listener speaks HTTPS, and
    /// HTTP/2 to clients that offer it (ALPN), as LL-HLS players want. Both
    /// unset: plain HTTP/1.1, for a TLS-terminating proxy or CDN in front.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Signs private lessons' playback tokens (at least 16 bytes). Empty:
    /// `STUDIOCAST_PLAYBACK_SECRET`, else a random one kept in
    /// `data_dir/playback.key` (so tokens outlive a restart). Daemons that
    /// share a job queue and its output folder need the same one.
    #[serde(default)]
    pub playback_secret: String,
    /// Origins that embed the player (`https://campus.example.org`): the
    /// only ones that may frame a private lesson, and the only ones the
    /// player's postMessage API talks to. Public lessons may be framed by
    /// any site.
    #[serde(default)]
    pub embed_origins: Vec<String>,
    /// The daemon's public address, for absolute URLs (oEmbed, and job
    /// events when `[jobs] public_url` is unset): `https://media.example.org`
    /// or with a path prefix behind a proxy. Unset: the request's `Host`.
    #[serde(default)]
    pub public_url: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_pipelines() -> PathBuf {
    PathBuf::from("pipelines")
}
fn default_cors() -> Vec<String> {
    vec!["*".into()]
}
fn default_max_connections() -> usize {
    4096
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            data_dir: default_data_dir(),
            pipelines_dir: default_pipelines(),
            api_token: String::new(),
            cors_origins: default_cors(),
            max_sessions: 0,
            max_connections: default_max_connections(),
            metrics_listen: None,
            alarm_webhooks: Vec::new(),
            tls_cert: None,
            tls_key: None,
            playback_secret: String::new(),
            embed_origins: Vec::new(),
            public_url: None,
        }
    }
}

impl ServerSection {
    /// `max_sessions` with 0 resolved to the machine's core count.
    pub fn session_limit(&self) -> usize {
        if self.max_sessions > 0 {
            self.max_sessions
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The TLS settings, read and checked now so a bad certificate stops
    /// the daemon at start with the file named, not at the first viewer.
    pub fn tls(&self) -> Result<Option<studiocast_server::TlsConfig>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(studiocast_server::load_tls(cert, key)?)),
            (None, None) => Ok(None),
            _ => bail!("[server] tls_cert and tls_key go together: set both or neither"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpatialConfig {
    /// SOFA file for binaural rendering.
    #[serde(default = "default_hrtf")]
    pub hrtf: PathBuf,
    /// Decoder design: "magls", "ls" or "vls".
    #[serde(default = "default_method")]
    pub method: String,
    /// Processing block, frames: `render`'s block, and the live audio
    /// thread's (renderer, drift compensator; the capture delay is three
    /// blocks).
    #[serde(default = "default_block")]
    pub block: usize,
    /// max-rE weighting above the MagLS cutoff.
    #[serde(default)]
    pub max_re: bool,
    /// Optional headphone-EQ FIR, a mono or stereo WAV at the stream rate.
    #[serde(default)]
    pub headphone_eq: Option<PathBuf>,
}

fn default_hrtf() -> PathBuf {
    PathBuf::from(studiocast_spatial::DEFAULT_SOFA)
}
fn default_method() -> String {
    "magls".into()
}
fn default_block() -> usize {
    1024
}

impl Default for SpatialConfig {
    fn default() -> Self {
        SpatialConfig {
            hrtf: default_hrtf(),
            method: default_method(),
            block: default_block(),
            max_re: false,
            headphone_eq: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// A session does not start with less free space than this on the data
    /// directory's file system.
    #[serde(default = "min_free")]
    pub min_free_mb: u64,
    /// A running session stops its archival masters (the big writers) below
    /// this, with an alarm; the live stream goes on.
    #[serde(default = "stop_below")]
    pub stop_below_mb: u64,
    /// Below this the whole session stops cleanly (playlists ended, VOD
    /// written, record `ended` with the alarm), before the disk is full.
    #[serde(default = "floor")]
    pub floor_mb: u64,
}

fn min_free() -> u64 {
    2048
}
fn stop_below() -> u64 {
    512
}
fn floor() -> u64 {
    128
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            min_free_mb: min_free(),
            stop_below_mb: stop_below(),
            floor_mb: floor(),
        }
    }
}

impl Config {
    /// Load `path`, or the default file when it exists, or built-in defaults;
    /// then apply environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p)?,
            None if Path::new(DEFAULT_CONFIG).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG))?
            }
            None => Config::default(),
        };
        cfg.apply_env()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self) -> Result<()> {
        let var = |k: &str| std::env::var(k).ok();
        if let Some(v) = var("STUDIOCAST_HRTF") {
            self.spatial.hrtf = PathBuf::from(v);
        }
        if let Some(v) = var("STUDIOCAST_METHOD") {
            self.spatial.method = v;
        }
        if let Some(v) = var("STUDIOCAST_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = var("STUDIOCAST_DATA_DIR") {
            self.server.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("STUDIOCAST_PIPELINES_DIR") {
            self.server.pipelines_dir = PathBuf::from(v);
        }
        if let Some(v) = var("STUDIOCAST_API_TOKEN") {
            self.server.api_token = v;
        }
        if let Some(v) = var("STUDIOCAST_EMBED_ORIGINS") {
            self.server.embed_origins = v
                .split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect();
        }
        if let Some(v) = var("STUDIOCAST_SERVER_PUBLIC_URL") {
            self.server.public_url = Some(v);
        }
        if let Some(v) = var("STUDIOCAST_PLAYBACK_SECRET") {
            self.server.playback_secret = v;
        }
        if let Some(v) = var("STUDIOCAST_TLS_CERT") {
            self.server.tls_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = var("STUDIOCAST_TLS_KEY") {
            self.server.tls_key = Some(PathBuf::from(v));
        }
        for (name, field) in [
            ("STUDIOCAST_MIN_FREE_MB", &mut self.recording.min_free_mb),
            (
                "STUDIOCAST_STOP_BELOW_MB",
                &mut self.recording.stop_below_mb,
            ),
            ("STUDIOCAST_FLOOR_MB", &mut self.recording.floor_mb),
        ] {
            if let Some(v) = var(name) {
                *field = v
                    .parse()
                    .with_context(|| format!("{name}={v} is not a number of MB"))?;
            }
        }
        if let Some(v) = var("STUDIOCAST_IMPORT_DIR") {
            self.jobs.import_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("STUDIOCAST_WEBHOOKS") {
            // Comma-separated, as container settings are flat.
            self.jobs.webhooks = v
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = var("STUDIOCAST_WEBHOOK_SECRET") {
            self.jobs.webhook_secret = v;
        }
        if let Some(v) = var("STUDIOCAST_PUBLIC_URL") {
            self.jobs.public_url = Some(v);
        }
        if let Some(v) = var("STUDIOCAST_JOBS_DATABASE") {
            self.jobs.database = Some(v);
        }
        if let Some(v) = var("STUDIOCAST_SHARED_DIR") {
            self.jobs.shared_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("STUDIOCAST_MAX_UPLOAD_MB") {
            self.jobs.max_upload_mb = v
                .parse()
                .with_context(|| format!("STUDIOCAST_MAX_UPLOAD_MB={v} is not a number"))?;
        }
        if let Some(v) = var("STUDIOCAST_JOB_WORKERS") {
            self.jobs.workers = v
                .parse()
                .with_context(|| format!("STUDIOCAST_JOB_WORKERS={v} is not a number"))?;
        }
        if let Some(v) = var("STUDIOCAST_MAX_SESSIONS") {
            self.server.max_sessions = v
                .parse()
                .with_context(|| format!("STUDIOCAST_MAX_SESSIONS={v} is not a number"))?;
        }
        Ok(())
    }

    /// Refuse settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<()> {
        self.auth.specs_beside(&self.server.api_token)?;
        for url in &self.server.alarm_webhooks {
            http_url("[server] alarm_webhooks", url)?;
        }
        if !self.server.alarm_webhooks.is_empty() && self.jobs.webhook_secret.len() < 16 {
            bail!(
                "[server] alarm_webhooks need [jobs] webhook_secret (or STUDIOCAST_WEBHOOK_SECRET) of at least 16 characters: receivers check events with it"
            );
        }
        let block = self.spatial.block;
        let range = studiocast_media::pipeline::BLOCK_RANGE;
        if !range.contains(&block) {
            bail!(
                "[spatial] block = {block} is outside {}..={}",
                range.start(),
                range.end()
            );
        }
        if let Err(e) = self
            .spatial
            .method
            .parse::<studiocast_spatial::DecoderMethod>()
        {
            bail!("[spatial] method = {:?}: {e}", self.spatial.method);
        }
        for o in &self.server.embed_origins {
            web_origin("[server] embed_origins", o)?;
        }
        if let Some(u) = &self.server.public_url {
            http_url("[server] public_url", u)?;
        }
        let r = &self.recording;
        if !(r.floor_mb <= r.stop_below_mb && r.stop_below_mb <= r.min_free_mb) {
            // Not an error (a test rig may want a disk that is "full" for
            // recording only), but rarely meant.
            tracing::warn!(
                min_free_mb = r.min_free_mb,
                stop_below_mb = r.stop_below_mb,
                floor_mb = r.floor_mb,
                "[recording] thresholds are usually floor_mb <= stop_below_mb <= min_free_mb"
            );
        }
        if self.server.max_connections < 16 {
            bail!(
                "[server] max_connections = {} (at least 16)",
                self.server.max_connections
            );
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            bail!("[server] tls_cert and tls_key go together: set both or neither");
        }
        if self.jobs.workers > 64 {
            bail!("[jobs] workers = {} (at most 64)", self.jobs.workers);
        }
        self.jobs.validate()?;
        if self.server.max_sessions > 256 {
            bail!(
                "[server] max_sessions = {} (at most 256)",
                self.server.max_sessions
            );
        }
        Ok(())
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        // Checked by `load` once the environment is applied (a secret may
        // come from there), not here.
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }
}
