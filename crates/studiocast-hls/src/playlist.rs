//! The packager state machine and playlist rendering.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, Map, MasterPlaylist, MediaPlaylist, MediaPlaylistType,
    MediaSegment, Resolution, VariantStream,
};

use crate::{Action, HlsError};

/// The group every audio rendition joins. All renditions in it share one
/// codec (AAC); a different codec needs its own group and variant.
const AUDIO_GROUP: &str = "audio";
/// fMP4 segments need version ≥ 6; 7 lets us use every attribute we emit.
const VERSION: usize = 7;

#[derive(Debug, Clone, PartialEq)]
pub enum RenditionKind {
    Video {
        width: u32,
        height: u32,
        frame_rate: f64,
    },
    Audio {
        name: String,
        channels: u32,
        default: bool,
        language: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// Folder name and id: `[A-Za-z0-9_-]+`.
    pub id: String,
    pub kind: RenditionKind,
    /// Exact RFC 6381 codec string, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codecs: String,
    /// Peak bits per second.
    pub bandwidth: u64,
}

#[derive(Debug, Clone)]
pub struct PackagerConfig {
    /// EXT-X-TARGETDURATION, seconds. Fixed for the life of the stream.
    pub target_duration: u64,
    /// Segments in the live playlist (at least enough for 3 × target).
    pub window_segments: usize,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            target_duration: 2,
            window_segments: 6,
        }
    }
}

/// A CMAF chunk (moof+mdat) of one rendition.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// Seconds.
    pub duration: f64,
    /// Starts with a sync sample (every segment must).
    pub independent: bool,
    /// Capture time of the first sample, ms since the Unix epoch.
    pub pdt_ms: Option<i64>,
    /// This chunk completes its segment.
    pub ends_segment: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) duration: f64,
    pub(crate) pdt_ms: Option<i64>,
    pub(crate) discontinuity: bool,
    pub(crate) map: String,
}

#[derive(Debug, Default)]
struct Open {
    data: Vec<u8>,
    duration: f64,
    pdt_ms: Option<i64>,
    independent: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) spec: Rendition,
    pub(crate) init_uri: Option<String>,
    pub(crate) init_count: u32,
    open: Option<Open>,
    pub(crate) segments: Vec<Segment>,
    pub(crate) window_start: usize,
    pub(crate) discontinuity_seq: u64,
    pub(crate) next_seq: u64,
    pub(crate) pending_discontinuity: bool,
}

/// One stream's packager: several renditions, one set of playlists.
#[derive(Debug)]
pub struct Packager {
    pub(crate) config: PackagerConfig,
    pub(crate) states: Vec<State>,
    pub(crate) ended: bool,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn pdt(ms: i64) -> Option<DateTime<FixedOffset>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.fixed_offset())
}

impl Packager {
    pub fn new(config: PackagerConfig, renditions: Vec<Rendition>) -> Result<Self, HlsError> {
        if config.target_duration == 0 || config.target_duration > 60 {
            return Err(HlsError::Config(format!(
                "target duration {} s",
                config.target_duration
            )));
        }
        if config.window_segments < 3 {
            return Err(HlsError::Config(
                "the live window needs at least 3 segments".into(),
            ));
        }
        if renditions.is_empty() {
            return Err(HlsError::Config("no renditions".into()));
        }
        for (i, r) in renditions.iter().enumerate() {
            if !valid_id(&r.id) || renditions[..i].iter().any(|o| o.id == r.id) {
                return Err(HlsError::Config(format!(
                    "bad or duplicate rendition id '{}'",
                    r.id
                )));
            }
        }
        Ok(Packager {
            config,
            ended: false,
            states: renditions
                .into_iter()
                .map(|spec| State {
                    spec,
                    init_uri: None,
                    init_count: 0,
                    open: None,
                    segments: Vec::new(),
                    window_start: 0,
                    discontinuity_seq: 0,
                    next_seq: 1,
                    pending_discontinuity: false,
                })
                .collect(),
        })
    }

