//! Daemon and CLI configuration: one TOML file (unknown keys rejected),
//! overlaid by `STUDIOCAST_*` environment variables and then CLI flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
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
    pub recording: crate::daemon::RecordingConfig,
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

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            data_dir: default_data_dir(),
            pipelines_dir: default_pipelines(),
            api_token: String::new(),
            cors_origins: default_cors(),
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
    /// Processing block, frames.
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
    512
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
        if let Ok(v) = std::env::var("STUDIOCAST_HRTF") {
            cfg.spatial.hrtf = PathBuf::from(v);
        }
        if let Ok(v) = std::env::var("STUDIOCAST_METHOD") {
            cfg.spatial.method = v;
        }
        if let Ok(v) = std::env::var("STUDIOCAST_LISTEN") {
            cfg.server.listen = v;
        }
        if let Ok(v) = std::env::var("STUDIOCAST_DATA_DIR") {
            cfg.server.data_dir = PathBuf::from(v);
        }
        if let Ok(v) = std::env::var("STUDIOCAST_PIPELINES_DIR") {
            cfg.server.pipelines_dir = PathBuf::from(v);
        }
        if let Ok(v) = std::env::var("STUDIOCAST_API_TOKEN") {
            cfg.server.api_token = v;
        }
        for (var, field) in [
            ("STUDIOCAST_MIN_FREE_MB", &mut cfg.recording.min_free_mb),
            ("STUDIOCAST_STOP_BELOW_MB", &mut cfg.recording.stop_below_mb),
        ] {
            if let Ok(v) = std::env::var(var) {
                *field = v
                    .parse()
                    .with_context(|| format!("{var}={v} is not a number of MB"))?;
            }
        }
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }
}
