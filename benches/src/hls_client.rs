//! Just enough of an HLS reader for the load generator: the master
//! playlist's variants and default audio, and a media playlist's segments,
//! parts, preload hint and server control. Written for playlists from any
//! origin (studiocast, nginx serving files), so it reads the RFC 8216bis
//! tags rather than the studiocast packager's types.

/// A variant of the master playlist, with its default audio rendition.
#[derive(Debug, Clone)]
pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub audio: Option<String>,
}

/// The master playlist: its variants, largest first as listed.
pub fn parse_master(text: &str) -> Vec<Variant> {
    let mut audio_default: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-MEDIA:") {
            let a = attributes(attrs);
            if get(&a, "TYPE") == Some("AUDIO") && get(&a, "DEFAULT") == Some("YES") {
                if let (Some(g), Some(u)) = (get(&a, "GROUP-ID"), get(&a, "URI")) {
                    audio_default.push((g.to_string(), u.to_string()));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut pending: Option<(u64, Option<String>)> = None;
    for line in text.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let a = attributes(attrs);
            let bw = get(&a, "BANDWIDTH")
                .and_then(|b| b.parse().ok())
                .unwrap_or(0);
            let group = get(&a, "AUDIO");
            let audio = group.and_then(|g| {
                audio_default
                    .iter()
                    .find(|(group, _)| group == g)
                    .map(|(_, u)| u.clone())
            });
            // A group with no default rendition (the head-tracked one) is
            // what only a special player asks for: viewers take the others.
            pending = (group.is_none() || audio.is_some()).then_some((bw, audio));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            if let Some((bandwidth, audio)) = pending.take() {
                out.push(Variant {
                    uri: line.trim().to_string(),
                    bandwidth,
                    audio,
                });
            }
        }
    }
    out
}

/// One part of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

/// A segment: complete (with its URI) or still being written (parts only).
#[derive(Debug, Clone)]
pub struct Segment {
    pub msn: u64,
    pub uri: Option<String>,
    pub duration: f64,
    /// Capture time of the first sample, ms since the Unix epoch.
    pub pdt_ms: Option<i64>,
    pub parts: Vec<Part>,
}

/// A media playlist as a player sees it.
#[derive(Debug, Clone, Default)]
pub struct Media {
    pub target_duration: f64,
    pub part_target: Option<f64>,
    pub can_block: bool,
    /// `CAN-SKIP-UNTIL` is offered: reloads can ask for a delta update.
    pub can_skip: bool,
    pub ended: bool,
    pub segments: Vec<Segment>,
    pub preload_hint: Option<String>,
}

impl Media {
    /// The request that asks for the part after the newest one listed
    /// (`_HLS_msn`, `_HLS_part`), as a low-latency player blocks on it.
    pub fn next_part(&self) -> Option<(u64, u64)> {
        let last = self.segments.last()?;
        Some(match &last.uri {
            Some(_) => (last.msn + 1, 0),
            None => (last.msn, last.parts.len() as u64),
        })
    }

    /// The end time (ms since the epoch) of every part, newest last.
    pub fn part_ends(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for s in &self.segments {
            let Some(start) = s.pdt_ms else { continue };
            let mut t = start as f64;
            for p in &s.parts {
                t += p.duration * 1000.0;
                out.push((p.uri.clone(), t as i64));
            }
        }
        out
    }

    /// The end time of every complete segment.
    pub fn segment_ends(&self) -> Vec<(String, i64)> {
        self.segments
            .iter()
            .filter_map(|s| {
                let uri = s.uri.clone()?;
                Some((uri, s.pdt_ms? + (s.duration * 1000.0) as i64))
            })
            .collect()
    }
}

