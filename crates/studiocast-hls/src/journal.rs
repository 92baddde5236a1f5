//! The segment journal: one line per durable segment, appended as the
//! stream goes. A daemon that dies mid-stream leaves the live playlists
//! without an end; at the next start the journal rebuilds the packager so
//! the recovered segments can be published as a finished (VOD) stream.
//! Parts are never journaled: they live in memory only.
//!
//! Line format: `seq duration pdt_ms|- discontinuity(0|1) map [size
//! iframe_length@iframe_offset|-]` (the last two fields came later; lines
//! without them still read). A torn or malformed line (the last one, after
//! a crash) is skipped.

use crate::mp4::ByteRange;
use crate::segment::Segment;
use crate::time::Ticks;

pub(crate) const FILE: &str = "segments.log";

pub(crate) fn line(s: &Segment) -> String {
    format!(
        "{} {} {} {} {} {} {}\n",
        s.seq,
        s.duration,
        s.pdt_ms.map_or("-".to_string(), |p| p.to_string()),
        u8::from(s.discontinuity),
        s.map,
        s.size,
        s.iframe
            .map_or("-".to_string(), |r| format!("{}@{}", r.length, r.offset)),
    )
}

fn iframe(f: &str) -> Option<Option<ByteRange>> {
    if f == "-" {
        return Some(None);
    }
    let (length, offset) = f.split_once('@')?;
    Some(Some(ByteRange {
        offset: offset.parse().ok()?,
        length: length.parse().ok()?,
    }))
}

fn parse(l: &str) -> Option<Segment> {
    let mut f = l.split_ascii_whitespace();
    let seq = f.next()?.parse().ok()?;
    let duration = Ticks::from_secs(f.next()?.parse().ok()?)?;
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
    let (size, iframe) = match (f.next(), f.next()) {
        (None, _) => (0, None),
        (Some(size), Some(r)) => (size.parse().ok()?, iframe(r)?),
        (Some(_), None) => return None,
    };
    if f.next().is_some() || !map_ok || duration.0 == 0 {
        return None;
    }
    Some(Segment {
        seq,
        duration,
        pdt_ms,
        discontinuity,
        map,
        size,
        iframe,
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
    use super::*;
    use crate::{Action, Chunk, Packager, PackagerConfig, Rendition, RenditionKind};

    fn audio() -> Vec<Rendition> {
        vec![Rendition {
            id: "a".into(),
            kind: RenditionKind::Audio {
                name: "A".into(),
                channels: 2,
                default: true,
                autoselect: true,
                language: None,
            },
            codecs: "mp4a.40.2".into(),
            bandwidth: 128_000,
        }]
    }

    /// Carry out actions as a working disk would; collect the journal.
    fn take(p: &mut Packager, journal: &mut String, actions: Vec<Action>) {
        for a in actions {
            let more = match a {
                Action::WriteSegment { rendition, seq, .. } => {
                    p.segment_written(&rendition, seq, true).unwrap()
                }
                other => vec![other],
            };
            for m in more {
                if let Action::Append { path, data } = m {
                    assert_eq!(path, "a/segments.log");
                    journal.push_str(std::str::from_utf8(&data).unwrap());
                }
            }
        }
    }

    #[test]
    fn a_journal_republishes_what_was_published_and_skips_damage() {
        let config = PackagerConfig {
            part_target: Some(0.5),
            ..PackagerConfig::default()
        };
        let mut p = Packager::new(config.clone(), audio()).unwrap();
        let mut journal = String::new();
        let init = p.push_init("a", vec![1]).unwrap();
        take(&mut p, &mut journal, init);
        for i in 0..20 {
            if i == 12 {
                let d = p.discontinuity();
                take(&mut p, &mut journal, d);
            }
            let chunk = Chunk {
                data: vec![i as u8; 8].into(),
                duration: 0.496,
                independent: true,
                pdt_ms: Some(1_700_000_000_000 + i * 496),
                boundary: i % 4 == 0,
            };
            let a = p.push_chunk("a", chunk).unwrap();
            take(&mut p, &mut journal, a);
        }
        let last = p.flush();
        take(&mut p, &mut journal, last);
        let full = p.media_playlist("a", true).unwrap();
        // A crash tears the last line; garbage must not panic or publish.
        let damaged = format!(
            "{journal}6 1.98\n\u{0}\u{ff}zz\n2 1.0 - 0 init.mp4\n7 1.984 1700000012000 0 init.m"
        );
        let mut r = Packager::recover(config, audio(), &[("a".into(), damaged)]).unwrap();
        assert_eq!(r.segment_count("a"), 5);
        let files: std::collections::HashMap<String, bytes::Bytes> = r
            .end()
            .into_iter()
            .filter_map(|a| match a {
                Action::Write { path, data } => Some((path, data)),
                _ => None,
            })
            .collect();
        assert_eq!(r.media_playlist("a", true).unwrap(), full);
        assert_eq!(files["a/vod.m3u8"], full.as_bytes());
        assert!(full.contains("#EXT-X-DISCONTINUITY\n"), "{full}");
        assert!(full.contains("#EXT-X-ENDLIST"));
        // Parts live in memory only: nothing of them reaches a recovered
        // playlist, VOD or live.
        for (path, text) in &files {
            let text = std::str::from_utf8(text).unwrap();
            for tag in [
                "PART",
                "PRELOAD-HINT",
                "SERVER-CONTROL",
                "RENDITION-REPORT",
                "SKIP",
            ] {
                assert!(!text.contains(&format!("#EXT-X-{tag}")), "{path}: {text}");
            }
        }
        assert!(files["a/live.m3u8"].ends_with(b"#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn lines_round_trip_and_old_lines_still_read() {
        let s = Segment {
            seq: 7,
            duration: Ticks(198_400),
            pdt_ms: Some(1_700_000_000_000),
            discontinuity: true,
            map: "init-1.mp4".into(),
            size: 4096,
            iframe: Some(ByteRange {
                offset: 0,
                length: 1200,
            }),
        };
        assert_eq!(read(&line(&s)), vec![s.clone()]);
        let old = read("7 1.984000 - 1 init.mp4\n");
        assert_eq!(
            (old[0].duration, old[0].size, old[0].iframe),
            (Ticks(198_400), 0, None)
        );
        for bad in [
            "7 1.98 - 0 init.mp4 12\n",
            "7 1.98 - 0 init.mp4 12 x@y\n",
            "7 0 - 0 init.mp4\n",
            "7 1.98 - 0 ../x\n",
        ] {
            assert!(read(bad).is_empty(), "{bad}");
        }
    }
}
