//! Transcoding jobs: recordings become lessons, queued, restart-safe.
//!
//! * [`store`]: the persistent queue with leases (SQLite under the data
//!   folder).
//! * [`runner`]: the worker pool that claims jobs and runs
//!   [`crate::transcode`] on them, at a lower priority than live sessions.
//! * [`Jobs`]: what the HTTP layer calls ([`JobControl`]): checks a spec and
//!   its source, queues, lists, cancels.
//!
//! A job's lesson is written to `sessions/{job id}/hls/` in the data folder
//! (atomically, see [`crate::transcode`]), so the origin serves it at
//! `/vod/{job id}/master.m3u8` like a session's recording.

pub mod cli;
pub mod outbox;
pub mod pg;
pub mod runner;
pub mod store;
#[cfg(test)]
mod tests;
pub mod uploads;
pub mod webhooks;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use studiocast_server::{
    BoxFuture, ControlError, JobControl, JobInfo, JobOutputs, JobQuery, UploadTarget, Uploaded,
};

use crate::render::{InputFormat, SpatialArgs};
use crate::transcode::TranscodeArgs;
use store::{JobRecord, JobState, Store};

/// The spec's fields: the CLI's names in snake case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    #[serde(default = "default_preset", deserialize_with = "preset_or_default")]
    pub preset: String,
    pub input_format: SpecFormat,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "studiocast_server::integral"
    )]
    pub order: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// A scene file inside the import folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// Integrated loudness target, LUFS (default -16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
}

fn default_preset() -> String {
    "lesson".into()
}

/// `"preset": null` means the default, as null does for every other field.
fn preset_or_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(default_preset))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SpecFormat {
    Ambix,
    N3d,
    Fuma,
    Bed,
    Objects,
    /// A stereo recording: a bed with the stereo layout.
    Stereo,
}

/// Who may play the lesson (the HTTP layer's [`studiocast_server::Visibility`],
/// here for the command line too).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    /// A playback token on every URL. (`campus`, accepted before private
    /// lessons were enforced, means the same.)
    #[serde(alias = "campus")]
    Private,
}

impl From<Visibility> for studiocast_server::Visibility {
    fn from(v: Visibility) -> Self {
        match v {
            Visibility::Public => studiocast_server::Visibility::Public,
            Visibility::Private => studiocast_server::Visibility::Private,
        }
    }
}

/// Where the recording comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum JobSource {
    /// Relative to the import folder.
    Path(String),
    /// A finished session's untouched master.
    Session(String),
    /// An uploaded file, relative to the uploads folder (`{job id}/{name}`);
    /// removed when the job ends.
    Upload(String),
}

/// What the daemon's job side needs to know.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// The daemon's own (sessions it recorded, for session jobs).
    pub data_dir: PathBuf,
    /// Lessons and uploads: the data folder, or the folder every daemon
    /// on a shared queue sees.
    pub shared_dir: PathBuf,
    /// Server-side paths must resolve inside it; `None`: path jobs refused.
    pub import_dir: Option<PathBuf>,
    /// Largest upload.
    pub max_upload_bytes: u64,
    /// Free space (MiB) below which no job is queued or started: the
    /// recording threshold, so jobs never take the disk a session needs.
    pub min_free_mb: u64,
    /// Presets: a job's visibility defaults to its preset's, fixed at
    /// submission so the record says it before the lesson exists.
    pub pipelines_dir: PathBuf,
}

