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
    /// PEM certificate chain: with `tls_key`, the listener speaks HTTPS, and
    /// HTTP/2 to clients that offer it (ALPN), as LL-HLS players want. Both
    /// unset: plain HTTP/1.1, for a TLS-terminating proxy or CDN in front.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
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
            tls_cert: None,
            tls_key: None,
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
        if let Some(v) = var("STUDIOCAST_MAX_SESSIONS") {
            self.server.max_sessions = v
                .parse()
                .with_context(|| format!("STUDIOCAST_MAX_SESSIONS={v} is not a number"))?;
        }
        Ok(())
    }

    /// Refuse settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<()> {
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
        let cfg = Self::parse(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        cfg.validate()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }
}
