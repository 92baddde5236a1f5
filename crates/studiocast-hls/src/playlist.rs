//! The packager state machine.
//!
//! A segment is cut when its last chunk arrives, but it enters no playlist
//! (and no journal) until the caller has written its bytes durably and
//! said so with [`Packager::segment_written`]: a segment whose write failed
//! (a full disk, no descriptors left) is never published, its sequence
//! number goes to the next segment, and that one follows a discontinuity.

use crate::render::{master_playlist, render_media};
use crate::segment::Segment;
use crate::{Action, HlsError};

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

#[derive(Debug, Default)]
struct Open {
    data: Vec<u8>,
    duration: f64,
    pdt_ms: Option<i64>,
    independent: bool,
}

#[derive(Debug)]
struct State {
    spec: Rendition,
    init_uri: Option<String>,
    init_count: u32,
    open: Option<Open>,
    /// Cut, handed to the caller to write, not yet published.
    unwritten: Option<Segment>,
    segments: Vec<Segment>,
    window_start: usize,
    discontinuity_seq: u64,
    next_seq: u64,
    pending_discontinuity: bool,
}

impl State {
    fn render(&self, target: u64, ended: bool, vod: bool) -> String {
        render_media(
            &self.segments,
            self.window_start,
            self.discontinuity_seq,
            self.next_seq,
            target,
            ended,
            vod,
        )
    }
}

/// One stream's packager: several renditions, one set of playlists.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    states: Vec<State>,
    ended: bool,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
                    unwritten: None,
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

    /// Cut the open segment: checked, numbered and handed out to be
    /// written ([`Action::WriteSegment`]); published only once confirmed.
    fn close_segment(&mut self, id: &str) -> Result<Vec<Action>, HlsError> {
        let target = self.config.target_duration;
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
        if st.unwritten.is_some() {
            // The caller never said how the last write went: that segment
            // is lost, and this one follows a gap.
            st.unwritten = None;
            st.pending_discontinuity = true;
        }
        let segment = Segment {
            seq: st.next_seq,
            duration: open.duration,
            pdt_ms: open.pdt_ms,
            discontinuity: std::mem::take(&mut st.pending_discontinuity) && !st.segments.is_empty(),
            map: st.init_uri.clone().unwrap_or_default(),
        };
        let action = Action::WriteSegment {
            rendition: id.to_string(),
            seq: segment.seq,
            pdt_ms: segment.pdt_ms,
            path: format!("{id}/{}", segment.uri()),
            data: open.data,
        };
        st.unwritten = Some(segment);
        Ok(vec![action])
    }

    /// The caller wrote segment `seq` of rendition `id` (`durable`: its
    /// bytes are on disk), or failed to. A written segment is published:
    /// journal line, live playlist. A failed one is forgotten: its number
    /// goes to the next segment, which follows a discontinuity.
    pub fn segment_written(
        &mut self,
        id: &str,
        seq: u64,
        durable: bool,
    ) -> Result<Vec<Action>, HlsError> {
        let target = self.config.target_duration;
        let window = self.config.window_segments;
        let st = self.state(id)?;
        let Some(segment) = st.unwritten.take_if(|s| s.seq == seq) else {
            return Err(HlsError::UnknownSegment {
                rendition: id.to_string(),
                seq,
            });
        };
        if !durable {
            st.pending_discontinuity = true;
            return Ok(Vec::new());
        }
        st.next_seq = seq.saturating_add(1);
        let journal = crate::journal::line(&segment);
        st.segments.push(segment);
        // Slide the live window, never below 3 target durations.
        loop {
            let live = &st.segments[st.window_start..];
            let after_drop: f64 = live.iter().skip(1).map(|s| s.duration).sum();
            if live.len() <= window || after_drop < 3.0 * target as f64 {
                break;
            }
            // A tag leaving the playlist moves the discontinuity sequence on.
            if st.segments[st.window_start].discontinuity {
                st.discontinuity_seq += 1;
            }
            st.window_start += 1;
        }
        Ok(vec![
            Action::Append {
                path: format!("{id}/{}", crate::journal::FILE),
                data: journal.into_bytes(),
            },
            Action::Write {
                path: format!("{id}/live.m3u8"),
                data: st.render(target, false, false).into_bytes(),
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

    /// Cut every open segment (a short last one is normal; an over-long
    /// one is dropped), to be written and confirmed before [`Packager::end`].
    pub fn flush(&mut self) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        let ids: Vec<String> = self.states.iter().map(|s| s.spec.id.clone()).collect();
        ids.iter()
            .filter_map(|id| self.close_segment(id).ok())
            .flatten()
            .collect()
    }

    /// End of stream: add EXT-X-ENDLIST to the live playlists and write the
    /// VOD playlists. Call [`Packager::flush`] first to keep the segments
    /// still open; anything cut but not confirmed by now is left out.
    pub fn end(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.ended {
            return actions;
        }
        self.ended = true;
        let target = self.config.target_duration;
        for st in &mut self.states {
            st.open = None;
            st.unwritten = None;
            actions.push(Action::Write {
                path: format!("{}/live.m3u8", st.spec.id),
                data: st.render(target, true, false).into_bytes(),
            });
            actions.push(Action::Write {
                path: format!("{}/vod.m3u8", st.spec.id),
                data: st.render(target, true, true).into_bytes(),
            });
        }
        actions.push(Action::Write {
            path: "master-vod.m3u8".into(),
            data: self.master_playlist().into_bytes(),
        });
        actions
    }

    /// Multivariant playlist (see [`crate::render`]).
    pub fn master_playlist(&self) -> String {
        master_playlist(self.states.iter().map(|s| &s.spec))
    }

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
            let segments = crate::journal::read(text);
            let mut maps: Vec<&str> = Vec::new();
            for s in &segments {
                if !maps.contains(&s.map.as_str()) {
                    maps.push(&s.map);
                }
            }
            st.init_count = maps.len() as u32;
            if let Some(last) = segments.last() {
                st.next_seq = last.seq + 1;
                st.init_uri = Some(last.map.clone());
            }
            st.segments = segments;
        }
        Ok(p)
    }

    pub fn media_playlist(&self, id: &str, vod: bool) -> Option<String> {
        let st = self.states.iter().find(|s| s.spec.id == id)?;
        Some(st.render(self.config.target_duration, self.ended || vod, vod))
    }
}
