//! `LiveView`s built by hand, as the packager would publish them, with
//! marker comments (`## view 12.3`) so that a test can tell which view
//! answered.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use studiocast_server::{LiveView, PartRef};

/// A low-latency rendition: `parts` parts of `part_target` s per segment,
/// target duration `target` s, the window starting at `first_msn`.
#[derive(Clone)]
pub struct Stream {
    pub rendition: &'static str,
    pub target: u64,
    pub part_target: f64,
    pub parts: u32,
    pub first_msn: u64,
}

pub const VIDEO: Stream = Stream {
    rendition: "video",
    target: 2,
    part_target: 0.5,
    parts: 4,
    first_msn: 10,
};

pub fn part_name(msn: u64, part: u32) -> String {
    format!("seg{msn:06}.p{part}.m4s")
}

pub fn segment_name(msn: u64) -> String {
    format!("seg{msn:06}.m4s")
}

/// The bytes every view gives a part, so a test can check what it got.
pub fn part_bytes(msn: u64, part: u32) -> Bytes {
    Bytes::from(format!("part {msn}.{part} ").repeat(8))
}

pub fn segment_bytes(msn: u64) -> Bytes {
    Bytes::from(format!("segment {msn} ").repeat(16))
}

impl Stream {
    /// The view once part `part` of segment `msn` is published; the
    /// segment is complete when that is its last part.
    pub fn at(&self, msn: u64, part: u32) -> LiveView {
        let complete_to = if part + 1 == self.parts { msn } else { msn - 1 };
        let next = if part + 1 == self.parts {
            (msn + 1, 0)
        } else {
            (msn, part + 1)
        };
        let mut files = BTreeMap::new();
        files.insert(
            "init.mp4".to_string(),
            Bytes::from_static(b"ftyp-moov-init"),
        );
        let mut pl = self.head("full");
        for s in self.first_msn..=complete_to {
            files.insert(segment_name(s), segment_bytes(s));
            self.list_parts(&mut pl, &mut files, s, self.parts - 1);
            writeln!(
                pl,
                "#EXTINF:{:.3},\n{}",
                self.target as f64,
                segment_name(s)
            )
            .unwrap();
        }
        if complete_to < msn {
            self.list_parts(&mut pl, &mut files, msn, part);
        }
        let hint = format!(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"\n",
            part_name(next.0, next.1)
        );
        pl.push_str(&hint);
        pl.push_str(&format!("## view {msn}.{part}\n"));
        let skipped = complete_to.saturating_sub(self.first_msn);
        let skip = (skipped >= 2).then(|| {
            let mut d = self.head("delta");
            writeln!(d, "#EXT-X-SKIP:SKIPPED-SEGMENTS={}", skipped - 1).unwrap();
            d.push_str(&hint);
            d.push_str(&format!("## view {msn}.{part}\n"));
            Bytes::from(d)
        });
        LiveView {
            rendition: self.rendition.to_string(),
            target_duration: self.target,
            part_target: Some(self.part_target),
            last_part: Some(PartRef { msn, part }),
            last_segment: (complete_to >= self.first_msn).then_some(complete_to),
            first_msn: self.first_msn,
            preload_hint: Some(PartRef {
                msn: next.0,
                part: next.1,
            }),
            ended: false,
            playlist: Bytes::from(pl),
            playlist_skip: skip,
            files: Arc::new(files),
        }
    }

    /// The view after the stream ended at part `part` of `msn`.
    pub fn ended_at(&self, msn: u64, part: u32) -> LiveView {
        let mut v = self.at(msn, part);
        let mut pl = String::from_utf8(v.playlist.to_vec()).unwrap();
        pl = pl
            .lines()
            .filter(|l| !l.starts_with("#EXT-X-PRELOAD-HINT"))
            .map(|l| format!("{l}\n"))
            .collect();
        pl.push_str("#EXT-X-ENDLIST\n");
        v.playlist = Bytes::from(pl);
        v.ended = true;
        v.preload_hint = None;
        v
    }

    fn head(&self, kind: &str) -> String {
        let mut h = String::new();
        writeln!(h, "#EXTM3U\n#EXT-X-VERSION:9").unwrap();
        writeln!(h, "#EXT-X-TARGETDURATION:{}", self.target).unwrap();
        writeln!(
            h,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},CAN-SKIP-UNTIL={}",
            3.0 * self.part_target,
            6 * self.target
        )
        .unwrap();
        writeln!(h, "#EXT-X-PART-INF:PART-TARGET={:.3}", self.part_target).unwrap();
        writeln!(h, "#EXT-X-MEDIA-SEQUENCE:{}", self.first_msn).unwrap();
        writeln!(h, "#EXT-X-MAP:URI=\"init.mp4\"\n## {kind}").unwrap();
        h
    }

    fn list_parts(
        &self,
        pl: &mut String,
        files: &mut BTreeMap<String, Bytes>,
        msn: u64,
        last: u32,
    ) {
        for p in 0..=last {
            files.insert(part_name(msn, p), part_bytes(msn, p));
            writeln!(
                pl,
                "#EXT-X-PART:DURATION={:.3},URI=\"{}\"",
                self.part_target,
                part_name(msn, p)
            )
            .unwrap();
        }
    }
}

/// A standard-latency view (no parts, no blocking reload) with segments
/// `first..=last`.
pub fn standard(first: u64, last: u64) -> LiveView {
    let mut pl = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n");
    writeln!(
        pl,
        "#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-MAP:URI=\"init.mp4\""
    )
    .unwrap();
    let mut files = BTreeMap::new();
    for s in first..=last {
        writeln!(pl, "#EXTINF:2.000,\n{}", segment_name(s)).unwrap();
        files.insert(segment_name(s), segment_bytes(s));
    }
    pl.push_str(&format!("## standard {last}\n"));
    LiveView {
        rendition: "audio".into(),
        target_duration: 2,
        part_target: None,
        last_part: None,
        last_segment: Some(last),
        first_msn: first,
        preload_hint: None,
        ended: false,
        playlist: Bytes::from(pl),
        playlist_skip: None,
        files: Arc::new(files),
    }
}
