//! The audit trail: every control action (a session started or stopped, a
//! job submitted or cancelled, a playback link minted) with the name of the
//! token that asked, the time, the target and the answer. Written by the
//! token middleware ([`crate::auth::require_token`]) as a structured log
//! line and an entry here; read at `GET /api/v1/audit` (scope `read`),
//! newest first, a page at a time.
//!
//! Entries are appended to `audit.jsonl` in the data folder (one JSON
//! object a line), so the trail outlives a restart; the last
//! [`KEEP`] are also held in memory, which is what the API pages through.
//! The file is rotated to `audit.jsonl.1` past [`MAX_FILE_BYTES`]. A write
//! that fails (a full disk) is logged and the entry kept in memory: the
//! action itself has already happened and is not undone.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::AppState;

/// Entries held in memory (and read back from the file at start).
pub const KEEP: usize = 10_000;
/// The file is rotated past this size.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest page.
const MAX_PAGE: usize = 500;

/// One control action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Entry {
    /// Increasing from 1 over the trail's life (the page cursor).
    pub seq: u64,
    /// RFC 3339, UTC.
    pub at: String,
    /// The token's name (`api_token` for the single configured token).
    pub token: String,
    /// `session.start`, `session.stop`, `session.playback_token`,
    /// `job.submit`, `job.cancel`, `job.playback_token`.
    pub action: String,
    /// The session or job id (for a start or a submit, the new one's).
    pub target: String,
    /// The HTTP status of the answer (an action the handler refused, a
    /// 404 or 503, is recorded; one refused for its token, 401 or 403, is
    /// not an action).
    pub status: u16,
}

/// What a handler sets on its response when the target is not in the
/// path (a new session's or job's id).
#[derive(Debug, Clone)]
pub struct Target(pub String);

/// The id in a control route's path: the segment after `sessions/` or
/// `jobs/`; empty for a start or a submit whose handler set no [`Target`].
pub fn target_of(path: &str) -> String {
    let mut parts = path.split('/');
    while let Some(p) = parts.next() {
        if p == "sessions" || p == "jobs" {
            return parts.next().unwrap_or("").to_string();
        }
    }
    String::new()
}

/// Longest target kept (ids are far shorter; a made-up one is cut).
const MAX_TARGET: usize = 128;

fn bounded(target: &str) -> String {
    match target.char_indices().nth(MAX_TARGET) {
        Some((i, _)) => format!("{}…", &target[..i]),
        None => target.to_string(),
    }
}

pub struct AuditLog {
    file: Option<PathBuf>,
    inner: Mutex<(VecDeque<Entry>, u64)>,
}

impl AuditLog {
    /// The trail in `data_dir/audit.jsonl` (`None`: memory only, for
    /// tests), with its last [`KEEP`] entries read back.
    pub fn open(data_dir: Option<&Path>) -> Self {
        let file = data_dir.map(|d| d.join("audit.jsonl"));
        let mut entries = VecDeque::new();
        if let Some(text) = file.as_deref().and_then(read_tail) {
            for line in text.lines() {
                if let Ok(e) = serde_json::from_str::<Entry>(line) {
                    if entries.len() == KEEP {
                        entries.pop_front();
                    }
                    entries.push_back(e);
                }
            }
        }
        let next = entries.back().map_or(1, |e: &Entry| e.seq + 1);
        AuditLog {
            file,
            inner: Mutex::new((entries, next)),
        }
    }

