//! Uploaded recordings: where they land, how much room they get, and when
//! they go.
//!
//! An upload streams into `uploads/.partial-{random}` in the data folder
//! (the HTTP layer removes it if the request fails); once whole, the queue
//! moves it to `uploads/{job id}/{name}` and queues the job. The file is
//! removed when the job ends (succeeded, failed or cancelled): the lesson
//! is what is kept. At start, partial files and the uploads of ended or
//! unknown jobs (a crash between the two steps) are swept.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use studiocast_server::{ControlError, UploadTarget, Uploaded};

use super::store::JobRecord;
use super::{internal, JobSource, Jobs};

const MIB: u64 = 1024 * 1024;
const PARTIAL: &str = ".partial-";

/// A file name fit for the disk: letters, digits, `.`, `-`, `_`, at most
/// 100 characters, never hidden; the extension is kept (it tells the
/// decoders what the file is).
pub fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.chars().count() > 100 {
        // Keep the end, where the extension is.
        out = out.chars().skip(out.chars().count() - 100).collect();
    }
    let out = out.trim_start_matches('.').to_string();
    if out.is_empty() {
        "upload".into()
    } else {
        out
    }
}

impl Jobs {
    pub fn uploads_dir(&self) -> PathBuf {
        self.config.shared_dir.join("uploads")
    }

    /// Free space, refusing below the recording threshold.
    pub(super) fn room_mb(&self) -> Result<u64, ControlError> {
        let dir = &self.config.shared_dir;
        let free = crate::daemon::recording::free_mb(dir)
            .map_err(|e| internal(format!("free space of {}: {e}", dir.display())))?;
        let min = self.config.min_free_mb;
        if free < min {
            return Err(ControlError::Unavailable(format!(
                "only {free} MB free on {}; jobs need at least {min} MB \
                 (recording.min_free_mb)",
                dir.display()
            )));
        }
        Ok(free - min)
    }

    pub(super) fn target(&self, declared: Option<u64>) -> Result<UploadTarget, ControlError> {
        let limit = self.config.max_upload_bytes;
        if let Some(n) = declared.filter(|&n| n > limit) {
            return Err(ControlError::PayloadTooLarge(format!(
                "the upload is {} MB, over the limit of {} MB ([jobs] max_upload_mb)",
                n / MIB,
                limit / MIB
            )));
        }
        // Uploads running now hold their share: together they never
        // take the disk below the threshold.
        let held = self.reserved.load(Ordering::SeqCst);
        let room = self.room_mb()?.saturating_mul(MIB).saturating_sub(held);
        if room == 0 || declared.is_some_and(|n| n > room) {
            return Err(ControlError::Unavailable(format!(
                "the upload is {} MB and only {} MB may be used now ({} MB held by uploads \
                 running; recording.min_free_mb is kept free)",
                declared.unwrap_or(0) / MIB,
                room / MIB,
                held / MIB
            )));
        }
        let dir = self.uploads_dir();
        std::fs::create_dir_all(&dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| internal(format!("no randomness: {e}")))?;
        let tag: String = b.iter().map(|x| format!("{x:02x}")).collect();
        // A declared length is what the file can at most be; without one
        // (chunked), the whole room is held until the upload ends.
        let max_bytes = declared.unwrap_or(u64::MAX).min(limit).min(room);
        self.reserved.fetch_add(max_bytes, Ordering::SeqCst);
        Ok(UploadTarget {
            path: dir.join(format!("{PARTIAL}{tag}")),
            max_bytes,
            reserved: max_bytes,
        })
    }

    pub(super) fn unreserve(&self, target: &UploadTarget) {
        let _ = self
            .reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                Some(r.saturating_sub(target.reserved))
            });
    }

    /// Moves a whole upload under its job and makes the job's record; the
    /// file is removed if the spec is refused.
    pub(super) fn accept(
        &self,
        spec: serde_json::Value,
        file: &Uploaded,
        id: &str,
        now: i64,
    ) -> Result<JobRecord, ControlError> {
        let refuse = |e: ControlError| {
            let _ = std::fs::remove_file(&file.path);
            e
        };
        let spec = self.parse_spec(spec).map_err(refuse)?;
        // Only a file the HTTP layer was given by `target`.
        let partial = file
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PARTIAL));
        if file.path.parent() != Some(self.uploads_dir().as_path()) || !partial {
            return Err(internal(format!(
                "an upload outside the uploads folder: {}",
                file.path.display()
            )));
        }
        let name = safe_name(&file.file_name);
        let dir = self.uploads_dir().join(id);
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::rename(&file.path, dir.join(&name)))
            .map_err(|e| refuse(internal(format!("moving the upload: {e}"))))?;
        let source = JobSource::Upload(format!("{id}/{name}"));
        Ok(JobRecord::new(
            id.to_string(),
            serde_json::to_value(&spec).map_err(internal)?,
            serde_json::to_value(&source).map_err(internal)?,
            now,
        ))
    }

    /// After a job ended: its upload is no longer needed.
    pub fn release_upload(&self, job: &JobRecord) {
        if !job.state.ended() {
            return;
        }
        if let Ok(JobSource::Upload(_)) = serde_json::from_value(job.source.clone()) {
            let dir = self.uploads_dir().join(&job.id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(job = %job.id, %e, "cannot remove the upload");
            }
        }
    }

    /// At start: partial uploads, and uploads whose job ended or is unknown.
    pub fn sweep_uploads(&self) {
        let Ok(entries) = std::fs::read_dir(self.uploads_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Another daemon on a shared queue may be writing a partial
            // one, or between moving an upload under its job and queueing
            // it: only what is untouched for ten minutes can be dead.
            let idle = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|d| d > std::time::Duration::from_secs(600));
            let stale = if name.starts_with(PARTIAL) {
                idle
            } else {
                match self.store.get(&name) {
                    Ok(Some(j)) => j.state.ended(),
                    Ok(None) => idle,
                    Err(_) => false,
                }
            };
            if stale {
                tracing::info!(upload = %name, "removing a stale upload");
                let p = e.path();
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn client_file_names_cannot_reach_outside_or_hide() {
        assert_eq!(safe_name("lesson 3.wav"), "lesson_3.wav");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\rec\\take.flac"), "take.flac");
        assert_eq!(safe_name(".hidden.wav"), "hidden.wav");
        assert_eq!(safe_name(".."), "upload");
        assert_eq!(safe_name(""), "upload");
        assert_eq!(safe_name("é.wav"), "_.wav");
        let long = format!("{}.wav", "a".repeat(300));
        let s = safe_name(&long);
        assert_eq!(s.len(), 100);
        assert!(s.ends_with(".wav"));
    }
}
