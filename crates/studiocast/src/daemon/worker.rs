//! The packaging worker of one session: CMAF from the pipeline in, HLS files
//! out. Runs on its own thread (blocking file I/O, no async needed), owned
//! by the session's actor, to which it reports.
//!
//! Every segment is written to a new file, synced and renamed into place
//! before the packager publishes it; a segment that cannot be written (a
//! full disk, no descriptors left) never reaches a playlist, and the
//! failure is reported so the session raises an alarm.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use studiocast_hls::mp4::avc_codec_string;
use studiocast_hls::{Action, Chunk, HlsError, Packager, PackagerConfig, Rendition, RenditionKind};
use studiocast_media::spec::{Mix, PipelineSpec};
use studiocast_media::{EventReceiver, MediaEvent};
use tokio::sync::mpsc::UnboundedSender;

use super::live::LiveSet;
use super::recording::{ProgramRecorder, Recording};
use super::store::{sync_dir, write_atomic};

/// What a worker tells its session.
#[derive(Debug)]
pub enum Update {
    /// Every rendition has published a segment.
    Live,
    /// A file could not be written (the first of a run of failures).
    WriteFailed { file: String, error: String },
    /// Writes succeed again after failures.
    WritesRecovered,
    /// The stream ended (EOS), playlists finalised.
    Ended,
    /// The pipeline failed; playlists finalised.
    Failed { error: String },
}

pub fn renditions(spec: &PipelineSpec) -> Vec<Rendition> {
    let mut r = Vec::new();
    for v in spec
        .video
        .iter()
        .flat_map(|v| v.renditions.iter().map(move |r| (v, r)))
    {
        let (video, rung) = v;
        r.push(Rendition {
            id: rung.id.clone(),
            kind: RenditionKind::Video {
                width: rung.width,
                height: rung.height,
                frame_rate: video.framerate as f64,
            },
            // Replaced by the exact string from the encoder's avcC.
            codecs: match rung.profile.as_str() {
                "baseline" => "avc1.42c01f",
                "main" => "avc1.4d401f",
                _ => "avc1.640028",
            }
            .into(),
            // x264's rate control overshoots on scene changes; the VOD
            // master gets the measured peak instead.
            bandwidth: rung.bitrate_kbps as u64 * 1000 * 5 / 4,
        });
    }
    for a in &spec.audio.renditions {
        r.push(Rendition {
            id: a.id.clone(),
            kind: RenditionKind::Audio {
                name: a.name.clone(),
                channels: a.mix.channels() as u32,
                default: a.default,
                autoselect: a.mix != Mix::Ambisonic,
                language: None,
            },
            codecs: a.mix.codecs().into(),
            bandwidth: a.bitrate_kbps as u64 * 1000 * 9 / 8,
        });
    }
    r
}

/// The video rungs' ids (their inits carry the codec strings).
fn video_ids(spec: &PipelineSpec) -> Vec<String> {
    spec.video
        .iter()
        .flat_map(|v| v.renditions.iter().map(|r| r.id.clone()))
        .collect()
}

fn packager_config(spec: &PipelineSpec) -> PackagerConfig {
    PackagerConfig {
        target_duration: spec.segment_seconds as u64,
        part_target: spec.part_target(),
        dvr_seconds: spec.dvr_seconds as u64,
        ..PackagerConfig::default()
    }
}

/// Write a new file durably: a temporary file, synced, renamed, the
/// folder synced.
fn write_durable(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomic(path, data)
}

fn append_durable(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(data)?;
    f.sync_data()
}

/// Carries out the packager's actions under one folder, confirming each
/// segment write, and remembers whether writes are failing.
pub struct Files {
    dir: PathBuf,
    failing: bool,
    /// Failures since the last success.
    pub failures: u64,
    /// Capture times of segments whose write failed since last asked.
    /// (rendition, capture time) of segments whose write failed since
    /// last asked.
    pub lost_at: Vec<(String, i64)>,
}

impl Files {
    pub fn new(dir: PathBuf) -> Self {
        Files {
            dir,
            failing: false,
            failures: 0,
            lost_at: Vec::new(),
        }
    }