    pub fn record(&self, token: &str, action: &str, target: &str, status: u16) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = Entry {
            seq: g.1,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            token: token.to_string(),
            action: action.to_string(),
            // A path segment can be as long as the request line allows.
            target: bounded(target),
            status,
        };
        g.1 += 1;
        tracing::info!(
            target: "studiocast::audit",
            seq = entry.seq,
            token = %entry.token,
            action = %entry.action,
            target_id = %entry.target,
            status,
            "control action"
        );
        if let Some(path) = &self.file {
            // Under the lock: lines stay in order. A control action is a
            // few hundred bytes, a few times a day.
            if let Err(e) = append(path, &entry) {
                tracing::warn!(file = %path.display(), error = %e, "audit entry not written to disk");
            }
        }
        if g.0.len() == KEEP {
            g.0.pop_front();
        }
        g.0.push_back(entry);
    }

    /// Up to `limit` entries older than `before` (all when `None`), newest
    /// first, and the cursor of the next page.
    pub fn page(&self, before: Option<u64>, limit: usize) -> (Vec<Entry>, Option<u64>) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let limit = limit.clamp(1, MAX_PAGE);
        let page: Vec<Entry> =
            g.0.iter()
                .rev()
                .filter(|e| before.is_none_or(|b| e.seq < b))
                .take(limit)
                .cloned()
                .collect();
        let next = match page.last() {
            Some(l) if g.0.front().is_some_and(|f| f.seq < l.seq) => Some(l.seq),
            _ => None,
        };
        (page, next)
    }
}

fn append(path: &Path, e: &Entry) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_FILE_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, PathBuf::from(old))?;
    }
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(&line)
}

/// The file's last [`MAX_FILE_BYTES`] at most (it is rotated there).
fn read_tail(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(MAX_FILE_BYTES);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Entries older than this `seq` (the previous page's `next`).
    // i64: the document says int64, and a `before` past it is a 400, not
    // a page read with a number the schema forbids.
    #[param(minimum = 0)]
    before: Option<i64>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A page of the trail.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<Entry>,
    /// `before` for the next page; `null` at the trail's start.
    pub next: Option<u64>,
}

/// The audit trail, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "audit_trail", tag = "operations", params(PageQuery),
    responses(
        (status = 200, description = "A page of the trail", body = AuditPage),
        (status = 400, description = "An unknown or malformed parameter", body = crate::api::ErrorBody),
    ))]
pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let before = match q.before.map(u64::try_from) {
        Some(Err(_)) => return Err(ApiError::BadRequest("before: at least 0".into())),
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE as u32).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit = {limit}: 1 to {MAX_PAGE}"
        )));
    }
    let (entries, next) = st.0.audit.page(before, limit as usize);
    Ok(Json(AuditPage { entries, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_target_is_cut() {
        let log = AuditLog::open(None);
        log.record("console", "session.stop", &"é".repeat(10_000), 404);
        let (p, _) = log.page(None, 1);
        assert_eq!(p[0].target.chars().count(), MAX_TARGET + 1);
        log.record("console", "session.stop", "s-1", 200);
        assert_eq!(log.page(None, 1).0[0].target, "s-1");
    }

    #[test]
    fn pages_run_newest_first_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("studiocast-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = AuditLog::open(Some(&dir));
        for i in 0..7 {
            log.record("console", "session.start", &format!("s{i}"), 201);
        }
        let (p1, next) = log.page(None, 3);
        assert_eq!(p1.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 6, 5]);
        let (p2, next2) = log.page(next, 3);
        assert_eq!(p2.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 3, 2]);
        let (p3, next3) = log.page(next2, 3);
        assert_eq!(p3.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(next3, None);
        // Read back after a restart, and numbering goes on.
        let again = AuditLog::open(Some(&dir));
        assert_eq!(again.page(None, 500).0, log.page(None, 500).0);
        again.record("sync", "job.cancel", "j1", 204);
        assert_eq!(again.page(None, 1).0[0].seq, 8);
        // A damaged line is skipped, not fatal.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("audit.jsonl"))
            .unwrap();
        f.write_all(b"{not json\n").unwrap();
        assert_eq!(AuditLog::open(Some(&dir)).page(None, 500).0.len(), 8);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn targets_come_from_the_path() {
        assert_eq!(target_of("/api/v1/sessions/abc/stop"), "abc");
        assert_eq!(target_of("/api/v1/jobs/j9"), "j9");
        assert_eq!(target_of("/api/v1/jobs"), "");
    }
}
