//! The jobs API: recordings become lessons.
//!
//! * `POST /api/v1/jobs`: a JSON body with the spec's fields beside the
//!   source (`path` inside the import folder, or `session`); 201 with the
//!   job.
//! * `GET /api/v1/jobs?state=&limit=&offset=`: newest first, paginated.
//! * `GET /api/v1/jobs/{id}`, `DELETE /api/v1/jobs/{id}` (cancel).
//!
//! This layer knows the shapes of requests and answers, never the media:
//! the daemon checks a spec (unknown fields, an input format, a preset)
//! and answers [`ControlError::BadRequest`] for what it refuses.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{valid_id, ApiError, ErrorBody};
pub use crate::upload::{UploadTarget, Uploaded};
use crate::{AppState, BoxFuture, ControlError};

/// One job, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct JobInfo {
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// RFC 3339.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// 0–100.
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Runs started (a retry or a takeover adds one).
    pub attempts: u32,
    /// The spec as queued (the request's fields but the source).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// `{"path": …}`, `{"session": …}` or `{"upload": …}`.
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    /// The measured loudness per rendition, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub loudness: Option<serde_json::Value>,
    /// Where the lesson is served, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<JobOutputs>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct JobOutputs {
    /// `/vod/{id}/master.m3u8`.
    pub master: String,
    /// Each rendition as one file: `{"binaural": "/vod/{id}/download/binaural.m4a", …}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub downloads: std::collections::BTreeMap<String, String>,
    /// `/vod/{id}/poster.jpg`, when the input had a picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<String>,
    /// The video ladder's rungs (`1080p`, `720p`, …), largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video: Vec<String>,
}

/// `GET /api/v1/jobs` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<JobState>)]
    pub state: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// Jobs to skip, newest first.
    #[param(minimum = 0, maximum = 4294967295_u32)]
    pub offset: Option<usize>,
}

/// A job's state (for the list's filter).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A JSON job: the recording's source (`path` or `session`, one of the
/// two) and the spec. The daemon checks the spec's fields against its own
/// (`studiocast`'s `JobSpec`, whose test holds this description to it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// A file inside the import folder (`[jobs] import_dir`), relative.
    /// This or `session`, not both. No leading `/` or `./`, no `..` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        min_length = 1,
        pattern = r"^(?!/)(?!\.(/|$))(?!.*(^|/)\.\.(/|$)).+$"
    )]
    pub path: Option<String>,
    /// A finished session whose master recording becomes the lesson.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub session: Option<String>,
    /// The preset whose renditions the lesson gets (default `lesson`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// What the recording's channels are.
    pub input_format: InputFormat,
    /// Ambisonic order (`ambix`, `n3d`, `fuma`): 3 by default, 1 for
    /// `fuma`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 7)]
    #[serde(deserialize_with = "crate::types::integral")]
    pub order: Option<usize>,
    /// A bed's layout (`5.1`, `7.1.4`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// An object scene file inside the import folder (`objects`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// Integrated loudness target, LUFS (default −16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -70.0, maximum = 0.0)]
    pub loudness: Option<f64>,
    /// At most 200 characters, none of them control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub title: Option<String>,
    /// At most 200 characters, none of them control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub course: Option<String>,
    /// Who may play the lesson; the preset's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<crate::Visibility>,
}

/// What a recording's channels are.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    Ambix,
    N3d,
    Fuma,
    Bed,
    Objects,
    Stereo,
}

/// A multipart job: the spec (a JSON job without `path` or `session`)
/// and the recording. For the document alone: the upload is streamed
/// field by field ([`crate::upload`]), never read into this.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct JobUpload {
    /// The spec, as JSON text: a JSON job's object without `path` or
    /// `session`.
    #[schema(content_media_type = "application/json")]
    pub spec: String,
    /// The recording.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Most jobs one list answer holds.
pub const MAX_PAGE: usize = 500;

/// What the HTTP layer needs from the job queue.
pub trait JobControl: Send + Sync + 'static {
    /// Check and queue a job; the body is the client's JSON.
    fn submit(&self, body: serde_json::Value) -> BoxFuture<'_, Result<JobInfo, ControlError>>;
    /// Room for an upload whose request declares `declared` bytes: refused
    /// ([`ControlError::PayloadTooLarge`], [`ControlError::Unavailable`])
    /// when over the limit or the disk is short.
    fn upload_target(
        &self,
        declared: Option<u64>,
    ) -> BoxFuture<'_, Result<UploadTarget, ControlError>>;
    /// The upload `target` ended (queued or not): its disk reservation is
    /// free again.
    fn upload_finished(&self, target: &UploadTarget);
    /// Check and queue a job on a complete upload, taking the file (it is
    /// removed if the job is refused).
    fn submit_upload(
        &self,
        spec: serde_json::Value,
        file: Uploaded,
    ) -> BoxFuture<'_, Result<JobInfo, ControlError>>;
    fn list(&self, query: JobQuery) -> BoxFuture<'_, Result<Vec<JobInfo>, ControlError>>;
    fn get(&self, id: String) -> BoxFuture<'_, Result<JobInfo, ControlError>>;
    /// A queued job at once; a running one within about a second (its
    /// partial output removed). An ended job is left as it is.
    fn cancel(&self, id: String) -> BoxFuture<'_, Result<JobInfo, ControlError>>;
}

