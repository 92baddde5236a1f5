//! The start of a session, as one blocking job on the blocking pool: the
//! pipeline is prepared (filters, elements) before the session gets a
//! folder or a record, so a refused start leaves nothing behind; then the
//! record, the recordings and the packaging worker; then the inputs open.
//! A failure after the record exists is recorded as `failed`, with every
//! thread stopped and the worker's playlists ended.

use std::sync::Arc;

use studiocast_media::master::RecordingState;
use studiocast_media::spec::AudioSource;
use studiocast_media::{event_queue, MediaEvent, PipelineSpec, QueueStats};
use studiocast_server::CreateSession;
use tokio::sync::mpsc::UnboundedSender;

use super::super::live::LiveSet;
use super::super::media::Running;
use super::super::recording::{AudioOrigin, RecordedChannelMap, Recording, Sidecar, SidecarRecord};
use super::super::worker::{self, Update};
use super::SessionCtx;

/// Media the pipeline may hold for the packaging worker before it drops
/// chunks (a stalled disk): about 40 s of a 720p session.
const QUEUE_BYTES: usize = 32 << 20;

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Job {
    pub ctx: Arc<SessionCtx>,
    pub id: String,
    pub req: CreateSession,
    pub spec: PipelineSpec,
    pub updates: UnboundedSender<Update>,
    pub span: tracing::Span,
    pub started_at: String,
}

pub struct Launched {
    /// What went wrong without stopping the start (a sidecar not written).
    pub warnings: Vec<String>,
    pub running: Box<dyn Running>,
    pub worker: std::thread::JoinHandle<Option<String>>,
    pub recording: (Arc<RecordingState>, Sidecar),
    pub queue: Arc<QueueStats>,
}

pub enum LaunchError {
    /// Before the session had a record: nothing is left behind.
    Refused(String),
    /// After: the record must say `failed` (the sidecar is finished, every
    /// thread stopped, the worker's playlists ended).
    Failed { msg: String },
}

pub fn run(job: Job) -> Result<Launched, LaunchError> {
    let _g = job.span.enter();
    super::super::recording::check_start(&job.ctx.media_root, &job.ctx.recording)
        .map_err(LaunchError::Refused)?;
    let (tx, rx, queue) = event_queue(QUEUE_BYTES);
    let closer = tx.clone();
    let mut prepared = job
        .ctx
        .backend
        .prepare(&job.spec, tx)
        .map_err(LaunchError::Refused)?;
    // Only now the session gets a folder and a record.
    let sdir = job.ctx.media_root.join(&job.id);
    let hls = sdir.join("hls");
    // The folder appears with its access file in it (made aside, then
    // renamed): the origin takes a folder without one for a lesson from
    // before access files, public.
    let visibility = job.req.visibility.unwrap_or_default();
    let aside = sdir.join(".hls.new");
    let made = std::fs::create_dir_all(&aside)
        .and_then(|_| studiocast_server::access::write_access(&aside, visibility))
        .and_then(|_| std::fs::rename(&aside, &hls));
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&sdir);
        return Err(LaunchError::Refused(format!(
            "cannot create {}: {e}",
            hls.display()
        )));
    }
    let info = studiocast_server::SessionInfo::starting(&job.id, &job.req, job.started_at.clone());
    if let Err(e) = job.ctx.store.save(&info) {
        let _ = std::fs::remove_dir_all(&sdir);
        return Err(LaunchError::Refused(format!(
            "cannot save the session record: {e}"
        )));
    }
    let state = Arc::new(RecordingState::default());
    if job.spec.audio.source.channel_map().is_some() {
        prepared.set_master(sdir.join("master.wav"), state.clone());
    }
    let (mut sidecar, written) = Sidecar::create(sdir.join("master.json"), sidecar_record(&job));
    let warnings: Vec<String> = written.err().into_iter().collect();
    let program = job.spec.video.as_ref().map(|_| Recording {
        video: sdir.join("program.mp4"),
        state: state.clone(),
    });
    let (spec, updates, span) = (job.spec.clone(), job.updates.clone(), job.span.clone());
    // Viewers reach the session's live views from now on (they wait for
    // the first part); the supervisor drops them once the session has
    // settled: three target durations later if the stream ended, at once
    // if it did not (see `live::Retiring`).
    let freeze = job
        .ctx
        .freeze_live
        .clone()
        .filter(|(name, _)| *name == job.spec.name)
        .map(|(_, d)| d);
    let live = LiveSet::freezing(&job.spec, freeze);
    job.ctx.live.insert(&job.id, live.clone());
    let worker = std::thread::Builder::new()
        .name(format!("pack-{}", job.id))
        .spawn(move || span.in_scope(|| worker::run(hls, spec, rx, updates, program, live)));
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            let _ = sidecar.finish(&now(), &state);
            return Err(LaunchError::Failed {
                msg: format!("cannot start the packaging worker: {e}"),
            });
        }
    };
    match prepared.start(job.span.clone()) {
        Ok(running) => Ok(Launched {
            warnings,
            running,
            worker,
            recording: (state, sidecar),
            queue,
        }),
        Err(msg) => {
            // Tell the worker the stream is over (a pipeline reference
            // handed out for diagnostics may keep a sender alive), so it
            // ends its playlists and exits.
            closer.send(MediaEvent::Error(msg.clone()));
            drop(closer);
            let _ = worker.join();
            let _ = sidecar.finish(&now(), &state);
            Err(LaunchError::Failed { msg })
        }
    }
}

fn sidecar_record(job: &Job) -> SidecarRecord {
    let spec = &job.spec;
    let map = spec.audio.source.channel_map();
    let audio_source = match &spec.audio.source {
        AudioSource::Device { host, device, .. } => AudioOrigin::Device {
            host: host.clone(),
            device: device.clone(),
        },
        AudioSource::Embedded { .. } => AudioOrigin::Embedded {
            embedded_in: spec
                .video
                .as_ref()
                .map(|v| studiocast_media::ingest::IngestSpec::describe_source(&v.source))
                .unwrap_or_default(),
        },
        AudioSource::SyntheticScene { .. } => AudioOrigin::Synthetic,
    };
    SidecarRecord {
        title: job.req.title.clone(),
        course: job.req.course.clone(),
        pipeline: job.req.pipeline.clone(),
        session: job.id.clone(),
        audio_source,
        audio_master: map.map(|_| "master.wav".into()),
        channels: map.map(|m| m.channels),
        sample_rate: spec.audio.sample_rate,
        channel_map: map.map(|m| RecordedChannelMap {
            ambisonic: m.ambisonic.cloned(),
            objects: m.objects.to_vec(),
            bed: m.bed.cloned(),
            stereo: m.stereo.cloned(),
        }),
        audio_format: "WAV/RF64, 32-bit float, untouched input samples".into(),
        video_master: spec.video.as_ref().map(|_| "program.mp4".into()),
        video_format: "fragmented MP4, H.264 (the program as streamed)".into(),
        started_at: job.started_at.clone(),
        ended_at: None,
        recording_stopped_early: None,
        interrupted: false,
        repaired_at: None,
        recovered_audio_s: None,
    }
}
