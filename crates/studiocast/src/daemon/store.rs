//! Session records: one JSON file per session under
//! `data/sessions/{id}/session.json`, written atomically. This is the
//! embedded default behind [`SessionStore`]; a shared database can replace
//! it for several daemons.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use studiocast_server::SessionInfo;

pub trait SessionStore: Send + Sync {
    fn save(&self, info: &SessionInfo) -> Result<()>;
    fn load_all(&self) -> Result<Vec<SessionInfo>>;
}

pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("sessions");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        Ok(FileStore { root })
    }

    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The folder holding every session (checked for free space).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

/// Write `data` to `path` through a temporary file and a rename, so readers
/// (players, a restarted daemon) never see a half-written file.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

impl SessionStore for FileStore {
    fn save(&self, info: &SessionInfo) -> Result<()> {
        let dir = self.session_dir(&info.id);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("session.json"), &serde_json::to_vec_pretty(info)?)?;
        Ok(())
    }

    fn load_all(&self) -> Result<Vec<SessionInfo>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root)? {
            let p = e?.path().join("session.json");
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
