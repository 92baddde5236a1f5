//! The snapshot of a live rendition the origin serves ([`LiveView`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Limits;
use crate::live::{LiveView, PartRef};
use crate::media::{self, Mode};
use crate::segment::segment_uri;
use crate::track::Track;

/// Build a rendition's view: both playlists rendered now (rendition
/// reports from the siblings' state now), and the files served from
/// memory: init segments, every part listed or removed from the playlist
/// less than three target durations ago (RFC 8216bis 6.2.2), and every
/// segment whose bytes are kept.
pub(crate) fn build(t: &Track, lim: &Limits, reports: &[(&str, PartRef)], ended: bool) -> LiveView {
    let ll = lim.part_target.is_some();
    let playlist = Bytes::from(media::live(t, lim, Mode::Full, reports, ended));
    // A server ignores _HLS_skip once the playlist has EXT-X-ENDLIST
    // (RFC 8216bis 6.2.5.1), and a delta is only worth it when it skips.
    let skip = if ll && !ended { t.skippable(lim) } else { 0 };
    let playlist_skip =
        (skip > 0).then(|| Bytes::from(media::live(t, lim, Mode::Delta(skip), reports, ended)));
    let mut files: Vec<(String, Bytes)> = t
        .inits
        .iter()
        .filter(|(_, b)| !b.is_empty())
        .cloned()
        .collect();
    let parts_from = t.parts_kept_from(lim);
    // From `gap_kept_from`: failed segments just turned gaps still serve.
    for (i, c) in t.segs.iter().enumerate().skip(t.gap_kept_from) {
        if ll && i >= parts_from {
            c.part_files(&mut files);
        }
        if let Some(b) = &c.bytes {
            files.push((segment_uri(c.seg.seq), b.clone()));
        }
    }
    if let (true, Some(o)) = (ll, &t.open) {
        for (i, d) in o.data.iter().enumerate() {
            files.push((crate::segment::part_uri(o.seq, i), d.clone()));
        }
    }
    let first_msn = t
        .segs
        .get(t.window_start)
        .map(|c| c.seg.seq)
        .or(t.open.as_ref().map(|o| o.seq))
        .unwrap_or(t.next_seq);
    LiveView {
        rendition: t.spec.id.clone(),
        target_duration: lim.target,
        part_target: lim.part_target.map(|p| p.secs()),
        last_part: if ll { t.last_part() } else { None },
        last_segment: t.segs.last().map(|c| c.seg.seq),
        first_msn,
        ended,
        preload_hint: (ll && !ended).then(|| t.next_part(lim)),
        playlist,
        playlist_skip,
        files: Arc::new(files.into_iter().collect::<BTreeMap<_, _>>()),
    }
}
