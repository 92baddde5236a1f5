//! studiocast-media: typed GStreamer pipelines for sessions.
//!
//! A [`spec::PipelineSpec`] (parsed from `pipelines/*.toml`) becomes a
//! [`pipeline::SessionPipeline`] built from the element wrappers in
//! [`elements`]. The audio renditions come from the spatial engine, fed
//! through `appsrc`; every rendition leaves through its own `cmafmux` and
//! `appsink` as CMAF init segments and fragments ([`MediaEvent`]), which the
//! caller hands to the HLS packager. No launch strings.

pub mod elements;
pub mod pipeline;
pub mod scene_audio;
pub mod spec;

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
    #[error("spatial engine: {0}")]
    Spatial(#[from] studiocast_spatial::SpatialError),
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
