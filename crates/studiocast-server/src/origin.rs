//! The HLS origin: packager files over HTTP.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use studiocast_hls::{resolve, Listing};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::api::valid_id;
use crate::AppState;

pub fn cors_layer(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::RANGE])
        .expose_headers([header::CONTENT_LENGTH, header::CONTENT_RANGE]);
    if origins.is_empty() || origins.iter().any(|o| o == "*") {
        base.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        base.allow_origin(AllowOrigin::list(list))
    }
}

pub async fn live(
    State(st): State<AppState>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    serve(&st, Listing::Live, &id, &path).await
}

pub async fn vod(State(st): State<AppState>, Path((id, path)): Path<(String, String)>) -> Response {
    serve(&st, Listing::Vod, &id, &path).await
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn serve(st: &AppState, listing: Listing, id: &str, path: &str) -> Response {
    if !valid_id(id) {
        return not_found();
    }
    let Some(rel) = resolve(listing, path) else {
        return not_found();
    };
    let file =
        st.0.config
            .data_dir
            .join("sessions")
            .join(id)
            .join("hls")
            .join(&rel);
    let Ok(body) = tokio::fs::read(&file).await else {
        return not_found();
    };
    let (ctype, cache) = if rel.ends_with(".m3u8") {
        let cache = match listing {
            // Live playlists change every segment; players must refetch.
            Listing::Live => "no-cache",
            Listing::Vod => "public, max-age=300",
        };
        ("application/vnd.apple.mpegurl", cache)
    } else if rel.ends_with(".m4s") {
        ("video/iso.segment", "public, max-age=31536000, immutable")
    } else {
        ("video/mp4", "public, max-age=31536000, immutable")
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}
