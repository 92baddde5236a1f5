//! Media playlists: the live one (low-latency or standard, full or delta,
//! in memory or as the file on disk), the VOD one and the I-frame one.
//!
//! Tag order follows RFC 8216bis: playlist tags first; per segment
//! `EXT-X-DISCONTINUITY`, `EXT-X-MAP`, `EXT-X-PROGRAM-DATE-TIME` before its
//! first `EXT-X-PART` (4.4.4.9), then `EXTINF` and the URI; after the last
//! segment the open segment's parts, the preload hint, the rendition
//! reports and `EXT-X-ENDLIST`.

use crate::config::Limits;
use crate::live::PartRef;
use crate::segment::{Closed, Disk, Open, Part, Segment};
use crate::track::Track;
use crate::writer::{ServerControl, Writer};

/// fMP4 with `EXT-X-MAP` needs version 6; 7 covers every attribute used
/// (RFC 8216bis 8: no low-latency tag but `EXT-X-SKIP` needs more).
const VERSION: u8 = 7;
/// `EXT-X-SKIP` needs version 9 (RFC 8216bis 8).
const VERSION_SKIP: u8 = 9;

/// Which live playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The whole live window.
    Full,
    /// A delta update skipping that many segments (`_HLS_skip=YES`).
    Delta(usize),
    /// The file on disk: no parts or low-latency tags (parts are in memory
    /// only), up to the first segment not yet confirmed, failed writes as
    /// gaps.
    Disk,
}

/// The tags that go before a segment's first part or its `EXTINF`.
struct Head<'a> {
    discontinuity: bool,
    map: &'a str,
    pdt_ms: Option<i64>,
    /// First segment listed (of the playlist, or after a skip): `EXT-X-MAP`
    /// and `EXT-X-PROGRAM-DATE-TIME` go before it whatever came earlier.
    first: bool,
    prev_map: Option<&'a str>,
}

fn head(w: &mut Writer, h: Head<'_>) {
    if h.discontinuity {
        w.discontinuity();
    }
    if h.first || h.prev_map != Some(h.map) {
        w.map(h.map);
    }
    if h.first || h.discontinuity {
        if let Some(ms) = h.pdt_ms {
            w.program_date_time(ms);
        }
    }
}

fn parts(w: &mut Writer, seq: u64, parts: &[Part]) {
    for (i, p) in parts.iter().enumerate() {
        w.part(seq, i, p.duration, p.independent);
    }
}

/// A complete segment's lines in a live playlist.
fn closed(
    w: &mut Writer,
    c: &Closed,
    first: bool,
    prev_map: Option<&str>,
    with_parts: bool,
    gap: bool,
) {
    head(
        w,
        Head {
            discontinuity: c.live_discontinuity,
            map: &c.seg.map,
            pdt_ms: c.seg.pdt_ms,
            first,
            prev_map,
        },
    );
    if with_parts {
        parts(w, c.seg.seq, &c.parts);
    }
    w.extinf(c.seg.duration);
    if gap {
        w.gap();
    }
    w.segment(c.seg.seq);
}

fn open(w: &mut Writer, o: &Open, first: bool, prev_map: Option<&str>) {
    head(
        w,
        Head {
            discontinuity: o.discontinuity,
            map: &o.map,
            pdt_ms: o.pdt_ms,
            first,
            prev_map,
        },
    );
    parts(w, o.seq, &o.parts);
}

/// The lines of segment `i` once they no longer change (it left memory):
/// no parts, a failed write is a gap, tags relative to segment `i - 1`.
pub(crate) fn stable_lines(segs: &[Closed], i: usize) -> String {
    let mut w = Writer::with_capacity(64);
    let prev_map = i.checked_sub(1).map(|p| segs[p].seg.map.as_str());
    closed(
        &mut w,
        &segs[i],
        prev_map.is_none(),
        prev_map,
        false,
        segs[i].disk == Disk::Failed,
    );
    w.finish()
}

/// A live media playlist. `reports` are the siblings' newest parts, for
/// the rendition reports of a low-latency playlist.
pub(crate) fn live(
    t: &Track,
    lim: &Limits,
    mode: Mode,
    reports: &[(&str, PartRef)],
    ended: bool,
) -> String {
    render_live(t, lim, mode, reports, ended, true)
}

