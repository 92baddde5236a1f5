//! studiocast-media: typed GStreamer pipelines for sessions.
//!
//! A [`spec::PipelineSpec`] (parsed from `pipelines/*.toml`) becomes a
//! [`pipeline::SessionPipeline`] built from the element wrappers in
//! [`elements`]. The audio renditions come from the spatial engine, fed
//! through `appsrc`; every rendition leaves through its own `cmafmux` and
//! `appsink` as CMAF init segments and fragments ([`MediaEvent`]), which the
//! caller hands to the HLS packager. No launch strings.

mod audio_thread;
pub mod elements;
pub mod ingest;
pub mod master;
pub mod meters;
pub mod mixer;
pub mod pipeline;
pub mod scene_audio;
pub mod spec;
pub mod video_pump;

pub use audio_thread::{AudioSnapshot, VideoSnapshot};
pub use pipeline::{MediaEvent, SessionPipeline};
pub use spec::PipelineSpec;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("GStreamer element '{0}' is not available (is its plugin package installed?)")]
    MissingElement(String),
    #[error("invalid pipeline spec: {0}")]
    Spec(String),
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("input {input} is unavailable: {reason}")]
    InputUnavailable { input: String, reason: String },
    #[error("spatial engine: {0}")]
    Spatial(#[from] studiocast_spatial::SpatialError),
}

/// Wall clock, ms since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Initialise GStreamer and register the statically linked plugins once.
pub fn init() -> Result<(), MediaError> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        gstreamer::init().map_err(|e| e.to_string())?;
        gstfmp4::plugin_register_static().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(MediaError::Gst)
}

/// RFC 6381 codec string of an H.264 init segment, from its `avcC` box
/// (profile, constraint flags, level), e.g. `avc1.64001f`.
pub fn avc_codec_string(init: &[u8]) -> Option<String> {
    let pos = init.windows(4).position(|w| w == b"avcC")?;
    let b = init.get(pos + 5..pos + 8)?;
    Some(format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
}

/// Route GStreamer's own warnings and errors into `tracing`.
pub fn bridge_logs() {
    use gstreamer as gst;
    gst::log::remove_default_log_function();
    gst::log::set_default_threshold(gst::DebugLevel::Warning);
    gst::log::add_log_function(|cat, level, _file, _func, _line, obj, msg| {
        let obj = obj.map(|o| o.to_string()).unwrap_or_default();
        let text = msg.get().map(|m| m.to_string()).unwrap_or_default();
        match level {
            gst::DebugLevel::Error => {
                tracing::error!(target: "gstreamer", category = cat.name(), object = %obj, "{text}")
            }
            gst::DebugLevel::Warning => {
                tracing::warn!(target: "gstreamer", category = cat.name(), object = %obj, "{text}")
            }
            _ => {
                tracing::debug!(target: "gstreamer", category = cat.name(), object = %obj, "{text}")
            }
        }
    });
}