    fn state(&mut self, id: &str) -> Result<&mut State, HlsError> {
        self.states
            .iter_mut()
            .find(|s| s.spec.id == id)
            .ok_or_else(|| HlsError::UnknownRendition(id.to_string()))
    }

    pub fn renditions(&self) -> impl Iterator<Item = &Rendition> {
        self.states.iter().map(|s| &s.spec)
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Segments published so far for a rendition (all, not just the window).
    pub fn segment_count(&self, id: &str) -> usize {
        self.states
            .iter()
            .find(|s| s.spec.id == id)
            .map_or(0, |s| s.segments.len())
    }

    /// Seconds of every segment published for a rendition.
    pub fn duration(&self, id: &str) -> f64 {
        self.states
            .iter()
            .find(|s| s.spec.id == id)
            .map_or(0.0, |s| s.segments.iter().map(|x| x.duration).sum())
    }

    /// Replace a rendition's CODECS string (for example once the encoder's
    /// real profile and level are read from its init segment).
    pub fn set_codecs(&mut self, id: &str, codecs: &str) -> Result<(), HlsError> {
        self.state(id)?.spec.codecs = codecs.to_string();
        Ok(())
    }

    /// A new initialisation segment. A change of init (say, after a source
    /// reconnects with other parameters) gets a new file name and implies a
    /// discontinuity.
    pub fn push_init(&mut self, id: &str, data: Vec<u8>) -> Result<Vec<Action>, HlsError> {
        if self.ended {
            return Err(HlsError::Ended);
        }
        let st = self.state(id)?;
        let name = if st.init_count == 0 {
            "init.mp4".to_string()
        } else {
            format!("init-{}.mp4", st.init_count)
        };
        if st.init_count > 0 {
            st.pending_discontinuity = true;
        }
        st.init_count += 1;
        st.init_uri = Some(name.clone());
        Ok(vec![Action::Write {
            path: format!("{id}/{name}"),
            data,
        }])
    }

    /// The next segment of every rendition starts after a gap or a change of
    /// timestamps or encoding (EXT-X-DISCONTINUITY).
    pub fn discontinuity(&mut self) {
        for s in &mut self.states {
            s.pending_discontinuity = true;
            s.open = None;
        }
    }

    /// The next segment of one rendition follows a discontinuity. Callers
    /// mark every rendition at the same segment boundary, so that the
    /// discontinuity sequences stay aligned across playlists.
    pub fn discontinuity_in(&mut self, id: &str) -> Result<(), HlsError> {
        let st = self.state(id)?;
        st.pending_discontinuity = true;
        st.open = None;
        Ok(())
    }

    pub fn push_chunk(&mut self, id: &str, chunk: Chunk) -> Result<Vec<Action>, HlsError> {
        if self.ended {
            return Err(HlsError::Ended);
        }
        let st = self.state(id)?;
        if st.init_uri.is_none() {
            return Err(HlsError::NoInit(id.to_string()));
        }
        let open = st.open.get_or_insert_with(|| Open {
            pdt_ms: chunk.pdt_ms,
            independent: chunk.independent,
            ..Open::default()
        });
        open.data.extend_from_slice(&chunk.data);
        open.duration += chunk.duration.max(0.0);
        if !chunk.ends_segment {
            return Ok(Vec::new());
        }
        self.close_segment(id)
    }

    fn close_segment(&mut self, id: &str) -> Result<Vec<Action>, HlsError> {
        let target = self.config.target_duration;
        let window = self.config.window_segments;
        let st = self.state(id)?;
        let Some(open) = st.open.take() else {
            return Ok(Vec::new());
        };
        if open.data.is_empty() {
            return Ok(Vec::new());
        }
        if !open.independent {
            // EXT-X-INDEPENDENT-SEGMENTS promises a sync sample first.
            st.pending_discontinuity = true;
            return Err(HlsError::NotIndependent(id.to_string()));
        }
        if open.duration.round() as u64 > target || !open.duration.is_finite() {
            // Publishing it would break every player; drop it and mark the gap.
            st.pending_discontinuity = true;
            return Err(HlsError::TargetDurationExceeded {
                rendition: id.to_string(),
                duration: open.duration,
                target,
            });
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let discontinuity =
            std::mem::take(&mut st.pending_discontinuity) && !st.segments.is_empty();
        let segment = Segment {
            seq,
            duration: open.duration,
            pdt_ms: open.pdt_ms,
            discontinuity,
            map: st.init_uri.clone().unwrap_or_default(),
        };
        let journal = crate::journal::line(&segment);
        st.segments.push(segment);
        // Slide the live window, never below 3 target durations.
        loop {
            let live = &st.segments[st.window_start..];
            let after_drop: f64 = live.iter().skip(1).map(|s| s.duration).sum();
            if live.len() <= window || after_drop < 3.0 * target as f64 {
                break;
            }
            // A tag leaving the playlist moves the discontinuity sequence on;
            // so does a removed segment whose successor now starts the list
            // with a tag we keep.
            if st.segments[st.window_start].discontinuity {
                st.discontinuity_seq += 1;
            }
            st.window_start += 1;
        }
        let playlist = render_media(st, target, false, false);
        Ok(vec![
            Action::Write {
                path: format!("{id}/seg{seq:06}.m4s"),
                data: open.data,
            },
            Action::Append {
                path: format!("{id}/{}", crate::journal::FILE),
                data: journal.into_bytes(),
            },
            Action::Write {
                path: format!("{id}/live.m3u8"),
                data: playlist.into_bytes(),
            },
        ])
    }

    /// The live multivariant playlist, to write once all inits are known.
    pub fn master_action(&self) -> Action {
        Action::Write {
            path: "master.m3u8".into(),
            data: self.master_playlist().into_bytes(),
        }
    }

    /// End of stream: close open segments, add EXT-X-ENDLIST to the live
    /// playlists and write the VOD playlists.
    pub fn end(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.ended {
            return actions;
        }
        let ids: Vec<String> = self.states.iter().map(|s| s.spec.id.clone()).collect();
        for id in &ids {
            // A short last segment is normal; an over-long one is dropped.
            if let Ok(a) = self.close_segment(id) {
                actions.extend(a);
            }
        }
        self.ended = true;
        let target = self.config.target_duration;
        for st in &self.states {
            actions.push(Action::Write {
                path: format!("{}/live.m3u8", st.spec.id),
                data: render_media(st, target, true, false).into_bytes(),
            });
            actions.push(Action::Write {
                path: format!("{}/vod.m3u8", st.spec.id),
                data: render_media(st, target, true, true).into_bytes(),
            });
        }
        actions.push(Action::Write {
            path: "master-vod.m3u8".into(),
            data: self.master_playlist().into_bytes(),
        });
        actions
    }

    pub fn media_playlist(&self, id: &str, vod: bool) -> Option<String> {
        let st = self.states.iter().find(|s| s.spec.id == id)?;
        Some(render_media(
            st,
            self.config.target_duration,
            self.ended || vod,
            vod,
        ))
    }

    /// Multivariant playlist. Video renditions become variants whose AUDIO
    /// group holds every audio rendition; without video, each audio
    /// rendition is a variant of its own.
    pub fn master_playlist(&self) -> String {
        let audio: Vec<&Rendition> = self
            .states
            .iter()
            .map(|s| &s.spec)
            .filter(|r| matches!(r.kind, RenditionKind::Audio { .. }))
            .collect();
        let video: Vec<&Rendition> = self
            .states
            .iter()
            .map(|s| &s.spec)
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
}

fn render_media(st: &State, target: u64, ended: bool, vod: bool) -> String {
    let start = if vod { 0 } else { st.window_start };
    let segs = &st.segments[start..];
    let mut last_map: Option<&str> = None;
    let mut pl = MediaPlaylist {
        version: Some(VERSION),
        target_duration: target,
        media_sequence: segs.first().map_or(st.next_seq, |s| s.seq),
        discontinuity_sequence: if vod { 0 } else { st.discontinuity_seq },
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
            uri: format!("seg{:06}.m4s", s.seq),
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
