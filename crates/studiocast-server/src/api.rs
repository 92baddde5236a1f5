//! Control API handlers and the one error type they return.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::{AppState, ControlError, CreateSession};

/// Every API error, with a stable machine-readable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400 `bad_request`: bad JSON, missing, unknown or invalid fields.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403 `forbidden`: the token is known but lacks the route's scope.
    #[error("this token lacks the scope '{0}'")]
    Forbidden(crate::auth::Scope),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 413 `payload_too_large`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503 `unavailable`.
    #[error("{0}")]
    Unavailable(String),
    /// 504 `timeout`: the request took longer than the API timeout.
    #[error("the request took too long")]
    Timeout,
    /// 500 `internal`.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<JsonRejection> for ApiError {
    /// By the rejection's own status, so that a body over the limit is 413
    /// and a missing `Content-Type: application/json` is 415. Syntax and
    /// data errors (axum says 422 for the latter) stay 400, as documented.
    fn from(e: JsonRejection) -> Self {
        let message = e.body_text();
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
            _ => ApiError::BadRequest(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let mut r = (
            status,
            Json(json!({ "code": code, "message": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::SessionNotFound(_) | ControlError::PipelineNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            ControlError::Conflict(m) => ApiError::Conflict(m),
            ControlError::BadRequest(m) => ApiError::BadRequest(m),
            ControlError::NotFound(m) => ApiError::NotFound(m),
            ControlError::Unavailable(m) => ApiError::Unavailable(m),
            ControlError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(m),
            ControlError::Internal(cause) => {
                // The cause is for the log, never for the client.
                tracing::error!(%cause, "internal error in session control");
                ApiError::Internal
            }
        }
    }
}

/// Longest title or course, in characters.
const MAX_TEXT: usize = 200;

pub(crate) fn valid_id(id: &str) -> bool {
    // Session ids are hex; preset names also take `_` (as presets allow).
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn create(
    State(st): State<AppState>,
    body: Result<Json<CreateSession>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = body?;
    if req.title.trim().is_empty() || req.title.chars().count() > MAX_TEXT {
        return Err(ApiError::BadRequest(format!(
            "title must be 1–{MAX_TEXT} characters"
        )));
    }
    if req.course.chars().count() > MAX_TEXT {
        return Err(ApiError::BadRequest(format!(
            "course must be at most {MAX_TEXT} characters"
        )));
    }
    // Both end up in logs and in the session record; a CR or LF there
    // would let a client forge log lines.
    for (field, value) in [("title", &req.title), ("course", &req.course)] {
        if value.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(format!(
                "{field} must not contain control characters"
            )));
        }
    }
    if !valid_id(&req.pipeline) {
        return Err(ApiError::NotFound(format!(
            "pipeline '{}' not found",
            req.pipeline
        )));
    }
    let info = st.0.control.create(req).await?;
    let target = crate::audit::Target(info.id.clone());
    Ok((StatusCode::CREATED, axum::Extension(target), Json(info)))
}

pub async fn list(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(st.0.control.list().await?))
}

pub async fn get_one(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    Ok(Json(st.0.control.get(id).await?))
}

pub async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    Ok(Json(st.0.control.stop(id).await?))
}

pub async fn devices(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(st.0.control.devices().await?))
}

pub async fn presets(State(st): State<AppState>) -> Json<Vec<crate::PresetInfo>> {
    Json(st.0.control.presets())
}

pub async fn disk_use(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let sessions = st.0.control.disk_use().await?;
    Ok(Json(serde_json::json!({ "sessions": sessions })))
}

async fn set_pin(st: AppState, id: String, pinned: bool) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    st.0.control.pin(id.clone(), pinned).await?;
    Ok(Json(serde_json::json!({ "id": id, "pinned": pinned })).into_response())
}

pub async fn pin(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    set_pin(st, id, true).await
}

pub async fn unpin(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_pin(st, id, false).await
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Gives the `{code, message}` body to the errors that layers and the
/// router make without one: the timeout's 504, a wrong method's 405.
/// Handlers' own errors already carry JSON and pass through untouched.
pub async fn json_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.headers().contains_key(header::CONTENT_TYPE)
    {
        return res;
    }
    let err = match status {
        StatusCode::GATEWAY_TIMEOUT => ApiError::Timeout,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is too large".into())
        }
        _ => return res,
    };
    // axum adds a 405's `Allow` header outside this layer, so it survives.
    err.into_response()
}
