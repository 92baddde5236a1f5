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

use crate::api::{valid_id, ApiError};
pub use crate::upload::{UploadTarget, Uploaded};
use crate::{AppState, BoxFuture, ControlError};

/// One job, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    pub spec: serde_json::Value,
    pub source: serde_json::Value,
    /// The measured loudness per rendition, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness: Option<serde_json::Value>,
    /// Where the lesson is served, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<JobOutputs>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    pub state: Option<String>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
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

pub async fn list(
    State(st): State<AppState>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if q.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::BadRequest(format!("limit must be 1–{MAX_PAGE}")));
    }
    let listed = tokio::time::timeout(st.0.config.api_timeout, jobs(&st)?.list(q))
        .await
        .map_err(|_| ApiError::Timeout)??;
    Ok(Json(listed))
}

pub async fn get_one(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("job '{id}' not found")));
    }
    Ok(Json(jobs(&st)?.get(id).await?))
}

pub async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("job '{id}' not found")));
    }
    Ok(Json(jobs(&st)?.cancel(id).await?))
}
