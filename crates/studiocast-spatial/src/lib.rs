//! studiocast-spatial: pure-Rust spatial audio DSP.
//!
//! Ambisonics (AmbiX/N3D/FuMa, orders 1–7), objects and loudspeaker beds are
//! rendered to binaural stereo through SH-domain filters designed from any
//! SOFA HRTF set (MagLS with a diffuse-field covariance constraint, plain
//! least squares, or virtual loudspeakers), and to a loudspeaker-stereo
//! downmix. No GStreamer, tokio or axum here.

pub mod cache;
pub mod convolver;
pub mod design;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod hrir_cache;
pub mod hrtf;
pub mod linalg;
pub mod metrics;
pub mod parametric;
pub mod renderer;
pub mod rotation;
pub mod scene;
pub mod scenes;
pub mod sh;
pub mod simd;
mod sofa_check;

pub use design::{design, DecoderMethod, DesignOptions, ShFilters};
pub use engine::Engine;
pub use error::{Result, SpatialError};
pub use hrtf::{HrtfSet, DEFAULT_SOFA};
pub use parametric::{ParametricOptions, ParametricRenderer};
pub use renderer::BinauralRenderer;
pub use rotation::Quat;
