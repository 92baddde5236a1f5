//! The multivariant playlists, written with m3u8-rs (which writes them
//! whole, unlike media playlists).

use m3u8_rs::{AlternativeMedia, AlternativeMediaType, MasterPlaylist, Resolution, VariantStream};

use crate::config::{Rendition, RenditionKind};

/// The group every audio rendition joins. All renditions in it share one
/// codec (AAC); a different codec needs its own group and variant.
const AUDIO_GROUP: &str = "audio";
/// Same as the media playlists.
const VERSION: usize = 7;

/// A rendition with the bit rates to announce for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rated<'a> {
    pub(crate) spec: &'a Rendition,
    /// Peak segment bit rate.
    pub(crate) peak: u64,
    pub(crate) average: Option<u64>,
    /// Peak bit rate of its I-frame playlist, when it has one (VOD).
    pub(crate) iframes: Option<u64>,
}

fn alternative(a: &Rendition) -> Option<AlternativeMedia> {
    let RenditionKind::Audio {
        name,
        channels,
        default,
        language,
    } = &a.kind
    else {
        return None;
    };
    Some(AlternativeMedia {
        media_type: AlternativeMediaType::Audio,
        uri: Some(format!("{}/index.m3u8", a.id)),
        group_id: AUDIO_GROUP.into(),
        language: language.clone(),
        name: name.clone(),
        default: *default,
        autoselect: true,
        // RFC 8216bis 4.4.6.1: needed when renditions of one codec differ
        // in channels; given on every one.
        channels: Some(channels.to_string()),
        ..Default::default()
    })
}

/// Multivariant playlist. Video renditions become variants whose AUDIO
/// group holds every audio rendition (BANDWIDTH: the video's plus the
/// largest audio's), each with its I-frame stream when it has one;
/// without video, each audio rendition is a variant of its own.
pub(crate) fn master_playlist(all: &[Rated<'_>]) -> String {
    let (video, audio): (Vec<&Rated>, Vec<&Rated>) = all.iter().partition(|r| r.spec.is_video());
    let mut m = MasterPlaylist {
        version: Some(VERSION),
        independent_segments: true,
        ..Default::default()
    };
    let audio_peak = audio.iter().map(|a| a.peak).max().unwrap_or(0);
    let audio_avg = audio
        .iter()
        .map(|a| a.average.unwrap_or(a.peak))
        .max()
        .unwrap_or(0);
    let audio_codec = audio.first().map(|a| a.spec.codecs.clone());
    if video.is_empty() {
        for a in &audio {
            m.variants.push(VariantStream {
                uri: format!("{}/index.m3u8", a.spec.id),
                bandwidth: a.peak,
                average_bandwidth: a.average,
                codecs: Some(a.spec.codecs.clone()),
                ..Default::default()
            });
        }
    } else {
        m.alternatives
            .extend(audio.iter().filter_map(|a| alternative(a.spec)));
    }
    for v in &video {
        let RenditionKind::Video {
            width,
            height,
            frame_rate,
        } = v.spec.kind
        else {
            continue;
        };
        let resolution = Some(Resolution {
            width: width as u64,
            height: height as u64,
        });
        m.variants.push(VariantStream {
            uri: format!("{}/index.m3u8", v.spec.id),
            bandwidth: v.peak + audio_peak,
            average_bandwidth: v.average.map(|a| a + audio_avg),
            codecs: Some(match &audio_codec {
                Some(a) => format!("{},{a}", v.spec.codecs),
                None => v.spec.codecs.clone(),
            }),
            resolution,
            frame_rate: Some(frame_rate),
            audio: audio_codec.as_ref().map(|_| AUDIO_GROUP.to_string()),
            ..Default::default()
        });
        if let Some(bandwidth) = v.iframes {
            // RFC 8216bis 4.4.6.3: no FRAME-RATE or AUDIO on I-frame streams.
            m.variants.push(VariantStream {
                is_i_frame: true,
                uri: format!("{}/iframes.m3u8", v.spec.id),
                bandwidth,
                codecs: Some(v.spec.codecs.clone()),
                resolution,
                ..Default::default()
            });
        }
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = m.write_to(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
