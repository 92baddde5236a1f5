//! The segment journal: one line per published segment, appended as the
//! stream goes. A daemon that dies mid-stream leaves the live playlists
//! without an end; at the next start the journal rebuilds the packager so
//! the recovered segments can be published as a finished (VOD) stream.
//!
//! Line format: `seq duration pdt_ms|- discontinuity(0|1) map`. A torn or
//! malformed line (the last one, after a crash) is skipped.

use crate::segment::Segment;

pub(crate) const FILE: &str = "segments.log";

pub(crate) fn line(s: &Segment) -> String {
    format!(
        "{} {:.6} {} {} {}\n",
        s.seq,
        s.duration,
        s.pdt_ms.map_or("-".to_string(), |p| p.to_string()),
        u8::from(s.discontinuity),
        s.map
    )
}

fn parse(l: &str) -> Option<Segment> {
    let mut f = l.split_ascii_whitespace();
    let seq = f.next()?.parse().ok()?;
    let duration: f64 = f.next()?.parse().ok()?;
    let pdt_ms = match f.next()? {
        "-" => None,
        x => Some(x.parse().ok()?),
    };
    let discontinuity = match f.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let map = f.next()?.to_string();
    let map_ok = !map.is_empty()
        && map
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if f.next().is_some() || !map_ok || !duration.is_finite() || duration <= 0.0 {
        return None;
    }
    Some(Segment {
        seq,
        duration,
        pdt_ms,
        discontinuity,
        map,
    })
}

/// The segments a journal records, in order; damage (torn or malformed
/// lines, sequence numbers that do not go up) is skipped.
pub(crate) fn read(text: &str) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    // Only whole lines: a crash can cut the last one anywhere, even where
    // what is left still parses (a map name cut short).
    let whole = text
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'));
    for seg in whole.filter_map(parse) {
        if out.last().is_some_and(|l| seg.seq <= l.seq) || seg.seq == u64::MAX {
            continue;
        }
        out.push(seg);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Chunk, Packager, PackagerConfig, Rendition, RenditionKind};

    fn audio() -> Vec<Rendition> {
        vec![Rendition {
            id: "a".into(),
            kind: RenditionKind::Audio {
                name: "A".into(),
                channels: 2,
                default: true,
                language: None,
            },
            codecs: "mp4a.40.2".into(),
            bandwidth: 128_000,
        }]
    }

    #[test]
    fn a_journal_republishes_what_was_published_and_skips_damage() {
        let mut p = Packager::new(PackagerConfig::default(), audio()).unwrap();
        let mut journal = String::new();
        let mut take = |p: &mut Packager, actions: Vec<crate::Action>| {
            for a in actions {
                let more = match a {
                    crate::Action::WriteSegment { rendition, seq, .. } => {
                        p.segment_written(&rendition, seq, true).unwrap()
                    }
                    other => vec![other],
                };
                for m in more {
                    if let crate::Action::Append { path, data } = m {
                        assert_eq!(path, "a/segments.log");
                        journal.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        };
        let init = p.push_init("a", vec![1]).unwrap();
        take(&mut p, init);
        for i in 0..5 {
            if i == 3 {
                p.discontinuity();
            }
            let a = p
                .push_chunk(
                    "a",
                    Chunk {
                        data: vec![0; 8],
                        duration: 1.984,
                        independent: true,
                        pdt_ms: Some(1_700_000_000_000 + i * 1984),
                        ends_segment: true,
                    },
                )
                .unwrap();
            take(&mut p, a);
        }
        let full = p.media_playlist("a", true).unwrap();
        // A crash tears the last line; garbage must not panic or publish.
        let damaged = format!(
            "{journal}6 1.98\n\u{0}\u{ff}zz\n2 1.0 - 0 init.mp4\n7 1.984 1700000012000 0 init.m"
        );
        let mut r = Packager::recover(PackagerConfig::default(), audio(), &[("a".into(), damaged)])
            .unwrap();
        assert_eq!(r.segment_count("a"), 5);
        r.end();
        assert_eq!(r.media_playlist("a", true).unwrap(), full);
        assert!(full.contains("#EXT-X-DISCONTINUITY"));
        assert!(full.contains("#EXT-X-ENDLIST"));
    }
}
