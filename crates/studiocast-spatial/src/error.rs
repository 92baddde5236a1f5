use std::path::PathBuf;

/// Errors from the spatial engine. Every variant carries the values needed to
/// tell a technician what is wrong without reading the code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpatialError {
    #[error("ambisonic order {order} is not supported (1..={max})")]
    UnsupportedOrder { order: usize, max: usize },
    #[error("channel count mismatch: expected {expected} channels, got {actual}")]
    ChannelMismatch { expected: usize, actual: usize },
    #[error("cannot read SOFA file {path}: {reason}")]
    Sofa { path: PathBuf, reason: String },
    #[error("HRTF set is unusable: {0}")]
    BadHrtf(String),
    #[error("unknown loudspeaker layout '{0}' (known: stereo, 5.1, 7.1, 7.1.4)")]
    UnknownLayout(String),
    #[error("invalid position for '{name}': {reason}")]
    BadPosition { name: String, reason: String },
    #[error("block size {block} is out of range (16..={max})")]
    BadBlockSize { block: usize, max: usize },
    #[error("sample rate {0} Hz is out of range (8000..=192000)")]
    BadSampleRate(u32),
    #[error("buffer of {actual} frames does not match the block size {expected}")]
    BlockMismatch { expected: usize, actual: usize },
    #[error("resource limit: {what} is {value}, limit {limit}")]
    Limit {
        what: &'static str,
        value: usize,
        limit: usize,
    },
    #[error("multiply-accumulate length {len} is not a multiple of {lanes} lanes")]
    MacLength { len: usize, lanes: usize },
    #[error(
        "multiply-accumulate job runs past {what}: offset {offset} + {len} bins, \
         but {what} holds {available} values"
    )]
    MacOutOfBounds {
        what: &'static str,
        offset: usize,
        len: usize,
        available: usize,
    },
    #[error("filter design failed: {0}")]
    Design(String),
}

pub type Result<T, E = SpatialError> = std::result::Result<T, E>;