/// Checks and queues jobs; the runner does the rest.
pub struct Jobs {
    store: Arc<Store>,
    config: JobsConfig,
    wake: runner::Wake,
    /// Bytes of disk held by uploads in progress.
    reserved: std::sync::atomic::AtomicU64,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn internal(e: impl std::fmt::Display) -> ControlError {
    ControlError::Internal(e.to_string())
}

fn bad(m: impl Into<String>) -> ControlError {
    ControlError::BadRequest(m.into())
}

impl Jobs {
    pub fn new(store: Arc<Store>, config: JobsConfig, wake: runner::Wake) -> Jobs {
        Jobs {
            store,
            config,
            wake,
            reserved: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The body's source and spec, checked.
    fn parse(&self, body: serde_json::Value) -> Result<(JobSource, JobSpec), ControlError> {
        let serde_json::Value::Object(mut map) = body else {
            return Err(bad("the body must be a JSON object"));
        };
        let path = map.remove("path");
        let session = map.remove("session");
        let source = match (path, session) {
            (Some(serde_json::Value::String(p)), None) => JobSource::Path(p),
            (None, Some(serde_json::Value::String(s))) => JobSource::Session(s),
            (None, None) => return Err(bad("a job needs a source: \"path\" or \"session\"")),
            (Some(_), Some(_)) => return Err(bad("give \"path\" or \"session\", not both")),
            _ => return Err(bad("\"path\" and \"session\" are strings")),
        };
        // `"visibility": null` is the same as leaving it out.
        let explicit = map.get("visibility").is_some_and(|v| !v.is_null());
        let mut spec = self.parse_spec(serde_json::Value::Object(map))?;
        self.input_path(&source)?;
        // A session's re-render is as private as the session was.
        if let (false, JobSource::Session(id)) = (explicit, &source) {
            if self.session_visibility(id) == Visibility::Private {
                spec.visibility = Some(Visibility::Private);
            }
        }
        Ok((source, spec))
    }

    /// The spec's fields alone (an upload's `spec` part), checked.
    fn parse_spec(&self, body: serde_json::Value) -> Result<JobSpec, ControlError> {
        if !body.is_object() {
            return Err(bad("the spec must be a JSON object"));
        }
        let spec: JobSpec =
            serde_json::from_value(body).map_err(|e| bad(format!("invalid job spec: {e}")))?;
        for (field, v) in [("title", &spec.title), ("course", &spec.course)] {
            if v.as_ref()
                .is_some_and(|t| t.chars().count() > 200 || t.chars().any(char::is_control))
            {
                return Err(bad(format!(
                    "{field} must be at most 200 characters, none of them control characters"
                )));
            }
        }
        let max = studiocast_spatial::sh::MAX_ORDER;
        if spec.order.is_some_and(|o| !(1..=max).contains(&o)) {
            return Err(bad(format!("order must be between 1 and {max}")));
        }
        // The worker's FuMa conversion is first order only: refused here
        // rather than queued to fail.
        if spec.input_format == SpecFormat::Fuma && spec.order.is_some_and(|o| o != 1) {
            return Err(bad("FuMa input is first order: order must be 1"));
        }
        if spec.loudness.is_some_and(|l| !(-70.0..=0.0).contains(&l)) {
            return Err(bad("loudness must be between -70 and 0 LUFS"));
        }
        if let Some(scene) = &spec.scene {
            self.import_path(scene)?;
        }
        let mut spec = spec;
        if spec.visibility.is_none() {
            // The preset's, when it can be read (an unknown preset fails the
            // job with its own message).
            spec.visibility =
                crate::transcode::load_preset(&self.config.pipelines_dir, &spec.preset, false)
                    .ok()
                    .map(|p| match crate::visibility_of(&p) {
                        studiocast_server::Visibility::Private => Visibility::Private,
                        studiocast_server::Visibility::Public => Visibility::Public,
                    });
        }
        Ok(spec)
    }

    /// A path inside the import folder: no absolute paths, no `..`, and
    /// no symlink that leads out of it.
    fn import_path(&self, rel: &str) -> Result<PathBuf, ControlError> {
        let Some(root) = &self.config.import_dir else {
            return Err(bad(
                "this daemon has no [jobs] import_dir: path jobs are off",
            ));
        };
        let p = Path::new(rel);
        if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!(
                "\"{rel}\" must be a relative path inside the import folder"
            )));
        }
        let root = root
            .canonicalize()
            .map_err(|e| internal(format!("import folder: {e}")))?;
        let full = root
            .join(p)
            .canonicalize()
            // 404: a well-formed name for a file that is not there (also
            // under a name that is a file, `take.wav/x`); 400 for one that
            // cannot be read (permissions, a name too long, a NUL).
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
                    ControlError::NotFound(format!("\"{rel}\" is not in the import folder"))
                }
                _ => bad(format!("\"{rel}\" cannot be read: {e}")),
            })?;
        if !full.starts_with(&root) {
            return Err(bad(format!("\"{rel}\" leads out of the import folder")));
        }
        if !full.is_file() {
            return Err(bad(format!("\"{rel}\" is not a file")));
        }
        Ok(full)
    }

    /// The recording a source names.
    fn input_path(&self, source: &JobSource) -> Result<PathBuf, ControlError> {
        match source {
            JobSource::Path(rel) => self.import_path(rel),
            JobSource::Session(id) => {
                let safe = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                // 400 for what cannot be a session id (`../x`), 404 for
                // one that names no recording.
                if !safe {
                    return Err(bad(format!("\"{id}\" is not a session id")));
                }
                let dir = self.config.data_dir.join("sessions").join(id);
                let master = dir.join("master.wav");
                if !master.is_file() {
                    return Err(ControlError::NotFound(format!(
                        "session '{id}' has no master recording"
                    )));
                }
                // A running session's master is still growing: the two
                // passes would read different lengths.
                let state = std::fs::read(dir.join("session.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["state"].as_str().map(str::to_owned));
                if !matches!(state.as_deref(), Some("ended" | "failed" | "interrupted")) {
                    return Err(ControlError::Conflict(format!(
                        "session '{id}' has not ended"
                    )));
                }
                Ok(master)
            }
            JobSource::Upload(rel) => {
                let p = self.uploads_dir().join(rel);
                if !p.is_file() {
                    return Err(bad("the uploaded file is gone"));
                }
                Ok(p)
            }
        }
    }

    /// The transcode a job runs.
    pub fn transcode_args(&self, job: &JobRecord) -> Result<TranscodeArgs, ControlError> {
        let source: JobSource = serde_json::from_value(job.source.clone()).map_err(internal)?;
        let spec: JobSpec = serde_json::from_value(job.spec.clone()).map_err(internal)?;
        let (input_format, layout) = match spec.input_format {
            SpecFormat::Ambix => (InputFormat::Ambix, spec.layout.clone()),
            SpecFormat::N3d => (InputFormat::N3d, spec.layout.clone()),
            SpecFormat::Fuma => (InputFormat::Fuma, spec.layout.clone()),
            SpecFormat::Bed => (InputFormat::Bed, spec.layout.clone()),
            SpecFormat::Objects => (InputFormat::Objects, spec.layout.clone()),
            SpecFormat::Stereo => (InputFormat::Bed, Some("stereo".into())),
        };
        let scene = spec
            .scene
            .as_deref()
            .map(|s| self.import_path(s))
            .transpose()?;
        Ok(TranscodeArgs {
            input: self.input_path(&source)?,
            out: self.output_dir(&job.id),
            preset: spec.preset.clone(),
            pipelines: None,
            loudness: spec.loudness.unwrap_or(-16.0),
            true_peak: -1.0,
            // A session's re-render is as private as the session was.
            visibility: spec.visibility.or_else(|| match &source {
                JobSource::Session(id) => Some(self.session_visibility(id)),
                _ => None,
            }),
            progress_json: true,
            spatial: SpatialArgs {
                input_format,
                order: spec
                    .order
                    .unwrap_or(if spec.input_format == SpecFormat::Fuma {
                        1
                    } else {
                        3
                    }),
                hrtf: None,
                method: None,
                yaw: 0.0,
                pitch: 0.0,
                roll: 0.0,
                block: None,
                layout,
                scene,
                max_re: false,
                headphone_eq: None,
            },
        })
    }

    /// What a finished session's record says; private when it cannot be
    /// read (a re-render never opens what the session kept closed).
    fn session_visibility(&self, id: &str) -> Visibility {
        let path = self
            .config
            .data_dir
            .join("sessions")
            .join(id)
            .join("session.json");
        let record = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        match record {
            Some(r) => match r.get("visibility").and_then(|v| v.as_str()) {
                None | Some("public") => Visibility::Public,
                Some(_) => Visibility::Private,
            },
            None => Visibility::Private,
        }
    }

    /// The lesson's HLS folder: where a session's is, so the origin
    /// serves both alike.
    pub fn output_dir(&self, id: &str) -> PathBuf {
        self.job_dir(id).join("hls")
    }

    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.config.shared_dir.join("sessions").join(id)
    }

    pub(crate) fn info(&self, j: &JobRecord) -> JobInfo {
        let done = j.state == JobState::Succeeded;
        JobInfo {
            id: j.id.clone(),
            state: j.state.as_str().into(),
            created: rfc3339(j.created_ms),
            started: j.started_ms.map(rfc3339),
            finished: j.finished_ms.map(rfc3339),
            progress: j.progress,
            eta_seconds: j.eta_s,
            error: j.error.clone(),
            attempts: j.attempts,
            spec: j.spec.clone(),
            source: j.source.clone(),
            loudness: j.result.as_ref().map(|r| r["renditions"].clone()),
            outputs: done.then(|| JobOutputs {
                master: format!("/vod/{}/master.m3u8", j.id),
                // The renditions the lesson's report names, but the
                // ambisonic one (no download: see `write_downloads`).
                downloads: j
                    .result
                    .as_ref()
                    .and_then(|r| r["renditions"].as_array())
                    .into_iter()
                    .flatten()
                    .filter(|r| r["mix"] != "ambisonic")
                    .filter_map(|r| r["id"].as_str())
                    .map(|r| (r.to_string(), format!("/vod/{}/download/{r}.m4a", j.id)))
                    .collect(),
                poster: j
                    .result
                    .as_ref()
                    .and_then(|r| r["poster"].as_bool())
                    .unwrap_or(false)
                    .then(|| format!("/vod/{}/poster.jpg", j.id)),
                video: j
                    .result
                    .as_ref()
                    .and_then(|r| r["video"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect(),
            }),
        }
    }

    fn new_id() -> Result<String, ControlError> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| internal(format!("no randomness: {e}")))?;
        Ok(format!(
            "job-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ))
    }
}

/// Runs a store call off the async runtime (SQLite blocks).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

impl JobControl for Jobs {
    fn submit(&self, body: serde_json::Value) -> BoxFuture<'_, Result<JobInfo, ControlError>> {
        Box::pin(async move {
            let (source, spec) = self.parse(body)?;
            self.room_mb()?;
            let id = Jobs::new_id()?;
            let record = JobRecord::new(
                id,
                serde_json::to_value(&spec).map_err(internal)?,
                serde_json::to_value(&source).map_err(internal)?,
                now_ms(),
            );
            let store = self.store.clone();
            let r = record.clone();
            blocking(move || store.insert(&r).map_err(internal)).await?;
            tracing::info!(job = %record.id, "job queued");
            self.wake.notify();
            Ok(self.info(&record))
        })
    }

    fn upload_target(
        &self,
        declared: Option<u64>,
    ) -> BoxFuture<'_, Result<UploadTarget, ControlError>> {
        // create_dir_all and statvfs block (on NFS, for a while).
        Box::pin(async move { tokio::task::block_in_place(|| self.target(declared)) })
    }

    fn upload_finished(&self, target: &UploadTarget) {
        self.unreserve(target);
    }

    fn submit_upload(
        &self,
        spec: serde_json::Value,
        file: Uploaded,
    ) -> BoxFuture<'_, Result<JobInfo, ControlError>> {
        Box::pin(async move {
            let id = Jobs::new_id()?;
            let record = tokio::task::block_in_place(|| self.accept(spec, &file, &id, now_ms()))?;
            let store = self.store.clone();
            let r = record.clone();
            if let Err(e) = blocking(move || store.insert(&r).map_err(internal)).await {
                // Not queued: the moved upload would belong to no job.
                let dir = self.uploads_dir().join(&id);
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                return Err(e);
            }
            tracing::info!(job = %record.id, bytes = file.bytes, "uploaded job queued");
            self.wake.notify();
            Ok(self.info(&record))
        })
    }

    fn list(&self, q: JobQuery) -> BoxFuture<'_, Result<Vec<JobInfo>, ControlError>> {
        Box::pin(async move {
            let state = match q.state.as_deref() {
                None => None,
                Some(s) => Some(JobState::parse(s).ok_or_else(|| {
                    bad("state is one of queued, running, succeeded, failed, cancelled")
                })?),
            };
            let store = self.store.clone();
            let (limit, offset) = (q.limit.unwrap_or(50), q.offset.unwrap_or(0));
            let jobs = blocking(move || store.list(state, limit, offset).map_err(internal)).await?;
            Ok(jobs.iter().map(|j| self.info(j)).collect())
        })
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<JobInfo, ControlError>> {
        Box::pin(async move {
            let store = self.store.clone();
            let found = blocking(move || store.get(&id).map_err(internal)).await?;
            found
                .map(|j| self.info(&j))
                .ok_or_else(|| ControlError::NotFound("no such job".into()))
        })
    }

    fn cancel(&self, id: String) -> BoxFuture<'_, Result<JobInfo, ControlError>> {
        Box::pin(async move {
            let store = self.store.clone();
            let found = blocking(move || store.cancel(&id, now_ms()).map_err(internal)).await?;
            let job = found.ok_or_else(|| ControlError::NotFound("no such job".into()))?;
            tracing::info!(job = %job.id, state = job.state.as_str(), "job cancel asked");
            tokio::task::block_in_place(|| self.release_upload(&job));
            Ok(self.info(&job))
        })
    }
}
