//! At start: sessions the store still calls active were running when the
//! daemon died. Each is repaired (the WAV header from the file length, a
//! torn MP4 fragment cut), republished (VOD playlists and an ended live
//! playlist from the segment journal) and marked `interrupted` with what
//! was recovered. Nothing here stops the daemon from starting: a record
//! that cannot be rewritten (a full disk after the crash) is logged and the
//! session listed as interrupted anyway.

use std::collections::HashMap;
use std::path::Path;

use studiocast_media::PipelineSpec;
use studiocast_server::{SessionInfo, SessionState};

use super::recording;
use super::session::now;
use super::store::SessionStore;
use super::worker;

/// Load every record, recovering interrupted ones; the result is what the
/// supervisor lists.
pub fn recover_all(
    store: &dyn SessionStore,
    media_root: &Path,
    presets: &HashMap<String, PipelineSpec>,
) -> Vec<SessionInfo> {
    let records = match store.load_all() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%e, "cannot read the session records; starting with none listed");
            return Vec::new();
        }
    };
    records
        .into_iter()
        .map(|info| {
            if !info.state.is_active() {
                return info;
            }
            let dir = media_root.join(&info.id);
            let info = recover(info, &dir, presets);
            if let Err(e) = store.save(&info) {
                tracing::error!(id = %info.id, %e, "cannot rewrite the interrupted session's record; it is listed as interrupted until the next start");
            }
            info
        })
        .collect()
}

fn recover(
    mut info: SessionInfo,
    sdir: &Path,
    presets: &HashMap<String, PipelineSpec>,
) -> SessionInfo {
    info.state = SessionState::Interrupted;
    let mut msg = "the daemon stopped while this session was running".to_string();
    let master = sdir.join("master.wav");
    let mut recovered = None;
    if master.exists() {
        match studiocast_audiofile::pcm::repair(&master) {
            Ok(h) => {
                let secs = h.frames() as f64 / h.sample_rate.max(1) as f64;
                msg.push_str(&format!("; master recovered: {secs:.1} s"));
                recovered = Some(secs);
                tracing::warn!(id = %info.id, seconds = secs, "recovered interrupted master");
            }
            Err(e) => msg.push_str(&format!("; master could not be repaired: {e}")),
        }
    }
    let program = sdir.join("program.mp4");
    if program.exists() {
        match recording::repair_fmp4(&program) {
            Ok(bytes) => msg.push_str(&format!("; program video kept: {} MB", bytes / 1_000_000)),
            Err(e) => msg.push_str(&format!("; program video could not be repaired: {e}")),
        }
    }
    recording::mark_interrupted(&sdir.join("master.json"), recovered, &now());
    match presets.get(&info.pipeline) {
        Some(spec) => match worker::republish(&sdir.join("hls"), spec) {
            Ok(secs) => {
                msg.push_str(&format!("; stream republished: {secs:.1} s"));
                tracing::warn!(id = %info.id, seconds = secs, "republished interrupted stream");
            }
            Err(e) => msg.push_str(&format!("; stream not republished: {e}")),
        },
        None => msg.push_str(&format!(
            "; stream not republished: preset '{}' is gone",
            info.pipeline
        )),
    }
    info.error = Some(msg);
    info
}
