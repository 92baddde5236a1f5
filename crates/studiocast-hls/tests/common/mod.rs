//! Helpers shared by the integration tests: renditions, chunks, and a
//! caller whose disk works.
#![allow(dead_code)]

use std::collections::HashMap;

use bytes::Bytes;
use studiocast_hls::{Action, Chunk, HlsError, Packager, Rendition, RenditionKind};

pub const T0: i64 = 1_764_460_800_123; // 2025-11-30T00:00:00.123Z

pub fn video(id: &str, width: u32, height: u32, bandwidth: u64) -> Rendition {
    Rendition {
        id: id.into(),
        kind: RenditionKind::Video {
            width,
            height,
            frame_rate: 30.0,
        },
        codecs: "avc1.64001f".into(),
        bandwidth,
    }
}

pub fn audio(id: &str, name: &str, default: bool) -> Rendition {
    Rendition {
        id: id.into(),
        kind: RenditionKind::Audio {
            name: name.into(),
            channels: 2,
            default,
            autoselect: true,
            language: None,
        },
        codecs: "mp4a.40.2".into(),
        bandwidth: 160_000,
    }
}

pub fn renditions() -> Vec<Rendition> {
    vec![
        video("video", 1280, 720, 2_500_000),
        audio("binaural", "Binaural (headphones)", true),
        audio("stereo", "Stereo", false),
    ]
}

/// A chunk of `dur` seconds starting at `at_ms` after T0.
pub fn chunk_at(at_ms: i64, dur: f64, boundary: bool, independent: bool) -> Chunk {
    Chunk {
        data: Bytes::from(vec![(at_ms / 100) as u8; 10]),
        duration: dur,
        independent,
        pdt_ms: Some(T0 + at_ms),
        boundary,
    }
}

/// Segment `i` as one chunk (standard HLS, whole fragments).
pub fn chunk(i: i64, dur: f64) -> Chunk {
    chunk_at(i * 2000, dur, true, true)
}

/// What a caller whose disk works does: write each segment, confirm it,
/// and carry out what the confirmation asks.
pub fn written(p: &mut Packager, actions: Vec<Action>) -> Vec<Action> {
    let mut out = Vec::new();
    for a in actions {
        if let Action::WriteSegment { rendition, seq, .. } = &a {
            let more = p.segment_written(rendition, *seq, true).unwrap();
            out.push(a.clone());
            out.extend(more);
        } else {
            out.push(a);
        }
    }
    out
}

/// Push a chunk and confirm what it cut.
pub fn push(p: &mut Packager, r: &str, c: Chunk) -> Result<Vec<Action>, HlsError> {
    let a = p.push_chunk(r, c)?;
    Ok(written(p, a))
}

/// End the stream as the worker does: flush, confirm, end.
pub fn finish(p: &mut Packager) -> Vec<Action> {
    let flushed = p.flush();
    let mut a = written(p, flushed);
    a.extend(p.end());
    a
}

pub fn write_map(actions: &[Action]) -> HashMap<String, Bytes> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Write { path, data } | Action::WriteSegment { path, data, .. } => {
                Some((path.clone(), data.clone()))
            }
            Action::Append { .. } => None,
        })
        .collect()
}

pub fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).expect("UTF-8 playlist")
}

pub fn parse_media(text: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()).expect("valid playlist") {
        m3u8_rs::Playlist::MediaPlaylist(m) => m,
        _ => panic!("not a media playlist: {text}"),
    }
}

pub fn parse_master(text: &str) -> m3u8_rs::MasterPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()).expect("valid playlist") {
        m3u8_rs::Playlist::MasterPlaylist(m) => m,
        _ => panic!("not a master playlist: {text}"),
    }
}

/// `#EXT-X-PROGRAM-DATE-TIME` as the packager writes it.
pub fn pdt_line(ms: i64) -> String {
    use chrono::TimeZone;
    let t = chrono::Utc.timestamp_millis_opt(ms).unwrap();
    format!(
        "#EXT-X-PROGRAM-DATE-TIME:{}",
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// A low-latency stream of one video and two audio renditions: video
/// chunks of 10 frames at 30 fps (1/3 s), a key frame every 2 s (a
/// fragment of 6 chunks); audio chunks of 15 AAC frames (0.32 s), every
/// one independent, fragments of 6 chunks (1.92 s).
pub struct LlStream {
    pub p: Packager,
    pub k: i64,
}

pub const VIDEO_PART: f64 = 1.0 / 3.0;
pub const AUDIO_PART: f64 = 15.0 * 1024.0 / 48_000.0;

pub fn ll_config() -> studiocast_hls::PackagerConfig {
    studiocast_hls::PackagerConfig {
        target_duration: 2,
        part_target: Some(0.333),
        dvr_seconds: 30,
        memory_segments: 4,
    }
}

impl LlStream {
    pub fn new(config: studiocast_hls::PackagerConfig, renditions: Vec<Rendition>) -> LlStream {
        let mut p = Packager::new(config, renditions).unwrap();
        let ids: Vec<String> = p.renditions().map(|r| r.id.clone()).collect();
        for id in ids {
            p.push_init(&id, vec![1, 2, 3]).unwrap();
        }
        LlStream { p, k: 0 }
    }

    pub fn standard() -> LlStream {
        LlStream::new(ll_config(), renditions())
    }

    /// The next video chunk.
    pub fn video_chunk(k: i64) -> Chunk {
        let key = k % 6 == 0;
        Chunk {
            data: Bytes::from(vec![k as u8; 100 + (k % 6 == 0) as usize * 900]),
            duration: VIDEO_PART,
            independent: key,
            pdt_ms: Some(T0 + k * 1000 / 3),
            boundary: key,
        }
    }

    pub fn audio_chunk(k: i64) -> Chunk {
        Chunk {
            data: Bytes::from(vec![k as u8; 40]),
            duration: AUDIO_PART,
            independent: true,
            pdt_ms: Some(T0 + k * 320),
            boundary: k % 6 == 0,
        }
    }

    /// One chunk of every rendition (audio ones at their own pace: they
    /// fall behind by 1/75 s a chunk, which does not matter here), with a
    /// working disk. Returns the actions.
    pub fn step(&mut self) -> Vec<Action> {
        let k = self.k;
        self.k += 1;
        let ids: Vec<(String, bool)> = self
            .p
            .renditions()
            .map(|r| (r.id.clone(), matches!(r.kind, RenditionKind::Video { .. })))
            .collect();
        let mut out = Vec::new();
        for (id, is_video) in ids {
            let c = if is_video {
                LlStream::video_chunk(k)
            } else {
                LlStream::audio_chunk(k)
            };
            out.extend(push(&mut self.p, &id, c).unwrap());
        }
        out
    }

    pub fn steps(&mut self, n: usize) -> Vec<Action> {
        (0..n).flat_map(|_| self.step()).collect()
    }

    pub fn playlist(&self, id: &str) -> String {
        text(&self.p.view(id).unwrap().playlist).to_string()
    }

    pub fn delta(&self, id: &str) -> Option<String> {
        self.p
            .view(id)
            .unwrap()
            .playlist_skip
            .map(|b| text(&b).to_string())
    }
}
pub mod ll;
