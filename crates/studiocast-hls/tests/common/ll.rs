//! A strict reader of the low-latency playlists the packager writes, so
//! tests can check the structure m3u8-rs does not model (parts, hints,
//! reports, skips). It refuses what it does not know.
#![allow(dead_code)]

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Part {
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Seg {
    pub msn: u64,
    /// `None` for the open segment (parts only).
    pub uri: Option<String>,
    pub duration: Option<f64>,
    pub parts: Vec<Part>,
    pub discontinuity: bool,
    pub map: Option<String>,
    pub pdt: Option<String>,
    pub gap: bool,
    /// The tags before its first part or EXTINF, in order.
    pub head: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Pl {
    pub version: Option<u64>,
    pub target: Option<u64>,
    pub part_target: Option<f64>,
    pub server_control: HashMap<String, String>,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub skipped: Option<u64>,
    pub segs: Vec<Seg>,
    pub hint: Option<String>,
    pub reports: Vec<(String, u64, u64)>,
    pub endlist: bool,
    pub i_frames_only: bool,
    /// Tag names in order of appearance (first time each), for order checks.
    pub order: Vec<String>,
}

pub fn attrs(s: &str) -> HashMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

impl Pl {
    pub fn complete(&self) -> impl Iterator<Item = &Seg> {
        self.segs.iter().filter(|s| s.uri.is_some())
    }

    pub fn open(&self) -> Option<&Seg> {
        self.segs.last().filter(|s| s.uri.is_none())
    }
}

pub fn parse(text: &str) -> Pl {
    let mut pl = Pl::default();
    let mut cur = Seg::default();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"), "first line");
    for line in lines {
        let (tag, rest) = match line.split_once(':') {
            Some((t, r)) if t.starts_with('#') => (t, r),
            _ => (line, ""),
        };
        if tag.starts_with('#') && !pl.order.iter().any(|t| t == tag) {
            pl.order.push(tag.to_string());
        }
        let before_parts = cur.parts.is_empty();
        match tag {
            "#EXT-X-VERSION" => pl.version = Some(rest.parse().unwrap()),
            "#EXT-X-TARGETDURATION" => pl.target = Some(rest.parse().unwrap()),
            "#EXT-X-SERVER-CONTROL" => pl.server_control = attrs(rest),
            "#EXT-X-PART-INF" => pl.part_target = Some(attrs(rest)["PART-TARGET"].parse().unwrap()),
            "#EXT-X-MEDIA-SEQUENCE" => pl.media_sequence = rest.parse().unwrap(),
            "#EXT-X-DISCONTINUITY-SEQUENCE" => pl.discontinuity_sequence = rest.parse().unwrap(),
            "#EXT-X-INDEPENDENT-SEGMENTS" | "#EXT-X-PLAYLIST-TYPE" => {}
            "#EXT-X-I-FRAMES-ONLY" => pl.i_frames_only = true,
            "#EXT-X-SKIP" => pl.skipped = Some(attrs(rest)["SKIPPED-SEGMENTS"].parse().unwrap()),
            "#EXT-X-DISCONTINUITY" => {
                assert!(before_parts, "DISCONTINUITY after a part");
                cur.discontinuity = true;
                cur.head.push(tag.into());
            }
            "#EXT-X-MAP" => {
                assert!(before_parts, "MAP after a part");
                cur.map = Some(attrs(rest)["URI"].clone());
                cur.head.push(tag.into());
            }
            "#EXT-X-PROGRAM-DATE-TIME" => {
                assert!(before_parts, "PDT after a part");
                cur.pdt = Some(rest.to_string());
                cur.head.push(tag.into());
            }
            "#EXT-X-PART" => {
                let a = attrs(rest);
                cur.parts.push(Part {
                    duration: a["DURATION"].parse().unwrap(),
                    uri: a["URI"].clone(),
                    independent: a.get("INDEPENDENT").is_some_and(|v| v == "YES"),
                });
            }
            "#EXTINF" => {
                cur.duration = Some(rest.trim_end_matches(',').parse().unwrap());
            }
            "#EXT-X-GAP" => cur.gap = true,
            "#EXT-X-BYTERANGE" => {}
            "#EXT-X-PRELOAD-HINT" => {
                let a = attrs(rest);
                assert_eq!(a["TYPE"], "PART");
                pl.hint = Some(a["URI"].clone());
            }
            "#EXT-X-RENDITION-REPORT" => {
                let a = attrs(rest);
                pl.reports.push((
                    a["URI"].clone(),
                    a["LAST-MSN"].parse().unwrap(),
                    a["LAST-PART"].parse().unwrap(),
                ));
            }
            "#EXT-X-ENDLIST" => pl.endlist = true,
            t if t.starts_with('#') => panic!("unexpected tag {line}"),
            uri => {
                assert!(cur.duration.is_some(), "URI without EXTINF: {uri}");
                cur.uri = Some(uri.to_string());
                pl.segs.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.parts.is_empty() || !cur.head.is_empty() {
        pl.segs.push(cur);
    }
    let first = pl.media_sequence + pl.skipped.unwrap_or(0);
    for (i, s) in pl.segs.iter_mut().enumerate() {
        s.msn = first + i as u64;
    }
    pl
}
