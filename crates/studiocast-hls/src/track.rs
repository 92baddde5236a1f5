//! One rendition's state machine: chunks in, parts and segments out.
//!
//! Each chunk becomes a part of the open segment, published at once. A
//! chunk marked `boundary` closes the open segment first (segment
//! boundaries are the muxer's, never guessed from durations). A closed
//! segment is listed at once (its bytes are in memory) and handed to the
//! caller to write; its journal line waits for the caller's confirmation.
//! A refused chunk never leaves a broken segment behind: what was open is
//! closed as it stands (it is valid), and the next segment follows a
//! discontinuity.

use bytes::{Bytes, BytesMut};

use crate::config::{Chunk, Limits, Rendition};
use crate::live::PartRef;
use crate::media::{self, Mode};
use crate::segment::{segment_uri, Closed, Disk, Open, Part, Segment};
use crate::stable::Stable;
use crate::time::{Clock, Ticks};
use crate::{mp4, Action, HlsError};

/// More chunks than this in one segment is not a stream we can serve.
const MAX_PARTS: usize = 2000;
/// Segments handed out but not confirmed: past this, the oldest is taken
/// as lost (the caller never said how its write went).
const MAX_PENDING: usize = 16;

#[derive(Debug)]
pub(crate) struct Track {
    pub(crate) spec: Rendition,
    /// Init segments (file name, bytes), oldest first; the last is current.
    pub(crate) inits: Vec<(String, Bytes)>,
    clock: Clock,
    pub(crate) open: Option<Open>,
    /// Every complete segment of the stream (the VOD needs them all).
    pub(crate) segs: Vec<Closed>,
    /// First segment of the live window.
    pub(crate) window_start: usize,
    /// Duration of `segs[window_start..]`.
    window: Ticks,
    pub(crate) discontinuity_seq: u64,
    pub(crate) next_seq: u64,
    pending_discontinuity: bool,
    /// Where the next segment starts on the timeline.
    next_start: Ticks,
    /// Segments from here on keep their bytes (and parts) in memory; the
    /// ones before have final playlist lines, kept in `stable`.
    pub(crate) mem_from: usize,
    /// Segments whose write failed keep their bytes from here on, for
    /// three target durations after they became gaps at `mem_from`: a
    /// player holding an older playlist, where they were not gaps yet,
    /// still gets them (as parts stay fetchable after they leave).
    pub(crate) gap_kept_from: usize,
    pub(crate) stable: Stable,
    /// Something a viewer sees changed since the caller last asked.
    pub(crate) changed: bool,
}

impl Track {
    pub(crate) fn new(spec: Rendition) -> Track {
        Track {
            spec,
            inits: Vec::new(),
            clock: Clock::default(),
            open: None,
            segs: Vec::new(),
            window_start: 0,
            window: Ticks(0),
            discontinuity_seq: 0,
            next_seq: 1,
            pending_discontinuity: false,
            next_start: Ticks(0),
            mem_from: 0,
            gap_kept_from: 0,
            stable: Stable::default(),
            changed: false,
        }
    }

    /// A track holding recovered segments (all durable, none in memory).
    pub(crate) fn recovered(spec: Rendition, segments: Vec<Segment>, lim: &Limits) -> Track {
        let mut t = Track::new(spec);
        for seg in segments {
            let c = Closed {
                live_discontinuity: seg.discontinuity,
                start: t.next_start,
                disk: Disk::Written,
                parts: Vec::new(),
                bytes: None,
                seg,
            };
            t.next_start = c.end();
            t.window = t.window.plus(c.seg.duration);
            t.next_seq = c.seg.seq.saturating_add(1);
            if !t.inits.iter().any(|(n, _)| *n == c.seg.map) {
                // The bytes are on disk; nothing serves them from here.
                t.inits.push((c.seg.map.clone(), Bytes::new()));
            }
            t.segs.push(c);
        }
        t.maintain(lim);
        t
    }

    fn id(&self) -> &str {
        &self.spec.id
    }

    pub(crate) fn has_init(&self) -> bool {
        !self.inits.is_empty()
    }

    /// A new init segment. The open segment closes (its chunks belong to
    /// the old one), and a changed init implies a discontinuity. The same
    /// bytes again (a muxer repeating its header) change nothing.
    pub(crate) fn push_init(&mut self, data: Bytes, lim: &Limits) -> Vec<Action> {
        if self.inits.last().is_some_and(|(_, d)| *d == data) {
            return Vec::new();
        }
        let mut actions: Vec<Action> = self.close(lim).into_iter().collect();
        let name = match self.inits.len() {
            0 => "init.mp4".to_string(),
            n => format!("init-{n}.mp4"),
        };
        if !self.inits.is_empty() {
            self.pending_discontinuity = true;
        }
        self.inits.push((name.clone(), data.clone()));
        self.changed = true;
        actions.push(Action::Write {
            path: format!("{}/{name}", self.id()),
            data,
        });
        actions
    }

