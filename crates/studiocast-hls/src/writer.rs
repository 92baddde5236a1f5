//! A typed writer for media playlists, tag by tag. m3u8-rs cannot write
//! playlist-level tags (it drops them), so the low-latency tags are
//! written here; each tag has one method, so its syntax lives in one place.
//! Writing to a `String` cannot fail, hence the ignored `fmt` results.

use std::fmt::Write;

use chrono::{SecondsFormat, TimeZone, Utc};

use crate::live::PartRef;
use crate::mp4::ByteRange;
use crate::segment::{part_uri, segment_uri};
use crate::time::Ticks;

#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: String,
}

/// `EXT-X-SERVER-CONTROL` attributes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerControl {
    pub(crate) part_hold_back: Ticks,
    pub(crate) can_skip_until: Ticks,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Writer {
        Writer {
            out: String::with_capacity(n),
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }

    /// Lines rendered earlier (the stable part of a long playlist).
    pub(crate) fn raw(&mut self, lines: &str) {
        self.out.push_str(lines);
    }

    pub(crate) fn extm3u(&mut self) {
        self.out.push_str("#EXTM3U\n");
    }

    pub(crate) fn version(&mut self, v: u8) {
        let _ = writeln!(self.out, "#EXT-X-VERSION:{v}");
    }

    pub(crate) fn target_duration(&mut self, secs: u64) {
        let _ = writeln!(self.out, "#EXT-X-TARGETDURATION:{secs}");
    }

    pub(crate) fn server_control(&mut self, c: ServerControl) {
        let _ = writeln!(
            self.out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}",
            c.part_hold_back, c.can_skip_until
        );
    }

    pub(crate) fn part_inf(&mut self, part_target: Ticks) {
        let _ = writeln!(self.out, "#EXT-X-PART-INF:PART-TARGET={part_target}");
    }

    pub(crate) fn media_sequence(&mut self, n: u64) {
        let _ = writeln!(self.out, "#EXT-X-MEDIA-SEQUENCE:{n}");
    }

    pub(crate) fn discontinuity_sequence(&mut self, n: u64) {
        let _ = writeln!(self.out, "#EXT-X-DISCONTINUITY-SEQUENCE:{n}");
    }

    pub(crate) fn playlist_type_vod(&mut self) {
        self.out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }

    pub(crate) fn i_frames_only(&mut self) {
        self.out.push_str("#EXT-X-I-FRAMES-ONLY\n");
    }

    pub(crate) fn independent_segments(&mut self) {
        self.out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }

    pub(crate) fn skip(&mut self, skipped_segments: usize) {
        let _ = writeln!(self.out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped_segments}");
    }

    pub(crate) fn map(&mut self, uri: &str) {
        let _ = writeln!(self.out, "#EXT-X-MAP:URI=\"{uri}\"");
    }

    pub(crate) fn discontinuity(&mut self) {
        self.out.push_str("#EXT-X-DISCONTINUITY\n");
    }

    /// UTC with milliseconds; nothing for a time chrono cannot represent.
    pub(crate) fn program_date_time(&mut self, ms: i64) {
        if let Some(t) = Utc.timestamp_millis_opt(ms).single() {
            let t = t.to_rfc3339_opts(SecondsFormat::Millis, true);
            let _ = writeln!(self.out, "#EXT-X-PROGRAM-DATE-TIME:{t}");
        }
    }

    pub(crate) fn part(&mut self, seq: u64, index: usize, duration: Ticks, independent: bool) {
        let _ = write!(
            self.out,
            "#EXT-X-PART:DURATION={duration},URI=\"{}\"",
            part_uri(seq, index)
        );
        self.out.push_str(if independent {
            ",INDEPENDENT=YES\n"
        } else {
            "\n"
        });
    }

    pub(crate) fn extinf(&mut self, duration: Ticks) {
        let _ = writeln!(self.out, "#EXTINF:{duration},");
    }

    pub(crate) fn byterange(&mut self, r: ByteRange) {
        let _ = writeln!(self.out, "#EXT-X-BYTERANGE:{}@{}", r.length, r.offset);
    }

    pub(crate) fn gap(&mut self) {
        self.out.push_str("#EXT-X-GAP\n");
    }

    pub(crate) fn segment(&mut self, seq: u64) {
        self.out.push_str(&segment_uri(seq));
        self.out.push('\n');
    }

    pub(crate) fn preload_hint(&mut self, next: PartRef) {
        let _ = writeln!(
            self.out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            part_uri(next.msn, next.part as usize)
        );
    }

    /// The report on a sibling rendition, whose media playlist sits next
    /// to this one's folder.
    pub(crate) fn rendition_report(&mut self, id: &str, last: PartRef) {
        let _ = writeln!(
            self.out,
            "#EXT-X-RENDITION-REPORT:URI=\"../{id}/index.m3u8\",LAST-MSN={},LAST-PART={}",
            last.msn, last.part
        );
    }

    pub(crate) fn endlist(&mut self) {
        self.out.push_str("#EXT-X-ENDLIST\n");
    }
}
