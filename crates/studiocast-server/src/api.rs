//! Control API handlers and the one error type they return.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppState, ControlError, CreateSession, DiskUse, SessionInfo};

/// The body of every API error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable and machine-readable: `bad_request`, `unauthorized`,
    /// `forbidden`, `not_found`, `method_not_allowed`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `upgrade_required`,
    /// `unavailable`, `timeout`, `internal`.
    pub code: String,
    /// For people; its wording may change.
    pub message: String,
}

/// `GET /api/v1/retention`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionReport {
    pub sessions: Vec<DiskUse>,
}

/// `PUT` and `DELETE /api/v1/sessions/{id}/pin`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PinState {
    pub id: String,
    pub pinned: bool,
}

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
    /// 426 `upgrade_required`: a WebSocket route asked over plain HTTP,
    /// or with a WebSocket version other than 13 (answered with `Upgrade:
    /// websocket` and `Sec-WebSocket-Version: 13`).
    #[error("{0}")]
    UpgradeRequired(String),
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
            ApiError::UpgradeRequired(_) => (StatusCode::UPGRADE_REQUIRED, "upgrade_required"),
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
            Json(ErrorBody {
                code: code.into(),
                message: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::UPGRADE_REQUIRED {
            // The only upgrade offered is the meters' WebSocket, version 13:
            // a client that asked with another version learns which to use
            // (RFC 6455 4.4).
            r.headers_mut().insert(
                header::UPGRADE,
                header::HeaderValue::from_static("websocket"),
            );
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                header::HeaderValue::from_static("13"),
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

/// Start a session from a preset.
#[utoipa::path(post, path = "/api/v1/sessions", operation_id = "start_session", tag = "sessions",
    request_body = CreateSession,
    responses(
        (status = 201, description = "Started: the session, `starting` or `live`", body = SessionInfo),
        (status = 400, description = "Bad JSON, an unknown field, an empty or long title, control characters", body = ErrorBody),
        (status = 404, description = "No preset of that name", body = ErrorBody),
        (status = 409, description = "The session did not start: its pipeline failed as it started", body = ErrorBody),
        (status = 413, description = "The body is over the API's limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The session limit is reached, or the pipeline could not be prepared (a device missing, filters that cannot be designed)", body = ErrorBody),
    ))]
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

/// Every session, oldest first, including past ones.
#[utoipa::path(get, path = "/api/v1/sessions", operation_id = "list_sessions", tag = "sessions",
    responses((status = 200, description = "The sessions", body = Vec<SessionInfo>)))]
pub async fn list(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(st.0.control.list().await?))
}

/// One session; while it runs, with its inputs' health.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", operation_id = "get_session", tag = "sessions", params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 404, description = "No such session", body = ErrorBody),
    ))]
pub async fn get_one(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    Ok(Json(st.0.control.get(id).await?))
}

/// Stop a session: the pipeline drains, the VOD is finalised, and the
/// ended session is the answer.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/stop", operation_id = "stop_session", tag = "sessions", params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session, `ended` (or `failed`)", body = SessionInfo),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is already over", body = ErrorBody),
    ))]
pub async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    Ok(Json(st.0.control.stop(id).await?))
}

/// Audio and video input devices, and those presets expect.
#[utoipa::path(get, path = "/api/v1/devices", tag = "sessions",
    responses((status = 200, description = "The devices", body = Vec<crate::DeviceEntry>)))]
pub async fn devices(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(st.0.control.devices().await?))
}

/// The presets a session can start with, by name.
#[utoipa::path(get, path = "/api/v1/presets", tag = "sessions",
    responses((status = 200, description = "The presets", body = Vec<crate::PresetInfo>)))]
pub async fn presets(State(st): State<AppState>) -> Json<Vec<crate::PresetInfo>> {
    Json(st.0.control.presets())
}

/// Each session's disk use, and what the retention rules would remove now.
#[utoipa::path(get, path = "/api/v1/retention", operation_id = "retention", tag = "sessions",
    responses(
        (status = 200, description = "Disk use by session", body = RetentionReport),
        (status = 503, description = "This daemon keeps no sessions on disk", body = ErrorBody),
    ))]
pub async fn disk_use(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let sessions = st.0.control.disk_use().await?;
    Ok(Json(RetentionReport { sessions }))
}

async fn set_pin(st: AppState, id: String, pinned: bool) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    st.0.control.pin(id.clone(), pinned).await?;
    Ok(Json(PinState { id, pinned }).into_response())
}

/// Keep a session whole whatever the retention rules say.
#[utoipa::path(put, path = "/api/v1/sessions/{id}/pin", operation_id = "pin_session", tag = "sessions", params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "Pinned", body = PinState),
        (status = 404, description = "No such session", body = ErrorBody),
    ))]
pub async fn pin(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    set_pin(st, id, true).await
}

/// Let the retention rules apply to a session again.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}/pin", operation_id = "unpin_session", tag = "sessions", params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "Unpinned", body = PinState),
        (status = 404, description = "No such session", body = ErrorBody),
    ))]
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
