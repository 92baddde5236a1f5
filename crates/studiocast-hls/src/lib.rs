//! Sans-IO HLS packager.
//!
//! CMAF init segments and chunks go in; file actions (write this segment,
//! replace this playlist) come out. No threads, sockets, clocks or file
//! system inside, so every rule below is tested deterministically:
//!
//! * `EXT-X-TARGETDURATION` is fixed for the life of a stream and every
//!   rounded `EXTINF` stays at or below it (a segment that would break it is
//!   refused with an error rather than published);
//! * the live window never shrinks below three target durations;
//! * `EXT-X-PROGRAM-DATE-TIME` (UTC, milliseconds) on the first segment and
//!   after every discontinuity, and `EXT-X-DISCONTINUITY-SEQUENCE` kept right
//!   as tagged segments slide out;
//! * fMP4: `EXT-X-MAP`, `EXT-X-VERSION:7`, `EXT-X-INDEPENDENT-SEGMENTS`;
//! * audio renditions in an `EXT-X-MEDIA TYPE=AUDIO` group with `CHANNELS`.
//!
//! * a segment is published (journal, playlist) only after the caller has
//!   written it durably and confirmed it ([`Packager::segment_written`]).
//!
//! Chunks accumulate into segments, so low-latency parts can be added
//! without changing the producer side.

mod journal;
mod layout;
pub mod live;
pub mod mp4;
mod playlist;
mod render;
mod segment;

pub use layout::{resolve, Listing};
pub use live::{LiveView, PartRef};
pub use playlist::{Chunk, Packager, PackagerConfig, Rendition, RenditionKind};

#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum HlsError {
    #[error("unknown rendition '{0}'")]
    UnknownRendition(String),
    #[error("rendition '{0}' has no init segment yet")]
    NoInit(String),
    #[error("segment of {duration:.3} s in '{rendition}' exceeds the target duration {target} s")]
    TargetDurationExceeded {
        rendition: String,
        duration: f64,
        target: u64,
    },
    #[error("segment of '{0}' does not start with a sync sample")]
    NotIndependent(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("stream has ended")]
    Ended,
    #[error("segment {seq} of '{rendition}' is not waiting to be written")]
    UnknownSegment { rendition: String, seq: u64 },
}

/// What the caller must do after a packager call, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write a media segment durably (a new file: write, sync, rename), then
    /// report with [`Packager::segment_written`], which publishes it.
    WriteSegment {
        rendition: String,
        seq: u64,
        /// Capture time of its first sample (ms since the Unix epoch): a
        /// caller whose write fails marks the gap in every rendition there.
        pdt_ms: Option<i64>,
        path: String,
        data: Vec<u8>,
    },
    /// Create or replace a file (relative path, '/'-separated). Playlists
    /// should be replaced atomically (write then rename).
    Write { path: String, data: Vec<u8> },
    /// Append to a file, creating it (the segment journal, one line per
    /// published segment, from which an interrupted stream is republished).
    Append { path: String, data: Vec<u8> },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Action::WriteSegment { path, .. }
            | Action::Write { path, .. }
            | Action::Append { path, .. } => path,
        }
    }
}