fn jobs(st: &AppState) -> Result<&dyn JobControl, ApiError> {
    st.0.control
        .jobs()
        .ok_or_else(|| ApiError::Unavailable("this daemon runs no jobs".into()))
}

/// JSON (a path or a session) or a multipart upload. This route is outside
/// the API's timeout layer, since an upload may take minutes: the JSON
/// branch applies the timeout itself, and the upload its own size limit
/// and idle timeout ([`crate::upload`]).
/// Queue a job: JSON naming the recording, or a multipart upload of it.
#[utoipa::path(post, path = "/api/v1/jobs", operation_id = "submit_job", tag = "jobs",
    request_body(content(
        (JobRequest = "application/json"),
        (JobUpload = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Queued", body = JobInfo),
        (status = 400, description = "Bad JSON, an unknown or invalid field, a path outside the import folder, a file the daemon cannot read", body = ErrorBody),
        (status = 404, description = "No such file in the import folder, or no such session recording", body = ErrorBody),
        (status = 409, description = "The session has not ended", body = ErrorBody),
        (status = 413, description = "The body or the upload is over its limit", body = ErrorBody),
        (status = 415, description = "Neither JSON nor a multipart form", body = ErrorBody),
        (status = 503, description = "No room on disk, or this daemon runs no jobs", body = ErrorBody),
    ))]
pub async fn submit(
    State(st): State<AppState>,
    req: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    let multipart = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"));
    let control = jobs(&st)?;
    if multipart {
        let (parts, body) = req.into_parts();
        let info = crate::upload::receive(control, &parts.headers, body).await?;
        let target = crate::audit::Target(info.id.clone());
        return Ok((StatusCode::CREATED, axum::Extension(target), Json(info)));
    }
    let json = async {
        // The API's body limit reaches this extractor (the layer is above
        // this route); the upload's stream above does not use it.
        let body: Result<Json<serde_json::Value>, JsonRejection> =
            <Json<serde_json::Value> as axum::extract::FromRequest<()>>::from_request(req, &())
                .await;
        let Json(body) = body?;
        if !body.is_object() {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        Ok(control.submit(body).await?)
    };
    let info = tokio::time::timeout(st.0.config.api_timeout, json)
        .await
        .map_err(|_| ApiError::Timeout)??;
    let target = crate::audit::Target(info.id.clone());
    Ok((StatusCode::CREATED, axum::Extension(target), Json(info)))
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", operation_id = "list_jobs", tag = "jobs", params(JobQuery),
    responses(
        (status = 200, description = "A page of jobs", body = Vec<JobInfo>),
        (status = 400, description = "An unknown parameter, or a limit out of range", body = ErrorBody),
        (status = 503, description = "This daemon runs no jobs", body = ErrorBody),
    ))]
pub async fn list(
    State(st): State<AppState>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if q.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::BadRequest(format!("limit must be 1–{MAX_PAGE}")));
    }
    if q.offset.is_some_and(|o| o > u32::MAX as usize) {
        return Err(ApiError::BadRequest(format!(
            "offset must be at most {}",
            u32::MAX
        )));
    }
    let listed = tokio::time::timeout(st.0.config.api_timeout, jobs(&st)?.list(q))
        .await
        .map_err(|_| ApiError::Timeout)??;
    Ok(Json(listed))
}

/// One job: state, progress, ETA, error, loudness, the lesson's URLs.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job", body = JobInfo),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "This daemon runs no jobs", body = ErrorBody),
    ))]
pub async fn get_one(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("job '{id}' not found")));
    }
    Ok(Json(jobs(&st)?.get(id).await?))
}

/// Cancel a job: a queued one at once, a running one within about a
/// second (its partial output removed). An ended job is left as it is.
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", operation_id = "cancel_job", tag = "jobs", params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job, `cancelled` (or as it ended)", body = JobInfo),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "This daemon runs no jobs", body = ErrorBody),
    ))]
pub async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("job '{id}' not found")));
    }
    Ok(Json(jobs(&st)?.cancel(id).await?))
}
