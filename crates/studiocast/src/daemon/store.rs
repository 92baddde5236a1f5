//! Session records behind the [`SessionStore`] trait. The embedded default
//! is [`FileStore`]: one JSON file per session under
//! `data/sessions/{id}/session.json`, written atomically and durably. A
//! shared database (several daemons, job workers) is a second
//! implementation of the same trait.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use studiocast_server::SessionInfo;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the session record: {0}")]
    Encode(#[from] serde_json::Error),
}

pub trait SessionStore: Send + Sync {
    /// Create or replace a session's record.
    fn save(&self, info: &SessionInfo) -> Result<(), StoreError>;
    /// Every readable record, oldest first; unreadable ones are logged and
    /// skipped.
    fn load_all(&self) -> Result<Vec<SessionInfo>, StoreError>;
}

pub struct FileStore {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileStore {
    /// `root`: the folder holding one folder per session.
    pub fn new(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        Ok(FileStore {
            root: root.to_path_buf(),
        })
    }
}

/// Write `data` to `path` through a new temporary file, synced, renamed
/// over the target, and the directory synced: readers (players, a
/// restarted daemon) never see a half-written file, and after a crash or a
/// power cut the file is either the old one or the new one.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Make a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl SessionStore for FileStore {
    fn save(&self, info: &SessionInfo) -> Result<(), StoreError> {
        let dir = self.root.join(&info.id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join("session.json");
        write_atomic(&path, &serde_json::to_vec_pretty(info)?).map_err(io_err(&path))
    }

    fn load_all(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let Ok(e) = e else { continue };
            let p = e.path().join("session.json");
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            match serde_json::from_slice::<SessionInfo>(&bytes) {
                Ok(i) => out.push(i),
                Err(err) => {
                    tracing::warn!(file = %p.display(), %err, "ignoring unreadable session record")
                }
            }
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("studiocast-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A folder that is gone: an error, not a panic, no leftovers.
        assert!(write_atomic(&dir.join("missing/x.json"), b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
