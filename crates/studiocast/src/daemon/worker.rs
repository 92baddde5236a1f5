//! The packaging worker of one session: CMAF from the pipeline in, HLS files
//! out. Runs on its own thread (blocking file I/O, no async needed).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use studiocast_hls::{Action, Chunk, Packager, PackagerConfig, Rendition, RenditionKind};
use studiocast_media::spec::PipelineSpec;
use studiocast_media::{avc_codec_string, MediaEvent};
use tokio::sync::mpsc::UnboundedSender;

use super::recording::ProgramRecorder;
use super::store::write_atomic;

/// What a worker tells the supervisor.
#[derive(Debug)]
pub enum Update {
    Live { id: String },
    Ended { id: String },
    Failed { id: String, error: String },
}

pub fn renditions(spec: &PipelineSpec) -> Vec<Rendition> {
    let mut r = Vec::new();
    if let Some(v) = &spec.video {
        r.push(Rendition {
            id: "video".into(),
            kind: RenditionKind::Video {
                width: v.width,
                height: v.height,
                frame_rate: v.framerate as f64,
            },
            // Replaced by the exact string from the encoder's avcC.
            codecs: "avc1.640028".into(),
            // x264's rate control overshoots on scene changes.
            bandwidth: v.bitrate_kbps as u64 * 1000 * 5 / 4,
        });
    }
    for a in &spec.audio.renditions {
        r.push(Rendition {
            id: a.id.clone(),
            kind: RenditionKind::Audio {
                name: a.name.clone(),
                channels: 2,
                default: a.default,
                language: None,
            },
            codecs: "mp4a.40.2".into(),
            bandwidth: a.bitrate_kbps as u64 * 1000 * 9 / 8,
        });
    }
    r
}

/// Carry out the packager's file actions under `dir`.
pub fn apply_actions(dir: &Path, actions: Vec<Action>) {
    for a in actions {
        let p = dir.join(a.path());
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let r = match a {
            Action::Write { data, .. } => write_atomic(&p, &data),
            Action::Append { data, .. } => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &data)),
        };
        if let Err(e) = r {
            tracing::error!(file = %p.display(), %e, "cannot write HLS file");
        }
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
    let config = PackagerConfig {
        target_duration: spec.segment_seconds as u64,
        window_segments: 6,
    };
    let mut p = Packager::recover(config, all, &journals).map_err(|e| e.to_string())?;
    if let Some(c) = std::fs::read(dir.join("video/init.mp4"))
        .ok()
        .and_then(|i| avc_codec_string(&i))
    {
        let _ = p.set_codecs("video", &c);
    }
    let secs = journals
        .iter()
        .map(|(id, _)| p.duration(id))
        .fold(0.0, f64::max);
    let mut actions = p.end();
    actions.push(p.master_action());
    apply_actions(dir, actions);
    Ok(secs)
}

pub fn run(
    id: String,
    dir: PathBuf,
    spec: PipelineSpec,
    rx: Receiver<MediaEvent>,
    updates: UnboundedSender<Update>,
    recording: Option<super::recording::Recording>,
) {
    let span = tracing::info_span!("session", %id);
    let _g = span.enter();
    let config = PackagerConfig {
        target_duration: spec.segment_seconds as u64,
        window_segments: 6,
    };
    let all = renditions(&spec);
    let ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    let mut packager = match Packager::new(config, all) {
        Ok(p) => p,
        Err(e) => {
            let _ = updates.send(Update::Failed {
                id,
                error: e.to_string(),
            });
            return;
        }
    };
    let apply = |actions: Vec<Action>| apply_actions(&dir, actions);
    // Per rendition: capture time from which the next segment follows a
    // discontinuity (the program came back from a slate).
    let mut pending_disc: HashMap<String, i64> = HashMap::new();
    let mut program = ProgramRecorder::new(recording);
    let mut inits: HashSet<String> = HashSet::new();
    let mut master_written = false;
    let mut live = false;
    let outcome = loop {
        let Ok(ev) = rx.recv() else {
            // The pipeline went away without EOS (shutdown or abort).
            break None;
        };
        match ev {
            MediaEvent::Init { rendition, data } => {
                if rendition == "video" {
                    if let Some(c) = avc_codec_string(&data) {
                        let _ = packager.set_codecs("video", &c);
                    }
                }
                if rendition == "video" {
                    program.init(&data);
                }
                match packager.push_init(&rendition, data) {
                    Ok(a) => apply(a),
                    Err(e) => tracing::warn!(%rendition, %e, "init refused"),
                }
                inits.insert(rendition);
                if !master_written && ids.iter().all(|r| inits.contains(r)) {
                    apply(vec![packager.master_action()]);
                    master_written = true;
                }
            }
            MediaEvent::Chunk {
                rendition,
                data,
                duration,
                pdt_ms,
                independent,
            } => {
                if rendition == "video" {
                    program.chunk(&data);
                }
                // Audio fragments end on AAC frames, up to one frame off
                // the video's boundary: allow a little slack.
                if pending_disc
                    .get(&rendition)
                    .is_some_and(|at| pdt_ms + 100 >= *at)
                {
                    pending_disc.remove(&rendition);
                    let _ = packager.discontinuity_in(&rendition);
                    tracing::info!(%rendition, "discontinuity");
                }
                let chunk = Chunk {
                    data,
                    duration,
                    independent,
                    pdt_ms: Some(pdt_ms),
                    ends_segment: true,
                };
                match packager.push_chunk(&rendition, chunk) {
                    Ok(a) => apply(a),
                    Err(e) => tracing::warn!(%rendition, %e, "segment refused"),
                }
                if !live && master_written && ids.iter().all(|r| packager.segment_count(r) > 0) {
                    live = true;
                    tracing::info!("first segments published");
                    let _ = updates.send(Update::Live { id: id.clone() });
                }
            }
            MediaEvent::Discontinuity { pdt_ms } => {
                for r in &ids {
                    pending_disc.insert(r.clone(), pdt_ms);
                }
            }
            MediaEvent::Eos => break None,
            MediaEvent::Error(e) => break Some(e),
        }
    };
    if !master_written {
        apply(vec![packager.master_action()]);
    }
    apply(packager.end());
    tracing::info!(
        segments = packager.segment_count("video"),
        "playlists finalised"
    );
    let _ = updates.send(match outcome {
        None => Update::Ended { id },
        Some(error) => Update::Failed { id, error },
    });
}
