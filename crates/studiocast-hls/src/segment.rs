//! Media segments and their parts, as the packager keeps them.

use bytes::Bytes;

use crate::mp4::ByteRange;
use crate::time::Ticks;

/// What is durable about a segment: what the journal records, the VOD
/// playlists list and a recovery rebuilds. Nothing about parts: they live
/// in memory only.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    /// Media sequence number.
    pub(crate) seq: u64,
    pub(crate) duration: Ticks,
    /// Capture time of the first sample, ms since the Unix epoch.
    pub(crate) pdt_ms: Option<i64>,
    /// An `EXT-X-DISCONTINUITY` goes before it in the VOD playlist (a
    /// discontinuity of the stream, or segments before it that could not
    /// be written).
    pub(crate) discontinuity: bool,
    /// Its initialisation segment (`EXT-X-MAP`).
    pub(crate) map: String,
    /// Bytes (0 when unknown: a journal from before sizes were recorded).
    pub(crate) size: u64,
    /// Its first frame, for the I-frame playlist (video only).
    pub(crate) iframe: Option<ByteRange>,
}

/// The file of segment `seq`, relative to its rendition's folder.
pub(crate) fn segment_uri(seq: u64) -> String {
    format!("seg{seq:06}.m4s")
}

/// The file of part `index` of segment `seq`.
pub(crate) fn part_uri(seq: u64, index: usize) -> String {
    format!("seg{seq:06}.p{index}.m4s")
}

/// Where a segment's bytes are with respect to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disk {
    /// Handed to the caller to write; not confirmed yet.
    Pending,
    Written,
    /// The write failed (or was never confirmed): served from memory while
    /// its bytes are kept, `EXT-X-GAP` after, never in the VOD.
    Failed,
}

/// One part of a segment (one CMAF chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) duration: Ticks,
    /// Starts with a sync sample (`INDEPENDENT=YES`).
    pub(crate) independent: bool,
    /// Bytes.
    pub(crate) size: usize,
}

/// A complete segment of a live rendition.
#[derive(Debug, Clone)]
pub(crate) struct Closed {
    pub(crate) seg: Segment,
    /// An `EXT-X-DISCONTINUITY` goes before it in the live playlist.
    pub(crate) live_discontinuity: bool,
    /// Position on the rendition's timeline (sum of the segments before).
    pub(crate) start: Ticks,
    pub(crate) disk: Disk,
    /// Its parts while they may be listed or fetched; empty after.
    pub(crate) parts: Vec<Part>,
    /// Its bytes while they are kept in memory; the parts' bytes are
    /// slices of them.
    pub(crate) bytes: Option<Bytes>,
}

impl Closed {
    pub(crate) fn end(&self) -> Ticks {
        self.start.plus(self.seg.duration)
    }

    /// Each part's file name and bytes, sliced from the segment's bytes
    /// (no copy); nothing once the bytes are dropped.
    pub(crate) fn part_files(&self, out: &mut Vec<(String, Bytes)>) {
        let Some(bytes) = &self.bytes else { return };
        let mut at = 0usize;
        for (i, p) in self.parts.iter().enumerate() {
            let Some(end) = at.checked_add(p.size).filter(|e| *e <= bytes.len()) else {
                return;
            };
            out.push((part_uri(self.seg.seq, i), bytes.slice(at..end)));
            at = end;
        }
    }
}

/// The segment being filled: its parts are published one by one.
#[derive(Debug, Clone)]
pub(crate) struct Open {
    pub(crate) seq: u64,
    pub(crate) start: Ticks,
    pub(crate) pdt_ms: Option<i64>,
    pub(crate) discontinuity: bool,
    pub(crate) map: String,
    pub(crate) duration: Ticks,
    pub(crate) parts: Vec<Part>,
    pub(crate) data: Vec<Bytes>,
}
