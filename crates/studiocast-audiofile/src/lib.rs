//! Audio files for studiocast.
//!
//! * [`pcm`]: our own WAV / RF64 / Wave64 reader and writer. Symphonia 0.6
//!   reads neither RF64 nor W64, and multichannel masters beyond 4 GiB need
//!   them; the writer keeps a JUNK chunk so a file can become RF64 in place,
//!   and headers can be refreshed while recording, so a crash loses at most
//!   what was written since the last refresh.
//! * [`decode`]: any other format symphonia decodes (FLAC, CAF, MKV, MP3…),
//!   read into planar f32.

pub mod decode;
pub mod pcm;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioFileError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: not a supported audio file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: unsupported sample format: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("resource limit: {what} is {value}, limit {limit}")]
    Limit {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("channel count mismatch: expected {expected}, got {actual}")]
    ChannelMismatch { expected: usize, actual: usize },
}

pub type Result<T, E = AudioFileError> = std::result::Result<T, E>;

/// Upper bounds on what a file may claim.
pub const MAX_CHANNELS: u16 = 256;
pub const MAX_RATE: u32 = 768_000;

/// A streaming source of planar f32 audio.
pub trait AudioSource {
    fn channels(&self) -> usize;
    fn sample_rate(&self) -> u32;
    /// Total frames when known.
    fn frames(&self) -> Option<u64>;
    /// Fill up to `max` frames into `out` (one Vec per channel, cleared
    /// first). Returns the number of frames; 0 means end of stream.
    fn read_planar(&mut self, max: usize, out: &mut [Vec<f32>]) -> Result<usize>;
}

/// Open any supported audio file: our PCM reader for WAV/RF64/W64,
/// symphonia otherwise.
pub fn open(path: &std::path::Path) -> Result<Box<dyn AudioSource>> {
    match pcm::PcmReader::open(path) {
        Ok(r) => Ok(Box::new(r)),
        Err(AudioFileError::Format { .. }) => Ok(Box::new(decode::SymphoniaSource::open(path)?)),
        Err(e) => Err(e),
    }
}
