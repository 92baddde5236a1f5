//! `/healthz` (liveness) and `/readyz` (readiness) for load balancers and
//! systemd. Both are open (no token) and so say as little as they can: a
//! status word, and for readiness the supervisor's reasons.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::{AppState, Health};

/// The supervisor's answer, or `None` if it did not come within the health
/// timeout (a supervisor stuck on a lock must read as down, not hang the
/// probe).
async fn ask(st: &AppState, deep: bool) -> Option<Health> {
    let limit = st.0.config.health_timeout;
    match tokio::time::timeout(limit, st.0.control.health(deep)).await {
        Ok(h) => Some(h),
        Err(_) => {
            tracing::warn!(
                ?limit,
                "the supervisor did not answer a health check in time"
            );
            None
        }
    }
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Probe {
    /// `ok` or `unavailable` (liveness); `ready` or `not_ready`.
    pub status: String,
    /// Why the daemon is not ready (readiness only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

fn probe(status: &str, reasons: Vec<String>) -> Probe {
    Probe {
        status: status.into(),
        reasons,
    }
}

fn answer(status: StatusCode, body: Probe) -> Response {
    let mut res = (status, Json(body)).into_response();
    // A cached "ok" would hide an outage from the next probe.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Liveness, without a token: the session supervisor answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses(
        (status = 200, description = "`ok`", body = Probe),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Probe),
    ))]
pub async fn healthz(State(st): State<AppState>) -> Response {
    match ask(&st, false).await {
        Some(h) if h.live => answer(StatusCode::OK, probe("ok", Vec::new())),
        _ => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            probe("unavailable", Vec::new()),
        ),
    }
}

/// Readiness, without a token: a session could start now.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "`ready`", body = Probe),
        (status = 503, description = "`not_ready`, with the reasons", body = Probe),
    ))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    let reasons = match ask(&st, true).await {
        None => vec!["the supervisor did not answer in time".to_string()],
        Some(h) if !h.live => {
            let mut r = vec!["the supervisor is not live".to_string()];
            r.extend(h.reasons);
            r
        }
        Some(h) if h.ready => return answer(StatusCode::OK, probe("ready", Vec::new())),
        // Not ready without a reason would leave the operator guessing.
        Some(h) if h.reasons.is_empty() => vec!["not ready".to_string()],
        Some(h) => h.reasons,
    };
    answer(StatusCode::SERVICE_UNAVAILABLE, probe("not_ready", reasons))
}
