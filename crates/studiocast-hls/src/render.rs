//! The multivariant playlists, written with m3u8-rs (which writes them
//! whole, unlike media playlists).

use m3u8_rs::{AlternativeMedia, AlternativeMediaType, MasterPlaylist, Resolution, VariantStream};

use crate::config::{Rendition, RenditionKind};

/// The group of the first audio codec and layout; others get their own.
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

/// Audio renditions that can share a group: one codec, and either at most
/// two channels or one same larger count. hls.js switches renditions within
/// a group as if they were interchangeable, and a variant's CODECS must
/// describe every rendition of its group.
struct Group<'a> {
    id: String,
    members: Vec<&'a Rated<'a>>,
}

impl Group<'_> {
    fn codec(&self) -> &str {
        self.members.first().map_or("", |a| a.spec.codecs.as_str())
    }

    fn peak(&self) -> u64 {
        self.members.iter().map(|a| a.peak).max().unwrap_or(0)
    }

    fn average(&self) -> u64 {
        let avg = |a: &&Rated| a.average.unwrap_or(a.peak);
        self.members.iter().map(avg).max().unwrap_or(0)
    }
}

fn channels(a: &Rendition) -> u32 {
    match a.kind {
        RenditionKind::Audio { channels, .. } => channels,
        RenditionKind::Video { .. } => 0,
    }
}

/// Groups in the order their first rendition comes: the first (the one
/// with the default rendition, by convention first) is `audio`, so plain
/// players start on it.
fn groups<'a>(audio: &[&'a Rated<'a>]) -> Vec<Group<'a>> {
    let class = |a: &Rendition| (a.codecs.clone(), channels(a).max(2));
    let mut out: Vec<Group<'a>> = Vec::new();
    for a in audio {
        match out.iter_mut().find(|g| {
            g.members
                .first()
                .is_some_and(|m| class(m.spec) == class(a.spec))
        }) {
            Some(g) => g.members.push(a),
            None => {
                let id = match out.len() {
                    0 => AUDIO_GROUP.to_string(),
                    _ => format!(
                        "{AUDIO_GROUP}-{}-{}ch",
                        codec_name(&a.spec.codecs),
                        channels(a.spec)
                    ),
                };
                out.push(Group {
                    id,
                    members: vec![a],
                });
            }
        }
    }
    out
}

/// A codec string as a group-id fragment: `mp4a.40.2` → `mp4a`.
fn codec_name(codecs: &str) -> String {
    codecs
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn alternative(a: &Rendition, group: &str) -> Option<AlternativeMedia> {
    let RenditionKind::Audio {
        name,
        channels,
        default,
        autoselect,
        language,
    } = &a.kind
    else {
        return None;
    };
    Some(AlternativeMedia {
        media_type: AlternativeMediaType::Audio,
        uri: Some(format!("{}/index.m3u8", a.id)),
        group_id: group.into(),
        language: language.clone(),
        name: name.clone(),
        default: *default,
        // RFC 8216bis 4.4.6.1: DEFAULT=YES needs AUTOSELECT=YES.
        autoselect: *autoselect || *default,
        // RFC 8216bis 4.4.6.1: needed when renditions of one codec differ
        // in channels; given on every one.
        channels: Some(channels.to_string()),
        ..Default::default()
    })
}

/// Multivariant playlist. Each video rendition becomes a variant per audio
/// group (BANDWIDTH: the video's plus the group's largest audio), the
/// first group's variants first, each rendition with its I-frame stream
/// when it has one. Without video, each group is one variant whose URI is
/// its default (else first) rendition's playlist: the renditions stay
/// alternatives a viewer chooses, not levels a player's bit-rate logic
/// moves between (binaural and stereo as two variants would be swapped
/// by it mid-lesson).
///
/// `everything` false: the master for any player, without the renditions
/// no client may pick by itself (`autoselect` false: the ambisonic one,
/// wrong as loudspeaker feeds). Players that choose variants by bandwidth
/// alone (AVPlayer, ExoPlayer) would otherwise switch into them. True:
/// the embedded player's master, which offers them to the viewer.
pub(crate) fn master_playlist(all: &[Rated<'_>], everything: bool) -> String {
    let plain = |r: &&Rated| {
        everything
            || !matches!(
                r.spec.kind,
                RenditionKind::Audio {
                    autoselect: false,
                    default: false,
                    ..
                }
            )
    };
    let (video, audio): (Vec<&Rated>, Vec<&Rated>) =
        all.iter().filter(plain).partition(|r| r.spec.is_video());
    let mut m = MasterPlaylist {
        version: Some(VERSION),
        independent_segments: true,
        ..Default::default()
    };
    let groups = groups(&audio);
    for g in &groups {
        m.alternatives
            .extend(g.members.iter().filter_map(|a| alternative(a.spec, &g.id)));
    }
    if video.is_empty() {
        for g in &groups {
            let main = g
                .members
                .iter()
                .find(|a| matches!(a.spec.kind, RenditionKind::Audio { default: true, .. }))
                .or(g.members.first());
            let Some(main) = main else { continue };
            m.variants.push(VariantStream {
                uri: format!("{}/index.m3u8", main.spec.id),
                bandwidth: g.peak(),
                average_bandwidth: main.average.map(|_| g.average()),
                codecs: Some(g.codec().to_string()),
                audio: Some(g.id.clone()),
                ..Default::default()
            });
        }
    }
    let no_audio = [None];
    let with_audio: Vec<Option<&Group>> = groups.iter().map(Some).collect();
    let choices = if with_audio.is_empty() {
        &no_audio[..]
    } else {
        &with_audio[..]
    };
    for g in choices {
        for v in &video {
            m.variants.push(variant(v, *g));
        }
    }
    for v in &video {
        let RenditionKind::Video { width, height, .. } = v.spec.kind else {
            continue;
        };
        if let Some(bandwidth) = v.iframes {
            // RFC 8216bis 4.4.6.3: no FRAME-RATE or AUDIO on I-frame streams.
            m.variants.push(VariantStream {
                is_i_frame: true,
                uri: format!("{}/iframes.m3u8", v.spec.id),
                bandwidth,
                codecs: Some(v.spec.codecs.clone()),
                resolution: Some(Resolution {
                    width: width as u64,
                    height: height as u64,
                }),
                ..Default::default()
            });
        }
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = m.write_to(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// One video rendition with one audio group (or none).
fn variant(v: &Rated<'_>, audio: Option<&Group<'_>>) -> VariantStream {
    let (width, height, frame_rate) = match v.spec.kind {
        RenditionKind::Video {
            width,
            height,
            frame_rate,
        } => (width, height, frame_rate),
        RenditionKind::Audio { .. } => (0, 0, 0.0),
    };
    VariantStream {
        uri: format!("{}/index.m3u8", v.spec.id),
        bandwidth: v.peak + audio.map_or(0, Group::peak),
        average_bandwidth: v.average.map(|a| a + audio.map_or(0, Group::average)),
        codecs: Some(match audio {
            Some(g) => format!("{},{}", v.spec.codecs, g.codec()),
            None => v.spec.codecs.clone(),
        }),
        resolution: Some(Resolution {
            width: width as u64,
            height: height as u64,
        }),
        frame_rate: Some(frame_rate),
        audio: audio.map(|g| g.id.clone()),
        ..Default::default()
    }
}
