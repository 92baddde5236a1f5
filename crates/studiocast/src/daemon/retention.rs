//! Retention (`[retention]`): ended sessions' files removed by age.
//!
//! Three things age apart, each counted from the session's end:
//! * the live listing (`live_days`): the live playlists (`master.m3u8`,
//!   `master-player.m3u8`, each rendition's `live.m3u8`); the `/live/` URL
//!   then answers 404 and the VOD, which shares the segments, stays;
//! * the VOD (`vod_days`): the whole `hls/` folder, segments included;
//! * the masters (`masters_days`): `master.wav` and `program.mp4`. They are
//!   the archive: without a `masters_days` rule they are never deleted.
//!
//! A session is kept whole while it runs, while it has no end time, and
//! while it is pinned (a `pinned` file in its folder, set by `PUT
//! /api/v1/sessions/{id}/pin`). Its record (`session.json`, `master.json`)
//! is always kept, so the list still says what was recorded.
//!
//! [`plan`] decides from facts and the time (no I/O; tested with made-up
//! ages); [`facts_of`] reads a session's folder; [`apply`] removes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use studiocast_server::{SessionInfo, SessionState};

/// The `[retention]` section. Every rule is optional: no rule, nothing
/// is removed.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days after a session's end that its live playlists are kept.
    #[serde(default)]
    pub live_days: Option<u32>,
    /// Days after the end that its VOD (the `hls/` folder) is kept.
    #[serde(default)]
    pub vod_days: Option<u32>,
    /// Days after the end that `master.wav` and `program.mp4` are kept.
    /// Unset: never removed.
    #[serde(default)]
    pub masters_days: Option<u32>,
    /// Minutes between two sweeps of the daemon (default 60).
    #[serde(default)]
    pub every_minutes: Option<u64>,
}

impl RetentionConfig {
    pub fn any(&self) -> bool {
        self.live_days.is_some() || self.vod_days.is_some() || self.masters_days.is_some()
    }

    pub fn every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60 * self.every_minutes.unwrap_or(60).max(1))
    }
}

/// What can be removed of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Live,
    Vod,
    Masters,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Live => "live",
            Part::Vod => "vod",
            Part::Masters => "masters",
        }
    }
}

/// What a session's folder holds, and what its record says.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub id: String,
    /// Ended (or failed, or interrupted) with an end time.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub running: bool,
    pub pinned: bool,
    pub live: bool,
    pub vod: bool,
    pub masters: bool,
    pub hls_bytes: u64,
    pub masters_bytes: u64,
}

/// What is due for removal at `now`, per session.
pub fn plan(
    rules: &RetentionConfig,
    now: chrono::DateTime<chrono::Utc>,
    facts: &[Facts],
) -> Vec<(String, Vec<Part>)> {
    let mut out = Vec::new();
    for f in facts {
        let Some(end) = f.ended_at.filter(|_| !f.running && !f.pinned) else {
            continue;
        };
        let age = now.signed_duration_since(end);
        let older =
            |days: Option<u32>| days.is_some_and(|d| age >= chrono::Duration::days(d.into()));
        let mut due = Vec::new();
        let vod = f.vod && older(rules.vod_days);
        // The VOD's removal takes the live playlists with it.
        if f.live && !vod && older(rules.live_days) {
            due.push(Part::Live);
        }
        if vod {
            due.push(Part::Vod);
        }
        if f.masters && older(rules.masters_days) {
            due.push(Part::Masters);
        }
        if !due.is_empty() {
            out.push((f.id.clone(), due));
        }
    }
    out
}

const MASTERS: [&str; 2] = ["master.wav", "program.mp4"];
const LIVE_LISTS: [&str; 2] = ["master.m3u8", "master-player.m3u8"];

/// The marker that keeps a session whole.
pub fn pin_file(session_dir: &Path) -> PathBuf {
    session_dir.join("pinned")
}

fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

fn renditions(hls: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(hls)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Read a session's folder (blocking I/O).
pub fn facts_of(root: &Path, info: &SessionInfo) -> Facts {
    let dir = root.join(&info.id);
    let hls = dir.join("hls");
    let live = LIVE_LISTS.iter().any(|f| hls.join(f).exists())
        || renditions(&hls)
            .iter()
            .any(|r| r.join("live.m3u8").exists());
    let running = matches!(
        info.state,
        SessionState::Starting | SessionState::Live | SessionState::Stopping
    );
    Facts {
        id: info.id.clone(),
        ended_at: info
            .ended_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        running,
        pinned: pin_file(&dir).exists(),
        live,
        vod: hls.is_dir(),
        masters: MASTERS.iter().any(|m| dir.join(m).exists()),
        hls_bytes: size_of(&hls),
        masters_bytes: MASTERS.iter().map(|m| size_of(&dir.join(m))).sum(),
    }
}

/// Remove `parts` of session `id` (blocking I/O). Errors are logged and
/// returned; what could be removed is.
pub fn apply(root: &Path, id: &str, parts: &[Part]) -> Result<u64, String> {
    let dir = root.join(id);
    let hls = dir.join("hls");
    let mut freed = 0;
    let mut errors = Vec::new();
    let mut remove = |p: PathBuf| {
        let size = size_of(&p);
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => freed += size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{}: {e}", p.display())),
        }
    };
    for part in parts {
        match part {
            Part::Live => {
                for f in LIVE_LISTS {
                    remove(hls.join(f));
                }
                for r in renditions(&hls) {
                    remove(r.join("live.m3u8"));
                }
            }
            Part::Vod => remove(hls.clone()),
            Part::Masters => {
                for m in MASTERS {
                    remove(dir.join(m));
                }
            }
        }
    }
    if errors.is_empty() {
        tracing::info!(session = id, parts = ?parts, freed_bytes = freed, "retention removed files");
        Ok(freed)
    } else {
        tracing::warn!(session = id, errors = ?errors, "retention could not remove everything");
        Err(errors.join("; "))
    }
}

