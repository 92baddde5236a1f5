//! What the caller configures, and the limits the packager derives.

use bytes::Bytes;

use crate::time::Ticks;
use crate::HlsError;

#[derive(Debug, Clone, PartialEq)]
pub enum RenditionKind {
    Video {
        width: u32,
        height: u32,
        frame_rate: f64,
    },
    Audio {
        name: String,
        channels: u32,
        default: bool,
        /// A client may pick it without the viewer asking. `false` for a
        /// rendition only a special renderer can play (an ambisonic one
        /// heard as four loudspeaker feeds is wrong).
        autoselect: bool,
        language: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// Folder name and id: `[A-Za-z0-9_-]+`.
    pub id: String,
    pub kind: RenditionKind,
    /// Exact RFC 6381 codec string, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codecs: String,
    /// Peak bits per second, as configured (the live multivariant playlist
    /// uses it; the VOD one uses what was measured).
    pub bandwidth: u64,
}

impl Rendition {
    pub(crate) fn is_video(&self) -> bool {
        matches!(self.kind, RenditionKind::Video { .. })
    }
}

#[derive(Debug, Clone)]
pub struct PackagerConfig {
    /// EXT-X-TARGETDURATION, seconds. Fixed for the life of the stream.
    pub target_duration: u64,
    /// Low-latency HLS: the duration of the CMAF chunks (parts), seconds,
    /// as the muxer's `chunk-duration`. `PART-TARGET` advertises it plus
    /// [`PART_TOLERANCE`] (frame timing makes chunks a little long), and a
    /// longer chunk is refused. `None`: standard HLS (chunks are only
    /// gathered into segments; no parts, no blocking reload, no deltas).
    pub part_target: Option<f64>,
    /// Seconds of media the live playlist keeps (DVR window); never less
    /// than three target durations, nor (low latency) the six target
    /// durations that `CAN-SKIP-UNTIL` skips.
    pub dvr_seconds: u64,
    /// Recent complete segments whose bytes stay in memory for the origin
    /// (older ones are served from disk), at most [`MAX_MEMORY_SEGMENTS`].
    pub memory_segments: usize,
}

/// Slack on a part's duration over the configured `part_target`.
pub const PART_TOLERANCE: f64 = 0.001;
/// Bound on [`PackagerConfig::memory_segments`].
pub const MAX_MEMORY_SEGMENTS: usize = 600;

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            target_duration: 2,
            part_target: None,
            dvr_seconds: 7200,
            memory_segments: 12,
        }
    }
}

/// A CMAF chunk (one moof+mdat) of one rendition.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Bytes,
    /// Seconds.
    pub duration: f64,
    /// Starts with a sync sample: for video, a fragment's first chunk; for
    /// audio, every chunk. A segment must start with one.
    pub independent: bool,
    /// Capture time of the first sample, ms since the Unix epoch.
    pub pdt_ms: Option<i64>,
    /// Starts a new segment (the first chunk of a muxer fragment, the only
    /// one without `DELTA_UNIT`): the open segment is closed before it.
    pub boundary: bool,
}

/// The numbers the packager works with, checked once.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) target: u64,
    pub(crate) target_ticks: Ticks,
    /// Advertised `PART-TARGET` (the longest part accepted).
    pub(crate) part_target: Option<Ticks>,
    /// `CAN-SKIP-UNTIL` (low latency only).
    pub(crate) skip_until: Option<Ticks>,
    /// The live window never gets shorter than this.
    pub(crate) window_min: Ticks,
    pub(crate) memory_segments: usize,
}

impl Limits {
    pub(crate) fn new(c: &PackagerConfig) -> Result<Limits, HlsError> {
        if c.target_duration == 0 || c.target_duration > 60 {
            return Err(HlsError::Config(format!(
                "target duration {} s",
                c.target_duration
            )));
        }
        let target_ticks = Ticks::from_whole_secs(c.target_duration);
        let part_target = match c.part_target {
            None => None,
            Some(p)
                if p.is_finite() && p >= 0.05 && p + PART_TOLERANCE < c.target_duration as f64 =>
            {
                Ticks::from_secs(p + PART_TOLERANCE)
            }
            Some(p) => {
                return Err(HlsError::Config(format!(
                    "part target {p} s (0.05 s to less than the target duration)"
                )))
            }
        };
        if c.memory_segments > MAX_MEMORY_SEGMENTS {
            return Err(HlsError::Config(format!(
                "{} memory segments (at most {MAX_MEMORY_SEGMENTS})",
                c.memory_segments
            )));
        }
        // RFC 8216bis 4.4.3.8: the Skip Boundary is at least six target
        // durations; a live playlist covers at least three (6.2.2).
        let skip_until = part_target.map(|_| target_ticks.times(6));
        let window_min = Ticks::from_whole_secs(c.dvr_seconds)
            .max(target_ticks.times(3))
            .max(skip_until.unwrap_or_default());
        Ok(Limits {
            target: c.target_duration,
            target_ticks,
            part_target,
            skip_until,
            window_min,
            memory_segments: c.memory_segments,
        })
    }
}