pub fn parse_media(text: &str) -> Media {
    let mut m = Media::default();
    let mut msn = 0u64;
    let mut cur = Segment {
        msn: 0,
        uri: None,
        duration: 0.0,
        pdt_ms: None,
        parts: Vec::new(),
    };
    let mut started = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            m.target_duration = v.parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.parse().unwrap_or(0);
            cur.msn = msn;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            let a = attributes(v);
            let n: u64 = get(&a, "SKIPPED-SEGMENTS")
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            msn += n;
            cur.msn = msn;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            m.part_target = get(&attributes(v), "PART-TARGET").and_then(|x| x.parse().ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            let a = attributes(v);
            m.can_block = get(&a, "CAN-BLOCK-RELOAD") == Some("YES");
            m.can_skip = get(&a, "CAN-SKIP-UNTIL").is_some();
        } else if line == "#EXT-X-ENDLIST" {
            m.ended = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            cur.pdt_ms = chrono::DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|t| t.timestamp_millis());
            started = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let a = attributes(v);
            if let (Some(uri), Some(d)) = (get(&a, "URI"), get(&a, "DURATION")) {
                cur.parts.push(Part {
                    uri: uri.to_string(),
                    duration: d.parse().unwrap_or(0.0),
                    independent: get(&a, "INDEPENDENT") == Some("YES"),
                });
            }
            started = true;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            cur.duration = v
                .split(',')
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0.0);
            started = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            let a = attributes(v);
            if get(&a, "TYPE") == Some("PART") {
                m.preload_hint = get(&a, "URI").map(str::to_string);
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            cur.uri = Some(line.to_string());
            let next_pdt = cur.pdt_ms.map(|p| p + (cur.duration * 1000.0) as i64);
            msn += 1;
            let done = std::mem::replace(
                &mut cur,
                Segment {
                    msn,
                    uri: None,
                    duration: 0.0,
                    pdt_ms: next_pdt,
                    parts: Vec::new(),
                },
            );
            m.segments.push(done);
            started = false;
        }
    }
    if started || !cur.parts.is_empty() {
        cur.duration = cur.parts.iter().map(|p| p.duration).sum();
        m.segments.push(cur);
    }
    m
}

fn attributes(s: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            value = &q[..end];
            rest = q.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = &rest[..end];
            rest = &rest[end..];
        }
        out.push((key, value));
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

fn get<'a>(a: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    a.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.02,CAN-SKIP-UNTIL=12\n#EXT-X-PART-INF:PART-TARGET=0.341333\n#EXT-X-MEDIA-SEQUENCE:40\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:00.000Z\n#EXT-X-PART:DURATION=1.0,URI=\"seg000040.p0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=1.0,URI=\"seg000040.p1.m4s\"\n#EXTINF:2.000,\nseg000040.m4s\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:02.000Z\n#EXT-X-PART:DURATION=0.5,URI=\"seg000041.p0.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg000041.p1.m4s\"\n";

    #[test]
    fn a_low_latency_playlist_reads_as_a_player_reads_it() {
        let m = parse_media(LL);
        assert!(m.can_block);
        assert_eq!(m.part_target, Some(0.341333));
        assert_eq!(m.segments.len(), 2);
        assert_eq!(m.segments[0].msn, 40);
        assert_eq!(m.segments[0].uri.as_deref(), Some("seg000040.m4s"));
        assert_eq!(m.segments[1].msn, 41);
        assert!(m.segments[1].uri.is_none());
        assert_eq!(m.next_part(), Some((41, 1)));
        assert_eq!(m.preload_hint.as_deref(), Some("seg000041.p1.m4s"));
        let ends = m.part_ends();
        assert_eq!(ends.len(), 3);
        assert_eq!(ends[2].1 - ends[0].1, 1500);
        assert_eq!(m.segment_ends().len(), 1);
    }

    #[test]
    fn the_master_pairs_each_variant_with_its_default_audio() {
        let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"B\",DEFAULT=YES,URI=\"binaural/index.m3u8\"\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"S\",DEFAULT=NO,URI=\"stereo/index.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"aud\"\n720p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1000000,AUDIO=\"aud\"\n360p/index.m3u8\n";
        let v = parse_master(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].uri, "720p/index.m3u8");
        assert_eq!(v[0].bandwidth, 3_000_000);
        assert_eq!(v[1].audio.as_deref(), Some("binaural/index.m3u8"));
        // The head-tracked group (no default rendition) is left out.
        let more = format!(
            "{text}#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a4\",NAME=\"360\",CHANNELS=\"4\",URI=\"ambisonic/index.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=3200000,AUDIO=\"a4\"\n720p/index.m3u8\n"
        );
        assert_eq!(parse_master(&more).len(), 2);
    }
}
