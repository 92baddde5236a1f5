//! `/healthz` (liveness) and `/readyz` (readiness) for load balancers and
//! systemd. Both are open (no token) and so say as little as they can: a
//! status word, and for readiness the supervisor's reasons.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    // A cached "ok" would hide an outage from the next probe.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn healthz(State(st): State<AppState>) -> Response {
    match ask(&st, false).await {
        Some(h) if h.live => answer(StatusCode::OK, json!({ "status": "ok" })),
        _ => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable" }),
        ),
    }
}

pub async fn readyz(State(st): State<AppState>) -> Response {
    let reasons = match ask(&st, true).await {
        None => vec!["the supervisor did not answer in time".to_string()],
        Some(h) if !h.live => {
            let mut r = vec!["the supervisor is not live".to_string()];
            r.extend(h.reasons);
            r
        }
        Some(h) if h.ready => return answer(StatusCode::OK, json!({ "status": "ready" })),
        // Not ready without a reason would leave the operator guessing.
        Some(h) if h.reasons.is_empty() => vec!["not ready".to_string()],
        Some(h) => h.reasons,
    };
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "status": "not_ready", "reasons": reasons }),
    )
}
