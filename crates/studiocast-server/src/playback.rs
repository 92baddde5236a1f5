//! The origin's side of private lessons (see [`crate::access`]): the check
//! every playback request of a private lesson passes, the token carried
//! into its playlists, and the control routes that mint tokens.

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{self, Visibility, DEFAULT_TOKEN_TTL_S, MAX_TOKEN_TTL_S};
use crate::api::{valid_id, ApiError, ErrorBody};
use crate::AppState;

/// Largest playlist rewritten with a token (a 2-hour DVR window of parts
/// is well under 1 MiB).
const MAX_PLAYLIST_BYTES: usize = 16 << 20;

/// A lesson's folder (its files are in `hls/` below): a job's in the jobs
/// folder when there is one, a session's under `data_dir/sessions`.
pub(crate) fn lesson_dir(st: &AppState, id: &str) -> PathBuf {
    let root = match (&st.0.config.jobs_dir, id.starts_with("job-")) {
        (Some(jobs), true) => jobs.clone(),
        _ => st.0.config.data_dir.join("sessions"),
    };
    root.join(id)
}

/// A private lesson's admitted request: the token its playlists carry on.
pub(crate) struct Admitted(Option<String>);

/// Public lessons pass; a private one needs a valid token for this lesson
/// in `?token=`, else `None`: answer [`forbidden`].
pub(crate) fn gate(st: &AppState, id: &str, path: &str, req: &mut Request) -> Option<Admitted> {
    if !valid_id(id) {
        // No such folder can exist; the handlers answer 404.
        return Some(Admitted(None));
    }
    if st
        .0
        .access
        .visibility(id, || lesson_dir(st, id).join("hls"))
        == Visibility::Public
    {
        return Some(Admitted(None));
    }
    let token = access::token_of(req.uri().query()).map(str::to_string);
    let verdict = match &st.0.config.playback_key {
        Some(key) => key.verify(id, token.as_deref(), access::unix_now()),
        None => Err(access::Refusal::BadSignature),
    };
    if let Err(why) = verdict {
        tracing::debug!(lesson = %id, ?why, "playback token refused");
        return None;
    }
    // A playlist is rewritten whole: no ranges of it, and a HEAD gets the
    // rewritten length (the body is dropped on the way out). `path` is the
    // decoded one the file is found by (`index%2Em3u8` is a playlist too).
    if path.ends_with(".m3u8") {
        let h = req.headers_mut();
        h.remove(header::RANGE);
        h.remove(header::IF_RANGE);
        if req.method() == Method::HEAD {
            *req.method_mut() = Method::GET;
        }
    }
    Some(Admitted(token))
}

/// 403 with nothing said about why.
pub(crate) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CACHE_CONTROL, "no-store")],
        "forbidden\n",
    )
        .into_response()
}

/// A private lesson's answer: never cached as public by a shared cache,
/// and a playlist's URIs carry the token.
pub(crate) async fn finish(res: Response, admitted: Admitted, playlist: bool) -> Response {
    let Some(token) = admitted.0 else {
        return res;
    };
    let (mut parts, body) = res.into_parts();
    let private = parts
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("public"))
        .and_then(|rest| HeaderValue::from_str(&format!("private{rest}")).ok());
    if let Some(v) = private {
        parts.headers.insert(header::CACHE_CONTROL, v);
    }
    if !playlist || parts.status != StatusCode::OK {
        return Response::from_parts(parts, body);
    }
    let bytes = match http_body_util::Limited::new(body, MAX_PLAYLIST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::error!(error = %e, "a private playlist could not be read");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let out = access::with_token(text, &token);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    // Not the file's bytes any more: its validators and ranges do not apply.
    parts.headers.remove(header::ETAG);
    parts.headers.remove(header::ACCEPT_RANGES);
    parts.headers.remove(header::LAST_MODIFIED);
    Response::from_parts(parts, Body::from(out))
}

