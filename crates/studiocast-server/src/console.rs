//! The technician's console: `/console`, one page and its script and style,
//! embedded in the binary (no CDN, no framework). The page holds no secret
//! and needs no token to load; the technician types a control token once,
//! the page keeps it in `sessionStorage` and sends it as `Authorization:
//! Bearer` on every API call (never in a URL), and offers it to the meters
//! WebSocket as a subprotocol. Live updates come from `GET
//! /api/v1/events`, read with `fetch` (an `EventSource` cannot send the
//! header).
//!
//! The policy allows only this origin's scripts, styles, media (hls.js's
//! blob URLs included) and connections; nobody may frame the page (a
//! control surface framed by another site could be clickjacked).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../assets/console.html");
const SCRIPT: &str = include_str!("../assets/console.js");
const STYLE: &str = include_str!("../assets/console.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; \
    worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn respond(ctype: &'static str, body: &'static str, cache: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// `GET /console`.
#[utoipa::path(get, path = "/console", operation_id = "console_page", tag = "console", security(()),
    responses((status = 200, description = "The technician's console (it asks for a token)", content_type = "text/html", body = String)))]
pub async fn page() -> Response {
    respond("text/html; charset=utf-8", PAGE, "no-cache")
}

/// `GET /console/{file}`: the script and the style.
#[utoipa::path(get, path = "/console/{file}", operation_id = "console_asset", tag = "console", security(()),
    params(("file" = String, Path, description = "`console.js` or `console.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such file", content_type = "text/plain", body = String),
    ))]
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "console.js" => respond("text/javascript; charset=utf-8", SCRIPT, "no-cache"),
        "console.css" => respond("text/css; charset=utf-8", STYLE, "no-cache"),
        _ => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
