//! studiocast-media: typed GStreamer pipelines for sessions.
//!
//! A [`spec::PipelineSpec`] (parsed from `pipelines/*.toml`) becomes a
//! [`pipeline::BuiltPipeline`] built from the element wrappers in
//! [`elements`], then a [`pipeline::RunningPipeline`]. The audio renditions come from the spatial engine, fed
//! through `appsrc`; every rendition leaves through its own `cmafmux` and
//! `appsink` as CMAF init segments and fragments ([`MediaEvent`]), which the
//! caller hands to the HLS packager. No launch strings.

mod audio_thread;
pub mod elements;
pub mod events;
pub mod ingest;
pub mod machines;
pub mod master;
pub mod meters;
pub mod mixer;
pub mod pipeline;
pub mod scene_audio;
pub mod spec;
pub mod video_pump;

pub use audio_thread::{AudioSnapshot, VideoSnapshot};
pub use events::{
    event_queue, lossless_event_queue, EventReceiver, EventSender, MediaEvent, QueueStats,
};
pub use pipeline::{
    probe_video, BuildOptions, BuiltPipeline, FileEncoder, GstAudioSource, Poster, RunningPipeline,
    SessionPipeline, VideoInfo,
};
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
    /// A file job's input cannot be demuxed or decoded (no retry helps).
    #[error("{0}")]
    BadFile(String),
    #[error("spatial engine: {0}")]
    Spatial(#[from] studiocast_spatial::SpatialError),
}

/// Wall clock, ms since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since `ms` (wall clock, ms since the epoch); infinite for 0
/// ("never").
pub(crate) fn age_s(ms: i64) -> f64 {
    if ms == 0 {
        f64::INFINITY
    } else {
        (now_ms() - ms) as f64 / 1000.0
    }
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

/// GStreamer warnings known to be harmless here, shown at debug level only:
/// the video muxer's first latency query runs before x264 has negotiated
/// (it is answered a moment later), and the AAC encoder's last frame at
/// end of stream has no input buffer to copy metadata from.
const HARMLESS: &[&str] = &[
    "Latency query failed",
    "Can't copy metadata because input buffer disappeared",
];

/// Route GStreamer's own warnings and errors into `tracing`.
pub fn bridge_logs() {
    use gstreamer as gst;
    gst::log::remove_default_log_function();
    gst::log::set_default_threshold(gst::DebugLevel::Warning);
    gst::log::add_log_function(|cat, level, _file, _func, _line, obj, msg| {
        let obj = obj.map(|o| o.to_string()).unwrap_or_default();
        let text = msg.get().map(|m| m.to_string()).unwrap_or_default();
        let level =
            if level == gst::DebugLevel::Warning && HARMLESS.iter().any(|h| text.starts_with(h)) {
                gst::DebugLevel::Debug
            } else {
                level
            };
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
