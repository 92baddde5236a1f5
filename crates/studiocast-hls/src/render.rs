//! Playlist rendering: the multivariant playlist and the media playlists,
//! written with m3u8-rs.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, Map, MasterPlaylist, MediaPlaylist, MediaPlaylistType,
    MediaSegment, Resolution, VariantStream,
};

use crate::playlist::{Rendition, RenditionKind};
use crate::segment::Segment;

/// The group every audio rendition joins. All renditions in it share one
/// codec (AAC); a different codec needs its own group and variant.
const AUDIO_GROUP: &str = "audio";
/// fMP4 segments need version ≥ 6; 7 lets us use every attribute we emit.
const VERSION: usize = 7;

fn pdt(ms: i64) -> Option<DateTime<FixedOffset>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.fixed_offset())
}

/// Multivariant playlist. Video renditions become variants whose AUDIO
/// group holds every audio rendition; without video, each audio rendition
/// is a variant of its own.
pub(crate) fn master_playlist<'a>(
    renditions: impl Iterator<Item = &'a Rendition> + Clone,
) -> String {
    let audio: Vec<&Rendition> = renditions
        .clone()
        .filter(|r| matches!(r.kind, RenditionKind::Audio { .. }))
        .collect();
    let video: Vec<&Rendition> = renditions
        .filter(|r| matches!(r.kind, RenditionKind::Video { .. }))
        .collect();
    let mut m = MasterPlaylist {
        version: Some(VERSION),
        independent_segments: true,
        ..Default::default()
    };
    let audio_bw = audio.iter().map(|a| a.bandwidth).max().unwrap_or(0);
    if !video.is_empty() {
        for a in &audio {
            if let RenditionKind::Audio {
                name,
                channels,
                default,
                language,
            } = &a.kind
            {
                m.alternatives.push(AlternativeMedia {
                    media_type: AlternativeMediaType::Audio,
                    uri: Some(format!("{}/index.m3u8", a.id)),
                    group_id: AUDIO_GROUP.into(),
                    language: language.clone(),
                    name: name.clone(),
                    default: *default,
                    autoselect: true,
                    channels: Some(channels.to_string()),
                    ..Default::default()
                });
            }
        }
        let audio_codec = audio.first().map(|a| a.codecs.clone());
        for v in &video {
            if let RenditionKind::Video {
                width,
                height,
                frame_rate,
            } = v.kind
            {
                m.variants.push(VariantStream {
                    uri: format!("{}/index.m3u8", v.id),
                    bandwidth: v.bandwidth + audio_bw,
                    codecs: Some(match &audio_codec {
                        Some(a) => format!("{},{a}", v.codecs),
                        None => v.codecs.clone(),
                    }),
                    resolution: Some(Resolution {
                        width: width as u64,
                        height: height as u64,
                    }),
                    frame_rate: Some(frame_rate),
                    audio: audio_codec.as_ref().map(|_| AUDIO_GROUP.to_string()),
                    ..Default::default()
                });
            }
        }
    } else {
        for a in &audio {
            m.variants.push(VariantStream {
                uri: format!("{}/index.m3u8", a.id),
                bandwidth: a.bandwidth,
                codecs: Some(a.codecs.clone()),
                ..Default::default()
            });
        }
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = m.write_to(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A media playlist: the live window (from `window_start`) or, for VOD,
/// every segment. `next_seq` is the sequence number the next segment will
/// get (the playlist's media sequence while it is empty).
pub(crate) fn render_media(
    segments: &[Segment],
    window_start: usize,
    discontinuity_seq: u64,
    next_seq: u64,
    target: u64,
    ended: bool,
    vod: bool,
) -> String {
    let start = if vod {
        0
    } else {
        window_start.min(segments.len())
    };
    let segs = &segments[start..];
    let mut last_map: Option<&str> = None;
    let mut pl = MediaPlaylist {
        version: Some(VERSION),
        target_duration: target,
        media_sequence: segs.first().map_or(next_seq, |s| s.seq),
        discontinuity_sequence: if vod { 0 } else { discontinuity_seq },
        end_list: ended,
        playlist_type: vod.then_some(MediaPlaylistType::Vod),
        independent_segments: true,
        ..Default::default()
    };
    for s in segs {
        let map = (last_map != Some(s.map.as_str())).then(|| Map {
            uri: s.map.clone(),
            ..Default::default()
        });
        last_map = Some(s.map.as_str());
        pl.segments.push(MediaSegment {
            uri: s.uri(),
            duration: s.duration as f32,
            discontinuity: s.discontinuity,
            map,
            program_date_time: s.pdt_ms.and_then(pdt),
            ..Default::default()
        });
    }
    let mut out = Vec::new();
    let _ = pl.write_to(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