    /// Run `actions` in order; a segment write is reported to the packager,
    /// and what it publishes in return runs next. Returns the first new
    /// failure (file, error) when writes start failing, and whether writes
    /// recovered.
    pub fn apply(&mut self, p: &mut Packager, actions: Vec<Action>) -> Vec<Update> {
        let mut out = Vec::new();
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            let path = self.dir.join(a.path());
            let r = match &a {
                Action::WriteSegment { data, .. } => write_durable(&path, data),
                Action::Write { data, .. } => write_durable(&path, data),
                Action::Append { data, .. } => append_durable(&path, data),
            };
            if let Action::WriteSegment {
                rendition,
                seq,
                pdt_ms,
                ..
            } = &a
            {
                if let (Err(_), Some(at)) = (&r, pdt_ms) {
                    self.lost_at.push((rendition.clone(), *at));
                }
                match p.segment_written(rendition, *seq, r.is_ok()) {
                    Ok(more) => queue.extend(more),
                    Err(e) => tracing::error!(%rendition, %e, "segment confirmation refused"),
                }
            }
            // Only a segment written clears the alarm: a playlist is a few
            // hundred bytes and fits in a disk's last blocks, so on a full
            // disk it would clear the alarm at every segment.
            let segment = matches!(a, Action::WriteSegment { .. });
            match r {
                Ok(()) if self.failing && segment => {
                    self.failing = false;
                    self.failures = 0;
                    tracing::info!(file = %path.display(), "HLS files are written again");
                    out.push(Update::WritesRecovered);
                }
                Ok(()) => {}
                Err(e) => {
                    self.failures += 1;
                    tracing::error!(file = %path.display(), %e, "cannot write HLS file");
                    if !self.failing {
                        self.failing = true;
                        out.push(Update::WriteFailed {
                            file: path.display().to_string(),
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
        out
    }
}

/// Publish what an interrupted session's journals recorded as a finished
/// stream (VOD playlists, live playlists ended). Returns the seconds of the
/// longest rendition.
pub fn republish(dir: &Path, spec: &PipelineSpec) -> Result<f64, String> {
    let all = renditions(spec);
    let journals: Vec<(String, String)> = all
        .iter()
        .filter_map(|r| {
            std::fs::read_to_string(dir.join(&r.id).join("segments.log"))
                .ok()
                .map(|t| (r.id.clone(), t))
        })
        .collect();
    if journals.is_empty() {
        return Err("no segments were published".into());
    }
    let mut p =
        Packager::recover(packager_config(spec), all, &journals).map_err(|e| e.to_string())?;
    for id in video_ids(spec) {
        if let Some(c) = std::fs::read(dir.join(&id).join("init.mp4"))
            .ok()
            .and_then(|i| avc_codec_string(&i))
        {
            let _ = p.set_codecs(&id, &c);
        }
    }
    let secs = journals
        .iter()
        .map(|(id, _)| p.duration(id))
        .fold(0.0, f64::max);
    let mut actions = p.end();
    actions.extend(p.master_actions());
    let mut files = Files::new(dir.to_path_buf());
    files.apply(&mut p, actions);
    if files.failures > 0 {
        return Err(format!("{} playlists could not be written", files.failures));
    }
    let _ = sync_dir(dir);
    Ok(secs)
}

/// The worker's loop: until the pipeline ends (EOS, error, or it is gone).
/// Returns the stream's error, if it ended with one (what it also reports).
pub fn run(
    dir: PathBuf,
    spec: PipelineSpec,
    rx: EventReceiver,
    updates: UnboundedSender<Update>,
    recording: Option<Recording>,
    live: Arc<LiveSet>,
) -> Option<String> {
    let all = renditions(&spec);
    let ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    let mut packager = match Packager::new(packager_config(&spec), all) {
        Ok(p) => p,
        Err(e) => {
            let _ = updates.send(Update::Failed {
                error: e.to_string(),
            });
            return Some(e.to_string());
        }
    };
    let mut files = Files::new(dir);
    let mut w = Worker {
        half_segment_ms: spec.segment_seconds as i64 * 500,
        video: video_ids(&spec),
        ids,
        pending_disc: HashMap::new(),
        skipping: HashSet::new(),
        open_secs: HashMap::new(),
        video_boundary_ms: i64::MIN,
        segment_secs: spec.segment_seconds as f64,
        program: ProgramRecorder::new(recording),
        inits: HashSet::new(),
        master_written: false,
        live: false,
    };
    let send_all = |us: Vec<Update>| {
        for u in us {
            let _ = updates.send(u);
        }
    };
    let outcome = loop {
        // None: the pipeline went away without EOS (shutdown or abort).
        let Some(ev) = rx.recv() else { break None };
        match ev {
            MediaEvent::Eos => break None,
            MediaEvent::Error(e) => break Some(e),
            ev => {
                let actions = w.on_event(&mut packager, ev);
                // Parts and complete segments go to viewers from memory at
                // once; the disk work (segment fsyncs, the journal) follows.
                publish(&mut packager, &live);
                send_all(files.apply(&mut packager, actions));
                for (rendition, at) in files.lost_at.drain(..) {
                    w.gap_at(at, Some(&rendition));
                }
                publish(&mut packager, &live);
                if w.became_live(&packager) {
                    let _ = updates.send(Update::Live);
                }
            }
        }
    };
    let mut last = packager.flush();
    if !w.master_written {
        last.extend(packager.master_actions());
    }
    send_all(files.apply(&mut packager, last));
    let end = packager.end();
    send_all(files.apply(&mut packager, end));
    publish(&mut packager, &live);
    tracing::info!(
        segments = w
            .ids
            .iter()
            .map(|r| packager.segment_count(r))
            .max()
            .unwrap_or(0),
        "playlists finalised"
    );
    let _ = updates.send(match &outcome {
        None => Update::Ended,
        Some(error) => Update::Failed {
            error: error.clone(),
        },
    });
    outcome
}

/// Hand the origin a new snapshot of every rendition that changed (a part,
/// a segment, a write confirmed, the end).
fn publish(p: &mut Packager, live: &LiveSet) {
    for id in p.take_changed() {
        if let Some(v) = p.view(&id) {
            live.publish(&id, v);
        }
    }
}

/// The worker's state between events.
struct Worker {
    /// Half a segment, ms: a gap at time T is marked on the segments that
    /// start after T in every rendition (audio boundaries sit up to a frame
    /// off the video's).
    half_segment_ms: i64,
    ids: Vec<String>,
    /// The ladder's rungs; the first is the archival program.
    video: Vec<String>,
    /// Per rendition: capture time from which the next segment follows a
    /// discontinuity (the program came back from a slate).
    pending_disc: HashMap<String, i64>,
    /// Renditions that lost chunks mid-segment: their chunks are dropped
    /// until their next segment boundary.
    skipping: HashSet<String>,
    /// Per audio rendition: its open segment's start (capture ms) and
    /// seconds so far, and how many segments it has started.
    open_secs: HashMap<String, (i64, f64, u64)>,
    /// Capture time (ms) of the newest video segment start.
    video_boundary_ms: i64,
    segment_secs: f64,
    program: ProgramRecorder,
    inits: HashSet<String>,
    master_written: bool,
    live: bool,
}

impl Worker {
    /// An audio muxer that misses a split runs its segment on past the
    /// video's boundary, and the packager would refuse it at the target
    /// duration, leaving that rendition silent until the next boundary.
    /// Cut it at the first chunk that starts at or after the video's newest
    /// segment start (so the audio comes back to the video's grid rather
    /// than drifting), and in any case at the chunk that would take it past
    /// the segment length. A rendition's first segment is spared the
    /// video's grid (it runs from wherever the audio began), not the length.
    fn boundary_for(
        &mut self,
        id: &str,
        pdt_ms: i64,
        duration: f64,
        boundary: bool,
        independent: bool,
    ) -> bool {
        if self.video.iter().any(|v| v == id) {
            if boundary {
                self.video_boundary_ms = self.video_boundary_ms.max(pdt_ms);
            }
            return boundary;
        }
        let (half, length) = (self.half_segment_ms, self.segment_secs);
        let video_ms = self.video_boundary_ms;
        let has_video = !self.video.is_empty();
        let (start, open, started) = self
            .open_secs
            .entry(id.to_string())
            .or_insert((pdt_ms, 0.0, 0));
        // Whatever the video does (a starved encoder can leave its newest
        // boundary seconds behind), a segment never grows past its length:
        // the packager would refuse the chunk that takes it there, and the
        // rendition would wait for a split the muxer may not make.
        // A first segment runs from the audio's start to the video's first
        // boundary (its first frame comes tens of ms in): cut at the length,
        // it left a sliver before the muxer's split that put every later
        // audio segment one ahead. The packager takes up to 2.49 s.
        let slack = if *started <= 1 { 0.4 } else { 0.1 };
        let too_long = *open + duration > length + slack;
        let at_video =
            has_video && *started > 1 && video_ms > *start + half && pdt_ms + 10 >= video_ms;
        let cut = *started > 0 && !boundary && independent && (at_video || too_long);
        if cut {
            tracing::warn!(rendition = %id, open = *open, "audio segment past the video's boundary: cut here");
        }
        let boundary = boundary || cut;
        if boundary {
            (*start, *open) = (pdt_ms, duration);
            *started += 1;
        } else {
            *open += duration;
        }
        boundary
    }

    /// Every rendition has a segment on disk (publishing waits for the
    /// writes: ask after them), for the first time.
    fn became_live(&mut self, p: &Packager) -> bool {
        if self.live || !self.master_written || !self.ids.iter().all(|r| p.segment_count(r) > 0) {
            return false;
        }
        self.live = true;
        tracing::info!("first segments published");
        true
    }

    /// Media around capture time `at` is missing in some rendition (a
    /// segment that could not be written, chunks the queue dropped): every
    /// rendition marks a discontinuity on its next segment after it, so
    /// the discontinuity sequences stay aligned.
    ///
    /// `except`: the rendition whose segment write failed; its packager
    /// already marks the next segment.
    fn gap_at(&mut self, at: i64, except: Option<&str>) {
        for r in self.ids.iter().filter(|r| Some(r.as_str()) != except) {
            let mark = at.saturating_add(self.half_segment_ms);
            let e = self.pending_disc.entry(r.clone()).or_insert(mark);
            *e = (*e).min(mark);
        }
    }

    /// The packager's actions for one event.
    fn on_event(&mut self, p: &mut Packager, ev: MediaEvent) -> Vec<Action> {
        let mut actions = Vec::new();
        match ev {
            MediaEvent::Init { rendition, data } => {
                if self.video.contains(&rendition) {
                    if let Some(c) = avc_codec_string(&data) {
                        let _ = p.set_codecs(&rendition, &c);
                    }
                }
                if self.video.first() == Some(&rendition) {
                    self.program.init(&data);
                }
                match p.push_init(&rendition, data) {
                    Ok(a) => actions.extend(a),
                    Err(e) => tracing::warn!(%rendition, %e, "init refused"),
                }
                self.inits.insert(rendition);
                if !self.master_written && self.ids.iter().all(|r| self.inits.contains(r)) {
                    actions.extend(p.master_actions());
                    self.master_written = true;
                }
            }
            MediaEvent::Chunk {
                rendition,
                data,
                duration,
                pdt_ms,
                independent,
                boundary,
                after_gap,
            } => {
                if self.video.first() == Some(&rendition) {
                    self.program.chunk(&data);
                }
                if after_gap {
                    // Chunks before this one were dropped: all renditions
                    // mark the gap from here.
                    self.gap_at(pdt_ms.saturating_sub(self.half_segment_ms * 2), None);
                }
                // Mid-segment, what follows a hole cannot be spliced on (a
                // video chunk refers to frames that were dropped): the
                // segment closes short, and the rendition waits for the
                // next boundary, where the discontinuity goes.
                if after_gap && !boundary {
                    self.skipping.insert(rendition.clone());
                }
                if self.skipping.contains(&rendition) {
                    if !boundary {
                        return actions;
                    }
                    self.skipping.remove(&rendition);
                }
                let boundary =
                    self.boundary_for(&rendition, pdt_ms, duration, boundary, independent);
                // A discontinuity sits between segments: mark it when the
                // first segment after the return starts (audio boundaries
                // sit up to a frame before the video's: a little slack).
                let back = boundary
                    && self
                        .pending_disc
                        .get(&rendition)
                        .is_some_and(|at| pdt_ms + 100 >= *at);
                if back {
                    self.pending_disc.remove(&rendition);
                    if let Ok(a) = p.discontinuity_in(&rendition) {
                        actions.extend(a);
                    }
                    tracing::info!(%rendition, after_gap, "discontinuity");
                }
                let chunk = Chunk {
                    data: data.into(),
                    duration,
                    independent,
                    pdt_ms: Some(pdt_ms),
                    boundary,
                };
                match p.push_chunk(&rendition, chunk) {
                    Ok(a) => actions.extend(a),
                    Err(e @ HlsError::AwaitingBoundary(_)) => {
                        // Expected after a refusal: quiet.
                        tracing::debug!(%rendition, %e, "chunk skipped");
                        actions.extend(p.take_actions());
                    }
                    Err(e) => {
                        tracing::warn!(%rendition, %e, "chunk refused");
                        // The segment it was part of closed as it stood.
                        actions.extend(p.take_actions());
                    }
                }
            }
            MediaEvent::Discontinuity { pdt_ms } => {
                for r in &self.ids {
                    self.pending_disc.insert(r.clone(), pdt_ms);
                }
            }
            MediaEvent::Eos | MediaEvent::Error(_) => {}
        }
        actions
    }
}

#[cfg(test)]
mod tests;
