//! The packager: several renditions, one set of playlists.
//!
//! Parts and complete segments are published in memory at once (see
//! [`Packager::view`]); a segment enters the journal and the VOD only once
//! the caller has written its bytes durably and said so with
//! [`Packager::segment_written`]. A segment whose write failed stays in the
//! live playlist while its bytes are in memory, then becomes an
//! `EXT-X-GAP`; it never reaches the VOD, where the segment after it
//! follows a discontinuity.

use bytes::Bytes;

use crate::config::{Chunk, Limits, PackagerConfig, Rendition};
use crate::live::{LiveView, PartRef};
use crate::media;
use crate::render::{master_playlist, Rated};

/// Any player's live multivariant playlist.
pub const MASTER: &str = "master.m3u8";
/// The embedded player's, with every rendition (the ambisonic one too).
pub const PLAYER_MASTER: &str = "master-player.m3u8";
use crate::segment::{Disk, Segment};
use crate::time::{Ticks, PER_SEC};
use crate::track::Track;
use crate::{Action, HlsError};

/// Measured bit rates of a rendition's durable segments, bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitrate {
    /// The largest of any segment's bytes × 8 / duration.
    pub peak: u64,
    /// All bytes × 8 / all seconds.
    pub average: u64,
}

/// One stream's packager.
#[derive(Debug)]
pub struct Packager {
    lim: Limits,
    tracks: Vec<Track>,
    ended: bool,
    /// Actions of a call that also failed (a segment closed before a
    /// refused chunk); handed out first by the next call.
    outbox: Vec<Action>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Bits per second of `bytes` over `d`, rounded up (BANDWIDTH is a bound).
fn bits_per_sec(bytes: u64, d: Ticks) -> u64 {
    if d.0 == 0 {
        return 0;
    }
    let bits = bytes as u128 * 8 * PER_SEC as u128;
    u64::try_from(bits.div_ceil(d.0 as u128)).unwrap_or(u64::MAX)
}

impl Packager {
    pub fn new(config: PackagerConfig, renditions: Vec<Rendition>) -> Result<Self, HlsError> {
        let lim = Limits::new(&config)?;
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
            lim,
            ended: false,
            outbox: Vec::new(),
            tracks: renditions.into_iter().map(Track::new).collect(),
        })
    }

    fn index(&self, id: &str) -> Result<usize, HlsError> {
        self.tracks
            .iter()
            .position(|t| t.spec.id == id)
            .ok_or_else(|| HlsError::UnknownRendition(id.to_string()))
    }

    fn track(&self, id: &str) -> Option<&Track> {
        self.tracks.iter().find(|t| t.spec.id == id)
    }

    /// What is left in the outbox, then `more`.
    fn out(&mut self, more: Vec<Action>) -> Vec<Action> {
        let mut a = std::mem::take(&mut self.outbox);
        a.extend(more);
        a
    }

    pub fn renditions(&self) -> impl Iterator<Item = &Rendition> {
        self.tracks.iter().map(|t| &t.spec)
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Segments of a rendition written durably (what its VOD lists).
    pub fn segment_count(&self, id: &str) -> usize {
        self.track(id).map_or(0, |t| self.durable(t).len())
    }

    /// Seconds of a rendition's durable segments.
    pub fn duration(&self, id: &str) -> f64 {
        self.track(id).map_or(0.0, |t| {
            self.durable(t).iter().map(|s| s.duration.secs()).sum()
        })
    }

    fn durable<'a>(&self, t: &'a Track) -> Vec<&'a Segment> {
        t.segs
            .iter()
            .filter(|c| c.disk == Disk::Written)
            .map(|c| &c.seg)
            .collect()
    }

    /// Measured bit rates of a rendition's durable segments (`None` before
    /// any, or when their sizes are unknown: an old journal).
    pub fn bitrate(&self, id: &str) -> Option<Bitrate> {
        let t = self.track(id)?;
        let segs: Vec<&Segment> = self.durable(t).into_iter().filter(|s| s.size > 0).collect();
        let peak = segs
            .iter()
            .map(|s| bits_per_sec(s.size, s.duration))
            .max()?;
        let bytes = segs.iter().map(|s| s.size).sum();
        let time = segs.iter().fold(Ticks(0), |a, s| a.plus(s.duration));
        Some(Bitrate {
            peak,
            average: bits_per_sec(bytes, time),
        })
    }

    /// Replace a rendition's CODECS string (for example once the encoder's
    /// real profile and level are read from its init segment).
    pub fn set_codecs(&mut self, id: &str, codecs: &str) -> Result<(), HlsError> {
        let i = self.index(id)?;
        self.tracks[i].spec.codecs = codecs.to_string();
        Ok(())
    }

    /// A new initialisation segment. A change of init (say, after a source
    /// reconnects with other parameters) closes the open segment, gets a
    /// new file name and implies a discontinuity; the same bytes again
    /// change nothing.
    pub fn push_init(&mut self, id: &str, data: impl Into<Bytes>) -> Result<Vec<Action>, HlsError> {
        if self.ended {
            return Err(HlsError::Ended);
        }
        let i = self.index(id)?;
        let a = self.tracks[i].push_init(data.into(), &self.lim);
        Ok(self.out(a))
    }

    /// The next segment of every rendition follows a discontinuity (a gap,
    /// a change of timestamps or encoding): each open segment closes now.
    /// Called just before a boundary chunk, nothing is lost; called
    /// mid-segment, the following chunks are refused up to the next
    /// independent one.
    pub fn discontinuity(&mut self) -> Vec<Action> {
        let mut a = Vec::new();
        for t in &mut self.tracks {
            a.extend(t.discontinuity(&self.lim));
        }
        self.out(a)
    }

    /// The same for one rendition. Callers mark every rendition at the same
    /// segment boundary, so that the discontinuity sequences stay aligned
    /// across playlists.
    pub fn discontinuity_in(&mut self, id: &str) -> Result<Vec<Action>, HlsError> {
        let i = self.index(id)?;
        let a = self.tracks[i].discontinuity(&self.lim);
        Ok(self.out(a))
    }

    /// A chunk: the next part of the open segment, or (`boundary`) the
    /// first of a new one, which closes the open one
    /// ([`Action::WriteSegment`]). A refused chunk is an error; the segment
    /// it closed is then written by what the next call returns, or by
    /// [`Packager::take_actions`] at once.
    pub fn push_chunk(&mut self, id: &str, chunk: Chunk) -> Result<Vec<Action>, HlsError> {
        if self.ended {
            return Err(HlsError::Ended);
        }
        let i = self.index(id)?;
        if !self.tracks[i].has_init() {
            return Err(HlsError::NoInit(id.to_string()));
        }
        let (actions, result) = self.tracks[i].push_chunk(chunk, &self.lim);
        match result {
            Ok(()) => Ok(self.out(actions)),
            Err(e) => {
                self.outbox.extend(actions);
                Err(e)
            }
        }
    }

    /// Actions left by a call that failed (see [`Packager::push_chunk`]).
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    /// The caller wrote segment `seq` of rendition `id` (`durable`: its
    /// bytes are on disk), or failed to. Written: its journal line. Either
    /// way the live playlist file is rewritten.
    pub fn segment_written(
        &mut self,
        id: &str,
        seq: u64,
        durable: bool,
    ) -> Result<Vec<Action>, HlsError> {
        let i = self.index(id)?;
        let a = self.tracks[i].written(seq, durable, &self.lim)?;
        Ok(self.out(a))
    }

    /// The live multivariant playlists (configured bandwidths), to write
    /// once all inits are known: any player's, and the embedded player's
    /// with every rendition ([`MASTER`], [`PLAYER_MASTER`]).
    pub fn master_actions(&self) -> Vec<Action> {
        vec![
            Action::Write {
                path: MASTER.into(),
                data: Bytes::from(self.master_playlist()),
            },
            Action::Write {
                path: PLAYER_MASTER.into(),
                data: Bytes::from(self.player_master_playlist()),
            },
        ]
    }

    /// Close every open segment (a short last one is normal), to be written
    /// and confirmed before [`Packager::end`].
    pub fn flush(&mut self) -> Vec<Action> {
        if self.ended {
            return self.out(Vec::new());
        }
        let mut a = Vec::new();
        for t in &mut self.tracks {
            a.extend(t.close(&self.lim));
        }
        self.out(a)
    }

    /// End of stream: `EXT-X-ENDLIST` on the live playlists, the VOD and
    /// I-frame playlists and the VOD multivariant playlist. Call
    /// [`Packager::flush`] first to keep the segments still open; anything
    /// not confirmed by now is left out.
    pub fn end(&mut self) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        let mut actions = std::mem::take(&mut self.outbox);
        for t in &mut self.tracks {
            t.end(&self.lim);
        }
        for t in &self.tracks {
            let id = &t.spec.id;
            actions.push(t.disk_playlist(&self.lim, true));
            let segs = self.durable(t);
            actions.push(Action::Write {
                path: format!("{id}/vod.m3u8"),
                data: Bytes::from(media::vod(&segs, &self.lim, t.next_seq)),
            });
            if let Some(text) = media::iframes(&segs, &self.lim, t.next_seq) {
                actions.push(Action::Write {
                    path: format!("{id}/iframes.m3u8"),
                    data: Bytes::from(text),
                });
            }
        }
        actions.push(Action::Write {
            path: "master-vod.m3u8".into(),
            data: Bytes::from(self.vod_master_playlist(false)),
        });
        actions.push(Action::Write {
            path: "master-player-vod.m3u8".into(),
            data: Bytes::from(self.vod_master_playlist(true)),
        });
        actions
    }

    /// The live multivariant playlist for any player: configured
    /// bandwidths, without the renditions only the embedded player offers.
    pub fn master_playlist(&self) -> String {
        self.live_master(false)
    }

    /// The embedded player's: every rendition.
    pub fn player_master_playlist(&self) -> String {
        self.live_master(true)
    }

    fn live_master(&self, everything: bool) -> String {
        let rated: Vec<Rated> = self
            .tracks
            .iter()
            .map(|t| Rated {
                spec: &t.spec,
                peak: t.spec.bandwidth,
                average: None,
                iframes: None,
            })
            .collect();
        master_playlist(&rated, everything)
    }

    /// The VOD multivariant playlist: measured bandwidths (configured ones
    /// where nothing was measured) and the I-frame streams; `everything`
    /// as in [`Packager::player_master_playlist`].
    pub fn vod_master_playlist(&self, everything: bool) -> String {
        let rated: Vec<Rated> = self
            .tracks
            .iter()
            .map(|t| {
                let measured = self.bitrate(&t.spec.id);
                Rated {
                    spec: &t.spec,
                    peak: measured.map_or(t.spec.bandwidth, |b| b.peak),
                    average: measured.map(|b| b.average),
                    iframes: self.iframe_bandwidth(t),
                }
            })
            .collect();
        master_playlist(&rated, everything)
    }

    /// Peak bit rate of a video rendition's I-frame playlist.
    fn iframe_bandwidth(&self, t: &Track) -> Option<u64> {
        self.durable(t)
            .iter()
            .filter_map(|s| Some(bits_per_sec(s.iframe?.length, s.duration)))
            .max()
    }

    /// Rebuild a stream's packager from its journals (`(rendition id,
    /// journal text)`), ready for [`Packager::end`] to write the final
    /// playlists. Only whole segments are journaled, never parts, so the
    /// result has none. Renditions without a journal end up empty.
    pub fn recover(
        config: PackagerConfig,
        renditions: Vec<Rendition>,
        journals: &[(String, String)],
    ) -> Result<Self, HlsError> {
        let mut p = Packager::new(config, renditions)?;
        let lim = p.lim.clone();
        for t in &mut p.tracks {
            let Some((_, text)) = journals.iter().find(|(id, _)| *id == t.spec.id) else {
                continue;
            };
            let segments = crate::journal::read(text);
            *t = Track::recovered(t.spec.clone(), segments, &lim);
        }
        Ok(p)
    }

    /// A media playlist as written to disk: the live one (no parts; what
    /// `live.m3u8` holds) or the VOD one.
    pub fn media_playlist(&self, id: &str, vod: bool) -> Option<String> {
        let t = self.track(id)?;
        Some(if vod {
            media::vod(&self.durable(t), &self.lim, t.next_seq)
        } else {
            media::live(t, &self.lim, media::Mode::Disk, &[], self.ended)
        })
    }

    /// A video rendition's I-frame playlist (VOD), when any frame of it
    /// could be located.
    pub fn iframe_playlist(&self, id: &str) -> Option<String> {
        let t = self.track(id)?;
        media::iframes(&self.durable(t), &self.lim, t.next_seq)
    }

    /// What the origin serves of a rendition now (see [`LiveView`]). Its
    /// rendition reports give the siblings' state now.
    pub fn view(&self, id: &str) -> Option<LiveView> {
        let t = self.track(id)?;
        let reports: Vec<(&str, PartRef)> = if self.lim.part_target.is_some() {
            self.tracks
                .iter()
                .filter(|o| o.spec.id != id)
                .filter_map(|o| Some((o.spec.id.as_str(), o.last_part()?)))
                .collect()
        } else {
            Vec::new()
        };
        Some(crate::view::build(t, &self.lim, &reports, self.ended))
    }

    /// Renditions whose view changed since the last call, in order: the
    /// ones to publish again.
    pub fn take_changed(&mut self) -> Vec<String> {
        self.tracks
            .iter_mut()
            .filter_map(|t| std::mem::take(&mut t.changed).then(|| t.spec.id.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{render_live, Mode};
    use crate::{Rendition, RenditionKind};

    fn chunk(k: u64) -> Chunk {
        Chunk {
            data: Bytes::from(vec![k as u8; 16]),
            duration: 0.25,
            independent: k.is_multiple_of(4),
            pdt_ms: Some(1_700_000_000_000 + k as i64 * 250),
            boundary: k.is_multiple_of(4),
        }
    }

    /// The stable lines are a cache: a playlist built with them is the
    /// playlist formatted afresh, through window slides, discontinuities,
    /// init changes and failed writes, in every mode.
    #[test]
    fn stable_lines_render_what_fresh_formatting_renders() {
        let config = PackagerConfig {
            target_duration: 1,
            part_target: Some(0.25),
            dvr_seconds: 10,
            memory_segments: 3,
        };
        let spec = Rendition {
            id: "v".into(),
            kind: RenditionKind::Video {
                width: 2,
                height: 2,
                frame_rate: 25.0,
            },
            codecs: "avc1.42c00d".into(),
            bandwidth: 1,
        };
        let mut p = Packager::new(config, vec![spec]).unwrap();
        p.push_init("v", vec![1]).unwrap();
        let mut compared = 0;
        // Every fifth write fails.
        let confirm = |p: &mut Packager, actions: Vec<Action>| {
            for a in actions {
                if let Action::WriteSegment { seq, .. } = a {
                    p.segment_written("v", seq, seq % 5 != 0).unwrap();
                }
            }
        };
        for k in 0..400u64 {
            if k % 52 == 0 {
                let a = p.discontinuity();
                confirm(&mut p, a);
            }
            if k % 97 == 0 {
                // Mid-fragment: the rest of the fragment is refused.
                let a = p.push_init("v", vec![k as u8, 2]).unwrap();
                confirm(&mut p, a);
            }
            let a = match p.push_chunk("v", chunk(k)) {
                Ok(a) => a,
                Err(_) => p.take_actions(),
            };
            confirm(&mut p, a);
            let t = &p.tracks[0];
            let skip = t.skippable(&p.lim);
            for mode in [Mode::Full, Mode::Disk, Mode::Delta(skip)] {
                let cached = render_live(t, &p.lim, mode, &[], false, true);
                let fresh = render_live(t, &p.lim, mode, &[], false, false);
                assert_eq!(cached, fresh, "chunk {k}, {mode:?}");
                compared += usize::from(t.stable.end() > t.window_start + 1);
            }
        }
        assert!(compared > 500, "the stable lines were in use");
        assert!(p.tracks[0].window_start > 10, "the window slid");
    }
}