    /// The next segment follows a discontinuity, so the open one closes
    /// now (a discontinuity lies between segments).
    pub(crate) fn discontinuity(&mut self, lim: &Limits) -> Vec<Action> {
        let a = self.close(lim).into_iter().collect();
        self.pending_discontinuity = true;
        a
    }

    /// Refuse a chunk: what was open closes as it stands, and the next
    /// segment follows a discontinuity (media is missing there).
    fn refuse(&mut self, lim: &Limits, mut actions: Vec<Action>, e: HlsError) -> Outcome {
        actions.extend(self.close(lim));
        self.pending_discontinuity = true;
        (actions, Err(e))
    }

    /// A chunk becomes the next part, after checks: a sane duration and
    /// some data; no longer than `PART-TARGET`; a segment starts with an
    /// independent chunk (a `boundary` one; before the first segment, any
    /// independent chunk); the segment stays within the target duration
    /// once rounded.
    pub(crate) fn push_chunk(&mut self, c: Chunk, lim: &Limits) -> Outcome {
        let id = self.id().to_string();
        let invalid = |reason| HlsError::InvalidChunk {
            rendition: id.clone(),
            reason,
        };
        let Some(ticks) = self.clock.peek(c.duration).filter(|t| t.0 > 0) else {
            return self.refuse(lim, Vec::new(), invalid("duration not positive"));
        };
        if c.data.is_empty() {
            return self.refuse(lim, Vec::new(), invalid("no data"));
        }
        if let Some(pt) = lim.part_target.filter(|pt| ticks > *pt) {
            let e = HlsError::PartTargetExceeded {
                rendition: id,
                duration: c.duration,
                part_target: pt.secs(),
            };
            return self.refuse(lim, Vec::new(), e);
        }
        // Once a rendition has had a segment, only a boundary opens the
        // next one: an independent chunk after a refusal or a close (every
        // audio chunk is independent) would start segment N+1 early, and
        // segment N would no longer cover the same time in every rendition.
        if self.open.is_none() && !c.boundary && self.next_seq > 1 {
            return self.refuse(lim, Vec::new(), HlsError::AwaitingBoundary(id));
        }
        let mut actions = Vec::new();
        let so_far = match &self.open {
            Some(o) if !c.boundary => o.duration,
            _ => {
                actions.extend(self.close(lim));
                Ticks(0)
            }
        };
        if so_far.0 == 0 && !c.independent {
            // A segment must start with a sync sample.
            return self.refuse(lim, actions, HlsError::NotIndependent(id));
        }
        let total = so_far.plus(ticks);
        if total.rounded_secs() > lim.target {
            let e = HlsError::TargetDurationExceeded {
                rendition: id,
                duration: total.secs(),
                target: lim.target,
            };
            return self.refuse(lim, actions, e);
        }
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.parts.len() >= MAX_PARTS)
        {
            return self.refuse(lim, actions, invalid("too many chunks in one segment"));
        }
        self.append(c, ticks, lim);
        (actions, Ok(()))
    }

    /// Add a checked chunk as the next part, opening a segment if needed.
    fn append(&mut self, c: Chunk, ticks: Ticks, lim: &Limits) {
        if self.open.is_none() {
            let seq = self.next_seq;
            self.next_seq = seq.saturating_add(1);
            let discontinuity =
                std::mem::take(&mut self.pending_discontinuity) && !self.segs.is_empty();
            self.open = Some(Open {
                seq,
                start: self.next_start,
                pdt_ms: c.pdt_ms,
                discontinuity,
                map: self
                    .inits
                    .last()
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default(),
                duration: Ticks(0),
                parts: Vec::new(),
                data: Vec::new(),
            });
        }
        if let Some(open) = &mut self.open {
            open.parts.push(Part {
                duration: ticks,
                independent: c.independent,
                size: c.data.len(),
            });
            open.duration = open.duration.plus(ticks);
            open.data.push(c.data);
        }
        self.clock.advance(c.duration);
        self.changed = true;
        self.maintain(lim);
    }

    /// Close the open segment: listed at once, handed out to be written.
    pub(crate) fn close(&mut self, lim: &Limits) -> Option<Action> {
        let open = self.open.take()?;
        let size: usize = open.data.iter().map(Bytes::len).sum();
        let mut buf = BytesMut::with_capacity(size);
        for d in &open.data {
            buf.extend_from_slice(d);
        }
        let bytes = buf.freeze();
        let iframe = if self.spec.is_video() {
            mp4::iframe_range(&bytes)
        } else {
            None
        };
        let seg = Segment {
            seq: open.seq,
            duration: open.duration,
            pdt_ms: open.pdt_ms,
            discontinuity: open.discontinuity,
            map: open.map,
            size: size as u64,
            iframe,
        };
        let action = Action::WriteSegment {
            rendition: self.id().to_string(),
            seq: seg.seq,
            pdt_ms: seg.pdt_ms,
            path: format!("{}/{}", self.id(), segment_uri(seg.seq)),
            data: bytes.clone(),
        };
        self.next_start = open.start.plus(open.duration);
        self.window = self.window.plus(open.duration);
        self.segs.push(Closed {
            seg,
            live_discontinuity: open.discontinuity,
            start: open.start,
            disk: Disk::Pending,
            parts: open.parts,
            bytes: Some(bytes),
        });
        self.changed = true;
        self.limit_pending();
        self.maintain(lim);
        Some(action)
    }

    /// Too many writes unconfirmed: the oldest is lost.
    fn limit_pending(&mut self) {
        let from = self.mem_from.min(self.segs.len());
        let pending: Vec<usize> = (from..self.segs.len())
            .filter(|i| self.segs[*i].disk == Disk::Pending)
            .collect();
        for i in pending
            .iter()
            .take(pending.len().saturating_sub(MAX_PENDING))
        {
            self.segs[*i].disk = Disk::Failed;
        }
    }

    fn find(&self, seq: u64) -> Option<usize> {
        let i = self.segs.partition_point(|c| c.seg.seq < seq);
        (self.segs.get(i)?.seg.seq == seq).then_some(i)
    }

    /// The caller wrote segment `seq` durably, or failed to. Written: its
    /// journal line. Either way the playlist file on disk is rewritten
    /// (a segment whose write failed is an `EXT-X-GAP` there).
    pub(crate) fn written(
        &mut self,
        seq: u64,
        ok: bool,
        lim: &Limits,
    ) -> Result<Vec<Action>, HlsError> {
        let Some(i) = self
            .find(seq)
            .filter(|i| self.segs[*i].disk == Disk::Pending)
        else {
            return Err(HlsError::UnknownSegment {
                rendition: self.id().to_string(),
                seq,
            });
        };
        let mut actions = Vec::new();
        if ok {
            // The VOD leaves out what could not be written: the segment
            // after such a gap follows a discontinuity there. (A segment
            // before it still unconfirmed counts as a gap: an extra tag is
            // harmless, a missing one is not.)
            let gap_before = i > 0 && self.segs[i - 1].disk != Disk::Written;
            let path = format!("{}/{}", self.id(), crate::journal::FILE);
            let c = &mut self.segs[i];
            c.seg.discontinuity = c.live_discontinuity || gap_before;
            c.disk = Disk::Written;
            actions.push(Action::Append {
                path,
                data: Bytes::from(crate::journal::line(&c.seg)),
            });
        } else {
            self.segs[i].disk = Disk::Failed;
        }
        self.changed = true;
        self.maintain(lim);
        actions.push(self.disk_playlist(lim, false));
        Ok(actions)
    }

    /// The live playlist as a file (`live.m3u8`): no parts (they are in
    /// memory only), segments that could not be written marked as gaps.
    pub(crate) fn disk_playlist(&self, lim: &Limits, ended: bool) -> Action {
        Action::Write {
            path: format!("{}/live.m3u8", self.id()),
            data: Bytes::from(media::live(self, lim, Mode::Disk, &[], ended)),
        }
    }

    /// End of stream: an open segment is dropped (flush first to keep
    /// it), and a write never confirmed counts as failed.
    pub(crate) fn end(&mut self, lim: &Limits) {
        self.open = None;
        let from = self.mem_from.min(self.segs.len());
        for c in &mut self.segs[from..] {
            if c.disk == Disk::Pending {
                c.disk = Disk::Failed;
            }
        }
        self.changed = true;
        self.maintain(lim);
    }

    /// End of the playlist on the timeline (its last part).
    pub(crate) fn end_time(&self) -> Ticks {
        match &self.open {
            Some(o) => o.start.plus(o.duration),
            None => self.next_start,
        }
    }

    /// First segment (from `mem_from`) starting at most `span` before the
    /// end of the playlist.
    pub(crate) fn first_within(&self, span: Ticks) -> usize {
        self.started_within(self.mem_from, span)
    }

    /// The same, searching from segment `from` on.
    fn started_within(&self, from: usize, span: Ticks) -> usize {
        let e = self.end_time();
        let from = from.min(self.segs.len());
        from + self.segs[from..].partition_point(|c| e.minus(c.start) > span)
    }

    /// Parts are listed for segments starting within three target
    /// durations of the end (RFC 8216bis 6.2.2: removed after that).
    pub(crate) fn parts_listed_from(&self, lim: &Limits) -> usize {
        self.first_within(lim.target_ticks.times(3))
    }

    /// Parts stay fetchable for three target durations after they leave
    /// the playlist (RFC 8216bis 6.2.2), with one more as margin.
    pub(crate) fn parts_kept_from(&self, lim: &Limits) -> usize {
        if lim.part_target.is_none() {
            return self.segs.len();
        }
        self.first_within(lim.target_ticks.times(7))
    }

    pub(crate) fn first_pending(&self) -> Option<usize> {
        let from = self.mem_from.min(self.segs.len());
        (from..self.segs.len()).find(|i| self.segs[*i].disk == Disk::Pending)
    }

    /// The newest part published.
    pub(crate) fn last_part(&self) -> Option<PartRef> {
        let (msn, n) = match &self.open {
            Some(o) if !o.parts.is_empty() => (o.seq, o.parts.len()),
            _ => self.segs.last().map(|c| (c.seg.seq, c.parts.len()))?,
        };
        let part = u32::try_from(n.checked_sub(1)?).ok()?;
        Some(PartRef { msn, part })
    }

    /// The part the preload hint names: the open segment's next one, or
    /// the first of the next segment when none is open or the open one has
    /// reached its length (within half a part: the next chunk starts a new
    /// segment, and a hint for a part that never comes costs a player a
    /// 404 every segment).
    pub(crate) fn next_part(&self, lim: &Limits) -> PartRef {
        let full = |o: &Open| {
            lim.part_target
                .is_some_and(|pt| o.duration.plus(Ticks(pt.0 / 2)) >= lim.target_ticks)
        };
        match &self.open {
            Some(o) if !full(o) => PartRef {
                msn: o.seq,
                part: u32::try_from(o.parts.len()).unwrap_or(u32::MAX),
            },
            _ => PartRef {
                msn: self.next_seq,
                part: 0,
            },
        }
    }

    /// Segments a delta update skips: those ending more than
    /// `CAN-SKIP-UNTIL` before the end of the last complete segment
    /// (RFC 8216bis 6.2.5.1).
    pub(crate) fn skippable(&self, lim: &Limits) -> usize {
        let (Some(skip), Some(last)) = (lim.skip_until, self.segs.last()) else {
            return 0;
        };
        let end = last.end();
        let live = &self.segs[self.window_start.min(self.segs.len())..];
        live.partition_point(|c| end.minus(c.end()) > skip)
    }

    /// Keep the window, memory and stable lines in step with the stream.
    fn maintain(&mut self, lim: &Limits) {
        self.slide(lim);
        let len = self.segs.len();
        let mem_from = len
            .saturating_sub(lim.memory_segments)
            .min(self.first_pending().unwrap_or(len))
            .min(self.parts_kept_from(lim))
            .max(self.mem_from);
        for c in &mut self.segs[self.mem_from.min(len)..mem_from] {
            if c.disk != Disk::Failed {
                c.bytes = None;
            }
            c.parts = Vec::new();
        }
        self.mem_from = mem_from;
        let gaps_from = self.started_within(self.gap_kept_from, lim.target_ticks.times(10));
        let gaps_from = gaps_from.min(mem_from).max(self.gap_kept_from);
        for c in &mut self.segs[self.gap_kept_from.min(len)..gaps_from] {
            c.bytes = None;
        }
        self.gap_kept_from = gaps_from;
        self.stable.forget_before(self.window_start);
        while self.stable.end() < mem_from {
            let i = self.stable.end();
            let lines = media::stable_lines(&self.segs, i);
            self.stable.push(&lines);
        }
    }

    /// Drop segments from the window's start while it stays long enough.
    fn slide(&mut self, lim: &Limits) {
        while self.window_start + 1 < self.segs.len() {
            let first = &self.segs[self.window_start];
            if self.window.minus(first.seg.duration) < lim.window_min {
                break;
            }
            // A tag leaving the playlist moves the discontinuity sequence.
            if first.live_discontinuity {
                self.discontinuity_seq += 1;
            }
            self.window = self.window.minus(first.seg.duration);
            self.window_start += 1;
        }
    }
}

/// Actions to carry out even when the chunk was refused (the segment it
/// closed), and whether it was accepted.
pub(crate) type Outcome = (Vec<Action>, Result<(), HlsError>);
