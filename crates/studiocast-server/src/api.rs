//! Control API handlers and the one error type they return.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::{AppState, ControlError, CreateSession};

/// Every API error, with a stable machine-readable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
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
            ControlError::Invalid(m) => ApiError::BadRequest(m),
            ControlError::Unavailable(m) => ApiError::Unavailable(m),
            ControlError::Internal(cause) => {
                // The cause is for the log, never for the client.
                tracing::error!(%cause, "internal error in session control");
                ApiError::Internal
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token from `Authorization`, checked in constant time.
pub(crate) fn header_token_ok(st: &AppState, headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token_ok(st, t.trim()))
}

pub(crate) fn token_ok(st: &AppState, t: &str) -> bool {
    constant_time_eq(t.as_bytes(), st.0.config.api_token.as_bytes())
}

pub async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !header_token_ok(&st, req.headers()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub async fn create(
    State(st): State<AppState>,
    body: Result<Json<CreateSession>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if req.title.trim().is_empty() || req.title.len() > 200 {
        return Err(ApiError::BadRequest(
            "title must be 1–200 characters".into(),
        ));
    }
    if req.course.len() > 200 {
        return Err(ApiError::BadRequest(
            "course must be at most 200 characters".into(),
        ));
    }
    if !valid_id(&req.pipeline) {
        return Err(ApiError::NotFound(format!(
            "pipeline '{}' not found",
            req.pipeline
        )));
    }
    let info = st.0.control.create(req).await?;
    Ok((StatusCode::CREATED, Json(info)))
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

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
