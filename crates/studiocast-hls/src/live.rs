//! What the origin serves of one rendition while it is live: an immutable
//! snapshot the packager publishes after every change (a new part, a
//! closed segment, the end). It is cheap to clone (`Bytes` and `Arc`), so
//! the caller can hand it to any number of readers (a `watch` channel per
//! rendition) while the packager goes on. The HTTP layer answers playlist
//! requests, blocking reloads and part and segment fetches from it alone;
//! it needs nothing else from the packager, and nothing from GStreamer.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

/// A part of a segment: media sequence number and part index (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartRef {
    pub msn: u64,
    pub part: u32,
}

impl PartRef {
    /// The part's file name, as the playlists list it (`seg000012.p3.m4s`).
    pub fn uri(self) -> String {
        crate::segment::part_uri(self.msn, self.part as usize)
    }
}

/// One rendition's live state, as published.
#[derive(Debug, Clone)]
pub struct LiveView {
    /// The rendition's id (its folder name).
    pub rendition: String,
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_duration: u64,
    /// `PART-TARGET`, seconds; `None` for a standard (not low-latency)
    /// playlist, which has no parts and no blocking reload.
    pub part_target: Option<f64>,
    /// The newest part published (`None` before the first).
    pub last_part: Option<PartRef>,
    /// The newest segment complete (all its parts published).
    pub last_segment: Option<u64>,
    /// The oldest segment the playlist lists.
    pub first_msn: u64,
    /// The part the playlist's `EXT-X-PRELOAD-HINT` names (low latency,
    /// while live): a request for it blocks until it is published. It may
    /// never come (the next chunk can start a new segment instead): once
    /// a view has moved past it without listing it, answer 404.
    pub preload_hint: Option<PartRef>,
    /// The stream has ended (`EXT-X-ENDLIST`): nothing more will come.
    pub ended: bool,
    /// The whole media playlist.
    pub playlist: Bytes,
    /// The playlist with `EXT-X-SKIP` (answer to `_HLS_skip=YES`), when
    /// the window is long enough for one; else the full one serves.
    pub playlist_skip: Option<Bytes>,
    /// Files served from memory, by the name the playlist uses
    /// (`init.mp4`, `seg000012.m4s`, `seg000012.p3.m4s`, …): the init
    /// segments, the recent segments (and any not yet confirmed written),
    /// every part the playlist lists and the parts it dropped less than
    /// three target durations ago. Older segments are served from disk.
    pub files: Arc<BTreeMap<String, Bytes>>,
}

impl LiveView {
    /// A view with nothing published yet.
    pub fn empty(rendition: &str, target_duration: u64, part_target: Option<f64>) -> Self {
        LiveView {
            rendition: rendition.to_string(),
            target_duration,
            part_target,
            last_part: None,
            last_segment: None,
            first_msn: 1,
            preload_hint: None,
            ended: false,
            playlist: Bytes::new(),
            playlist_skip: None,
            files: Arc::new(BTreeMap::new()),
        }
    }

    /// Does the playlist already hold what a blocking reload asks for?
    /// `_HLS_msn=msn` alone: segment `msn` is complete; with
    /// `_HLS_part=part`: that part of it is published (RFC 8216bis 6.2.5.2).
    pub fn satisfies(&self, msn: u64, part: Option<u32>) -> bool {
        if self.ended {
            return true;
        }
        match part {
            None => self.last_segment.is_some_and(|s| s >= msn),
            Some(p) => {
                self.last_part
                    .is_some_and(|l| l >= PartRef { msn, part: p })
                    || self.last_segment.is_some_and(|s| s >= msn)
            }
        }
    }

    /// How far ahead a blocking reload may ask (RFC 8216bis 6.2.5.2: a
    /// server answers 400 to an `_HLS_msn` more than two segments past
    /// the last one in the playlist).
    pub fn too_far_ahead(&self, msn: u64) -> bool {
        let last = match (self.last_part, self.last_segment) {
            (Some(p), _) => p.msn,
            (None, Some(s)) => s,
            (None, None) => self.first_msn.saturating_sub(1),
        };
        msn > last.saturating_add(2)
    }

    /// A file served from memory.
    pub fn file(&self, name: &str) -> Option<Bytes> {
        self.files.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(last_part: Option<(u64, u32)>, last_segment: Option<u64>) -> LiveView {
        LiveView {
            last_part: last_part.map(|(msn, part)| PartRef { msn, part }),
            last_segment,
            ..LiveView::empty("video", 2, Some(0.333))
        }
    }

    #[test]
    fn blocking_reload_rules() {
        // Segment 10 is complete; part 2 of segment 11 is the newest part.
        let v = view(Some((11, 2)), Some(10));
        assert!(v.satisfies(10, None));
        assert!(!v.satisfies(11, None));
        assert!(v.satisfies(11, Some(2)));
        assert!(!v.satisfies(11, Some(3)));
        assert!(v.satisfies(10, Some(7)), "a part of a complete segment");
        assert!(!v.too_far_ahead(13));
        assert!(v.too_far_ahead(14));
        let mut ended = v.clone();
        ended.ended = true;
        assert!(ended.satisfies(99, Some(0)));
    }
}
