//! `GET /api/v1/sessions/{id}/meters`: a WebSocket of level readings (JSON
//! [`MeterFrame`] text messages, about ten a second) for the technician's
//! console. The control token comes in `Authorization: Bearer …`; browsers,
//! which cannot set that header, offer the subprotocols
//! `studiocast.bearer, <token>` (kept out of URLs and proxy logs) or, as a
//! last resort, `?token=…`. The socket closes when the session stops.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::api::{valid_id, ApiError};
use crate::{AppState, MeterSource};

/// The subprotocol that says "the other one is the token".
const PROTOCOL: &str = "studiocast.bearer";

/// A client that stops reading is dropped after this.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Live levels of a running session over a WebSocket: about ten
/// [`crate::MeterFrame`] text messages a second. Browsers cannot set
/// headers on a WebSocket: the token may also come as the subprotocol
/// pair `studiocast.bearer, <token>` or as `?token=`.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/meters", operation_id = "session_meters", tag = "sessions",
    params(
        ("id" = String, Path, description = "The session id"),
        ("token" = Option<String>, Query, description = "The token, for a browser's WebSocket"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; each text message is a `MeterFrame`"),
        (status = 400, description = "A WebSocket handshake without its `Sec-WebSocket-Key` or `Sec-WebSocket-Version`", body = crate::api::ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade, or a version other than 13 (answered with `Upgrade: websocket` and `Sec-WebSocket-Version: 13`)", body = crate::api::ErrorBody),
        (status = 404, description = "No such session", body = crate::api::ErrorBody),
        (status = 409, description = "The session is not running", body = crate::api::ErrorBody),
    ))]
pub async fn socket(
    State(st): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let offered: Vec<String> = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let tokens = &st.0.tokens;
    let in_protocol = offered
        .iter()
        .any(|p| p == PROTOCOL)
        .then(|| {
            offered
                .iter()
                .filter(|p| *p != PROTOCOL)
                .find_map(|p| tokens.identify(p))
        })
        .flatten();
    let by_protocol = in_protocol.is_some();
    // A query that does not parse (`?token=a&token=b`) carries no token:
    // the answer is 401 like any other missing token, not a 400 that
    // would be given before authentication.
    let query_token = query.ok().and_then(|Query(q)| q.token);
    let caller = tokens
        .caller_of(&headers)
        .or(in_protocol)
        .or_else(|| query_token.as_deref().and_then(|t| tokens.identify(t)))
        .ok_or(ApiError::Unauthorized)?;
    if !caller.may(crate::auth::Scope::Read) {
        return Err(ApiError::Forbidden(crate::auth::Scope::Read));
    }
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!("session '{id}' not found")));
    }
    // 426, not 400: the request is fine except for the protocol, and
    // RFC 9110 has a status (with `Upgrade:`) that says which to use; so
    // is a version other than 13 (RFC 6455 4.4: the answer names the one
    // spoken). A handshake begun without its key or its version is
    // malformed: 400 (RFC 6455 4.2.1).
    let versioned = headers.contains_key(axum::http::header::SEC_WEBSOCKET_VERSION);
    let ws = ws.map_err(|e| match e {
        WebSocketUpgradeRejection::WebSocketKeyHeaderMissing(_) => {
            ApiError::BadRequest(format!("a WebSocket handshake needs its key: {e}"))
        }
        WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_) if !versioned => {
            ApiError::BadRequest(format!(
                "a WebSocket handshake needs Sec-WebSocket-Version: 13: {e}"
            ))
        }
        e => ApiError::UpgradeRequired(format!("a WebSocket upgrade is needed: {e}")),
    })?;
    let source = st.0.control.meters(id).await?;
    // A browser that offered the subprotocol needs it confirmed.
    let ws = if by_protocol {
        ws.protocols([PROTOCOL])
    } else {
        ws
    };
    Ok(ws.on_upgrade(move |socket| stream(socket, source)))
}

async fn stream(mut socket: WebSocket, source: std::sync::Arc<dyn MeterSource>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !source.running() {
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
                    return;
                }
                let Some(frame) = source.read() else { continue };
                if frame.seq == last {
                    continue;
                }
                last = frame.seq;
                let Ok(text) = serde_json::to_string(&frame) else { continue };
                match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            msg = socket.recv() => match msg {
                // Pings are answered by axum; anything else is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
