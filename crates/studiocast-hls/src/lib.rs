//! Sans-IO HLS packager, standard and low-latency (RFC 8216bis).
//!
//! CMAF init segments and chunks go in; file actions (write this segment,
//! replace this playlist) and in-memory snapshots for the origin
//! ([`LiveView`]) come out. No threads, sockets, clocks or file system
//! inside, so every rule below is tested deterministically:
//!
//! * each chunk is a part (`EXT-X-PART`, low latency), published at once;
//!   segment boundaries are the muxer's (a `boundary` chunk);
//! * `EXT-X-TARGETDURATION` is fixed for the life of a stream and every
//!   rounded `EXTINF` stays at or below it; every part at or below
//!   `PART-TARGET` (anything that would break them is refused);
//! * the live window covers the DVR time asked for, never less than three
//!   target durations (six with delta updates); parts are listed for the
//!   last three target durations only;
//! * `EXT-X-PROGRAM-DATE-TIME` (UTC, milliseconds) on the first segment,
//!   after a skip and after every discontinuity, and
//!   `EXT-X-DISCONTINUITY-SEQUENCE` kept right as tagged segments slide out;
//! * fMP4: `EXT-X-MAP`, `EXT-X-VERSION:7` (9 with `EXT-X-SKIP`),
//!   `EXT-X-INDEPENDENT-SEGMENTS`;
//! * audio renditions in an `EXT-X-MEDIA TYPE=AUDIO` group with `CHANNELS`;
//! * a segment reaches the journal and the VOD only after the caller has
//!   written it durably and confirmed it ([`Packager::segment_written`]);
//!   the VOD master announces measured bit rates and I-frame streams.

mod config;
mod journal;
mod layout;
pub mod live;
mod media;
pub mod mp4;
mod playlist;
mod render;
mod segment;
mod stable;
mod time;
mod track;
mod view;
mod writer;

use bytes::Bytes;

pub use config::{
    Chunk, PackagerConfig, Rendition, RenditionKind, MAX_MEMORY_SEGMENTS, PART_TOLERANCE,
};
pub use layout::{resolve, Listing};
pub use live::{LiveView, PartRef};
pub use playlist::{Bitrate, Packager, MASTER, PLAYER_MASTER};

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
    /// Chunks after a refusal or a close, until the next segment boundary.
    #[error("'{0}' waits for the next segment boundary")]
    AwaitingBoundary(String),
    #[error("part of {duration:.4} s in '{rendition}' exceeds the part target {part_target} s")]
    PartTargetExceeded {
        rendition: String,
        duration: f64,
        part_target: f64,
    },
    #[error("chunk of '{rendition}' refused: {reason}")]
    InvalidChunk {
        rendition: String,
        reason: &'static str,
    },
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
        data: Bytes,
    },
    /// Create or replace a file (relative path, '/'-separated). Playlists
    /// should be replaced atomically (write then rename).
    Write { path: String, data: Bytes },
    /// Append to a file, creating it (the segment journal, one line per
    /// published segment, from which an interrupted stream is republished).
    Append { path: String, data: Bytes },
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
