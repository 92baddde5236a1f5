//! The segment journal: one line per published segment, appended as the
//! stream goes. A daemon that dies mid-stream leaves the live playlists
//! without an end; at the next start the journal rebuilds the packager so
//! the recovered segments can be published as a finished (VOD) stream.
//!
//! Line format: `seq duration pdt_ms|- discontinuity(0|1) map`. A torn or
//! malformed line (the last one, after a crash) is skipped.

use crate::playlist::{Segment, State};
use crate::{HlsError, Packager, PackagerConfig, Rendition};

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

impl Packager {
    /// Rebuild a stream's packager from its journals (`(rendition id,
    /// journal text)`), ready for [`Packager::end`] to write the final
    /// playlists. Renditions without a journal end up empty.
    pub fn recover(
        config: PackagerConfig,
        renditions: Vec<Rendition>,
        journals: &[(String, String)],
    ) -> Result<Self, HlsError> {
        let mut p = Packager::new(config, renditions)?;
        for st in &mut p.states {
            let Some((_, text)) = journals.iter().find(|(id, _)| *id == st.spec.id) else {
                continue;
            };
            restore(st, text);
        }
        Ok(p)
    }
}

fn restore(st: &mut State, text: &str) {
    let mut maps: Vec<String> = Vec::new();
    for seg in text.lines().filter_map(parse) {
        // Sequence numbers only go up; anything else is damage.
        if st.segments.last().is_some_and(|l| seg.seq <= l.seq) {
            continue;
        }
        let Some(next) = seg.seq.checked_add(1) else {
            continue;
        };
        if !maps.contains(&seg.map) {
            maps.push(seg.map.clone());
        }
        st.next_seq = next;
        st.init_uri = Some(seg.map.clone());
        st.segments.push(seg);
    }
    st.init_count = maps.len() as u32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chunk, RenditionKind};

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
        let mut take = |actions: Vec<crate::Action>| {
            for a in actions {
                if let crate::Action::Append { path, data } = a {
                    assert_eq!(path, "a/segments.log");
                    journal.push_str(std::str::from_utf8(&data).unwrap());
                }
            }
        };
        take(p.push_init("a", vec![1]).unwrap());
        for i in 0..5 {
            if i == 3 {
                p.discontinuity();
            }
            take(
                p.push_chunk(
                    "a",
                    Chunk {
                        data: vec![0; 8],
                        duration: 1.984,
                        independent: true,
                        pdt_ms: Some(1_700_000_000_000 + i * 1984),
                        ends_segment: true,
                    },
                )
                .unwrap(),
            );
        }
        let full = p.media_playlist("a", true).unwrap();
        // A crash tears the last line; garbage must not panic or publish.
        let damaged = format!("{journal}6 1.98\n\u{0}\u{ff}zz\n2 1.0 - 0 init.mp4\n");
        let mut r = Packager::recover(PackagerConfig::default(), audio(), &[("a".into(), damaged)])
            .unwrap();
        assert_eq!(r.segment_count("a"), 5);
        r.end();
        assert_eq!(r.media_playlist("a", true).unwrap(), full);
        assert!(full.contains("#EXT-X-DISCONTINUITY"));
        assert!(full.contains("#EXT-X-ENDLIST"));
    }
}