/// [`live`], optionally formatting every line afresh (the reference the
/// stable lines are tested against).
pub(crate) fn render_live(
    t: &Track,
    lim: &Limits,
    mode: Mode,
    reports: &[(&str, PartRef)],
    ended: bool,
    use_stable: bool,
) -> String {
    let ll = lim.part_target.is_some() && mode != Mode::Disk;
    let end = match mode {
        Mode::Disk => t.first_pending().unwrap_or(t.segs.len()),
        _ => t.segs.len(),
    };
    let start = t.window_start.min(end);
    let mut w = Writer::with_capacity(t.stable.len() + 4096);
    live_header(&mut w, t, lim, mode, ll);
    let skipped = match mode {
        Mode::Delta(n) => {
            w.skip(n);
            n
        }
        _ => 0,
    };
    let first = (start + skipped).min(end);
    let parts_from = if ll { t.parts_listed_from(lim) } else { end };
    let mut i = first;
    while i < end {
        if use_stable && i > first && t.stable.covers(i) {
            w.raw(t.stable.from(i));
            i = t.stable.end();
            continue;
        }
        let c = &t.segs[i];
        let gap = c.disk == Disk::Failed && (mode == Mode::Disk || i < t.mem_from);
        let prev_map = (i > first).then(|| t.segs[i - 1].seg.map.as_str());
        closed(&mut w, c, i == first, prev_map, ll && i >= parts_from, gap);
        i += 1;
    }
    if ll {
        if let Some(o) = &t.open {
            let prev_map = (end > first).then(|| t.segs[end - 1].seg.map.as_str());
            open(&mut w, o, end <= first, prev_map);
        }
        if !ended {
            w.preload_hint(t.next_part(lim));
        }
        for (id, last) in reports {
            w.rendition_report(id, *last);
        }
    }
    if ended {
        w.endlist();
    }
    w.finish()
}

fn live_header(w: &mut Writer, t: &Track, lim: &Limits, mode: Mode, ll: bool) {
    w.extm3u();
    w.version(if matches!(mode, Mode::Delta(_)) {
        VERSION_SKIP
    } else {
        VERSION
    });
    w.target_duration(lim.target);
    if let (true, Some(pt), Some(skip)) = (ll, lim.part_target, lim.skip_until) {
        // RFC 8216bis 4.4.3.8: PART-HOLD-BACK should be at least three part
        // targets; CAN-SKIP-UNTIL at least six target durations. HOLD-BACK
        // is left to its default, three target durations.
        w.server_control(ServerControl {
            part_hold_back: pt.times(3),
            can_skip_until: skip,
        });
        w.part_inf(pt);
    }
    let msn = match (t.segs.get(t.window_start), &t.open) {
        (Some(c), _) => c.seg.seq,
        (None, Some(o)) => o.seq,
        (None, None) => t.next_seq,
    };
    w.media_sequence(msn);
    w.discontinuity_sequence(t.discontinuity_seq);
    w.independent_segments();
}

fn vod_header(w: &mut Writer, lim: &Limits, first_seq: u64) {
    w.extm3u();
    w.version(VERSION);
    w.target_duration(lim.target);
    w.media_sequence(first_seq);
    w.playlist_type_vod();
}

/// The VOD playlist: every durable segment, in order.
pub(crate) fn vod(segs: &[&Segment], lim: &Limits, next_seq: u64) -> String {
    let mut w = Writer::with_capacity(64 * segs.len() + 256);
    vod_header(&mut w, lim, segs.first().map_or(next_seq, |s| s.seq));
    w.independent_segments();
    let mut prev_map: Option<&str> = None;
    for (k, s) in segs.iter().enumerate() {
        head(
            &mut w,
            Head {
                discontinuity: s.discontinuity && k > 0,
                map: &s.map,
                pdt_ms: s.pdt_ms,
                first: k == 0,
                prev_map,
            },
        );
        prev_map = Some(&s.map);
        w.extinf(s.duration);
        w.segment(s.seq);
    }
    w.endlist();
    w.finish()
}

/// The I-frame playlist of a video rendition: the same segments as its
/// VOD playlist, each reduced to its first frame by a byte range; a
/// segment whose frame could not be located stays on the timeline as a
/// gap. `None` when no frame was located at all.
pub(crate) fn iframes(segs: &[&Segment], lim: &Limits, next_seq: u64) -> Option<String> {
    if !segs.iter().any(|s| s.iframe.is_some()) {
        return None;
    }
    let mut w = Writer::with_capacity(80 * segs.len() + 256);
    vod_header(&mut w, lim, segs.first().map_or(next_seq, |s| s.seq));
    w.i_frames_only();
    let mut prev_map: Option<&str> = None;
    for (k, s) in segs.iter().enumerate() {
        if s.discontinuity && k > 0 {
            w.discontinuity();
        }
        if prev_map != Some(s.map.as_str()) {
            w.map(&s.map);
        }
        prev_map = Some(&s.map);
        // An I-frame lasts until the next one: here, the segment.
        w.extinf(s.duration);
        match s.iframe {
            Some(r) => w.byterange(r),
            None => w.gap(),
        }
        w.segment(s.seq);
    }
    w.endlist();
    Some(w.finish())
}