/// `POST …/playback-token` body (optional: none is the defaults).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// Lifetime in seconds, 1 to 7 days' worth; 4 hours by default.
    #[schema(minimum = 1, maximum = 604800)]
    #[serde(default, deserialize_with = "crate::types::integral")]
    pub ttl_s: Option<u64>,
}

/// A playback token and the lesson's URLs carrying it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlaybackToken {
    pub token: String,
    /// Unix time, seconds.
    pub expires_at: u64,
    pub ttl_s: u64,
    /// The live playlist (sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls: Option<String>,
    /// The VOD playlist.
    pub vod: String,
}

/// A body is optional: none (empty), `{}` or `null` is the defaults.
fn ttl_of(body: &[u8]) -> Result<u64, ApiError> {
    // Only an empty body is no body: white space alone is not JSON.
    let req = if body.is_empty() {
        MintRequest::default()
    } else {
        // Through a Value: serde reads a struct from an array too
        // (`[null]` would pass as the defaults).
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("bad body: {e}")))?;
        match v {
            serde_json::Value::Null => MintRequest::default(),
            serde_json::Value::Object(_) => serde_json::from_value(v)
                .map_err(|e| ApiError::BadRequest(format!("bad body: {e}")))?,
            _ => return Err(ApiError::BadRequest("the body is a JSON object".into())),
        }
    };
    let ttl = req.ttl_s.unwrap_or(DEFAULT_TOKEN_TTL_S);
    if !(1..=MAX_TOKEN_TTL_S).contains(&ttl) {
        return Err(ApiError::BadRequest(format!(
            "ttl_s must be 1 to {MAX_TOKEN_TTL_S}"
        )));
    }
    Ok(ttl)
}

fn mint(
    st: &AppState,
    id: &str,
    ttl: u64,
    hls: Option<&str>,
    vod: &str,
) -> Result<Response, ApiError> {
    let Some(key) = &st.0.config.playback_key else {
        return Err(ApiError::Unavailable(
            "no playback key is configured".into(),
        ));
    };
    let expires = access::unix_now().saturating_add(ttl);
    let token = key.mint(id, expires);
    let body = PlaybackToken {
        hls: hls.map(|u| format!("{u}?token={token}")),
        vod: format!("{vod}?token={token}"),
        token,
        expires_at: expires,
        ttl_s: ttl,
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// Mint a playback token for a session (private lessons need one on
/// every URL).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/playback-token", tag = "sessions",
    params(("id" = String, Path, description = "The session id")),
    request_body(content = Option<MintRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "The token, and the session's URLs with it", body = PlaybackToken),
        (status = 400, description = "Bad JSON, an unknown field, a lifetime out of range", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 413, description = "The body is over the API's limit", body = ErrorBody),
        (status = 503, description = "No playback key is configured", body = ErrorBody),
    ))]
pub async fn mint_for_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    let ttl = ttl_of(&body)?;
    let info = st.0.control.get(id.clone()).await?;
    mint(&st, &id, ttl, Some(&info.urls.hls), &info.urls.vod)
}

/// Mint a playback token for a job's lesson.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/playback-token", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    request_body(content = Option<MintRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "The token, and the lesson's URL with it", body = PlaybackToken),
        (status = 400, description = "Bad JSON, an unknown field, a lifetime out of range", body = ErrorBody),
        (status = 404, description = "No such job, or this daemon runs no jobs", body = ErrorBody),
        (status = 413, description = "The body is over the API's limit", body = ErrorBody),
        (status = 503, description = "No playback key is configured", body = ErrorBody),
    ))]
pub async fn mint_for_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("job '{id}' not found")));
    }
    let ttl = ttl_of(&body)?;
    let jobs =
        st.0.control
            .jobs()
            .ok_or_else(|| ApiError::NotFound("this daemon runs no jobs".into()))?;
    jobs.get(id.clone()).await?;
    mint(&st, &id, ttl, None, &format!("/vod/{id}/master.m3u8"))
}