/// Each session's disk use and what the rules would remove now: the
/// dry run (blocking I/O).
pub fn disk_use(
    root: &Path,
    rules: &RetentionConfig,
    sessions: &[SessionInfo],
) -> Vec<studiocast_server::DiskUse> {
    let facts: Vec<Facts> = sessions.iter().map(|s| facts_of(root, s)).collect();
    let due = plan(rules, chrono::Utc::now(), &facts);
    sessions
        .iter()
        .zip(&facts)
        .map(|(s, f)| studiocast_server::DiskUse {
            id: s.id.clone(),
            title: s.title.clone(),
            state: s.state,
            ended_at: s.ended_at.clone(),
            pinned: f.pinned,
            hls_bytes: f.hls_bytes,
            masters_bytes: f.masters_bytes,
            due: due
                .iter()
                .find(|(id, _)| *id == s.id)
                .map(|(_, p)| p.iter().map(|x| x.as_str().to_string()).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// One sweep: remove what is due (blocking I/O). Returns what went.
pub fn sweep(
    root: &Path,
    rules: &RetentionConfig,
    sessions: &[SessionInfo],
) -> Vec<(String, Vec<Part>, Result<u64, String>)> {
    let facts: Vec<Facts> = sessions.iter().map(|s| facts_of(root, s)).collect();
    plan(rules, chrono::Utc::now(), &facts)
        .into_iter()
        .map(|(id, parts)| {
            let r = apply(root, &id, &parts);
            (id, parts, r)
        })
        .collect()
}

/// `studiocast retention`: apply the `[retention]` rules to the data
/// folder now, or with `--dry-run` only say what would go.
#[derive(Debug, clap::Args)]
pub struct RetentionArgs {
    /// List what the rules would remove, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The data folder (default: the config's `[server] data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Prints one JSON line per session with something due (and, without
/// `--dry-run`, what was freed), then a summary line.
pub fn run_cli(cfg: &crate::config::Config, args: RetentionArgs) -> anyhow::Result<()> {
    use super::store::SessionStore;
    let data = args.data_dir.unwrap_or_else(|| cfg.server.data_dir.clone());
    let root = data.join("sessions");
    let sessions = super::store::FileStore::new(&root)?.load_all()?;
    let rules = &cfg.retention;
    if !rules.any() {
        eprintln!("no [retention] rule is set: nothing is ever removed");
    }
    let mut total = 0u64;
    if args.dry_run {
        for u in disk_use(&root, rules, &sessions)
            .iter()
            .filter(|u| !u.due.is_empty())
        {
            println!(
                "{}",
                serde_json::json!({"id": u.id, "title": u.title, "ended_at": u.ended_at,
                "would_remove": u.due, "hls_bytes": u.hls_bytes, "masters_bytes": u.masters_bytes})
            );
        }
    } else {
        for (id, parts, r) in sweep(&root, rules, &sessions) {
            let parts: Vec<&str> = parts.iter().map(|p| p.as_str()).collect();
            match r {
                Ok(freed) => {
                    total += freed;
                    println!(
                        "{}",
                        serde_json::json!({"id": id, "removed": parts, "freed_bytes": freed})
                    );
                }
                Err(e) => println!(
                    "{}",
                    serde_json::json!({"id": id, "removed": parts, "error": e})
                ),
            }
        }
        eprintln!("retention: {total} bytes freed");
    }
    Ok(())
}

/// The daemon's sweep every `every_minutes`, while rules are set.
pub fn spawn_sweeps(
    supervisor: super::supervisor::Supervisor,
    root: PathBuf,
    rules: RetentionConfig,
    stop: tokio_util::sync::CancellationToken,
) {
    use studiocast_server::SessionControl;
    if !rules.any() {
        return;
    }
    let rules = std::sync::Arc::new(rules);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(rules.every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let Ok(list) = supervisor.list().await else {
                continue;
            };
            let (root, rules) = (root.clone(), rules.clone());
            let _ = tokio::task::spawn_blocking(move || sweep(&root, &rules, &list)).await;
        }
    });
}

#[cfg(test)]
mod tests;
