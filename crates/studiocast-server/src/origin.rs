//! The HLS origin: packager files over HTTP.
//!
//! A request path becomes a file only through [`resolve`] (a fixed set of
//! names), and the file is served only if nothing from the session folder
//! down is a symlink and it is a regular file. tower-http's `ServeFile` does
//! the HTTP work (`Range`, `HEAD`, `If-Modified-Since`); it has no entity
//! tags, so a strong `ETag` with `If-None-Match` and `If-Range` is added
//! here around it.

use std::fs::Metadata;
use std::path::{Component, Path as FsPath, PathBuf};
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use studiocast_hls::{resolve, Listing};
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeFile;

use crate::api::valid_id;
use crate::{memfile, playback, AppState};

pub fn cors_layer(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::RANGE])
        .expose_headers([
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
        ]);
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

type IdAndPath = Result<Path<(String, String)>, PathRejection>;

/// From the rendition's live view when the session publishes one and it
/// holds the answer (see [`crate::live`]); from disk otherwise.
#[utoipa::path(get, path = "/live/{id}/{path}", operation_id = "live_file", tag = "playback", security(()),
    params(
        ("id" = String, Path, description = "A session or job id"),
        ("path" = String, Path, description = "`master.m3u8`, `{rendition}/index.m3u8`, a segment, part or init file, `poster.jpg`, `download/{rendition}.m4a`"),
        ("token" = Option<String>, Query, description = "A private lesson's playback token"),
        ("_HLS_msn" = Option<u64>, Query, description = "LL-HLS blocking reload: answer once this segment is out"),
        ("_HLS_part" = Option<u64>, Query, description = "LL-HLS blocking reload: and this part of it"),
        ("_HLS_skip" = Option<String>, Query, description = "`YES` or `v2`: a delta playlist"),
    ),
    responses(
        (status = 200, description = "The file", content(
            (String = "application/vnd.apple.mpegurl"),
            (String = "video/mp4"),
            (String = "audio/mp4"),
            (String = "image/jpeg"),
        )),
        (status = 206, description = "A range of a segment or file"),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 400, description = "A malformed LL-HLS directive (`_HLS_msn`, `_HLS_part`, `_HLS_skip`)", content_type = "text/plain", body = String),
        (status = 403, description = "A private lesson without a valid token", content_type = "text/plain", body = String),
        (status = 404, description = "No such lesson or file", content_type = "text/plain", body = String),
        (status = 416, description = "A range past the end"),
        (status = 503, description = "Too many blocking playlist requests waiting", content_type = "text/plain", body = String),
        (status = 504, description = "No response head within the playback timeout"),
    ))]
pub async fn live(State(st): State<AppState>, params: IdAndPath, mut req: Request) -> Response {
    match params {
        Ok(Path((id, path))) => {
            let Some(admitted) = playback::gate(&st, &id, &path, &mut req) else {
                return playback::forbidden();
            };
            // A viewer: whoever is served a playlist of a session that
            // exists (a request for a made-up id must not add an entry).
            let client = path.ends_with(".m3u8").then(|| {
                let peer = req.extensions().get::<crate::metrics::Peer>();
                crate::viewers::client_of(peer, req.headers())
            });
            let res = match crate::live::from_memory(&st, &id, &path, &mut req).await {
                Some(res) => res,
                None => serve(&st, Listing::Live, &id, &path, req).await,
            };
            if let Some(c) = client.filter(|_| res.status() == StatusCode::OK) {
                st.0.metrics.viewer(&id, c, std::time::Instant::now());
            }
            playback::finish(res, admitted, path.ends_with(".m3u8")).await
        }
        // Undecodable percent-escapes: no file has such a name.
        Err(_) => not_found(),
    }
}

/// A finished lesson (a session's recording or a job's), from disk.
#[utoipa::path(get, path = "/vod/{id}/{path}", operation_id = "vod_file", tag = "playback", security(()),
    params(
        ("id" = String, Path, description = "A session or job id"),
        ("path" = String, Path, description = "`master.m3u8`, `{rendition}/index.m3u8`, a segment, part or init file, `poster.jpg`, `download/{rendition}.m4a`"),
        ("token" = Option<String>, Query, description = "A private lesson's playback token"),
    ),
    responses(
        (status = 200, description = "The file", content(
            (String = "application/vnd.apple.mpegurl"),
            (String = "video/mp4"),
            (String = "audio/mp4"),
            (String = "image/jpeg"),
        )),
        (status = 206, description = "A range of a segment or file"),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 400, description = "A malformed LL-HLS directive (`_HLS_msn`, `_HLS_part`, `_HLS_skip`)", content_type = "text/plain", body = String),
        (status = 403, description = "A private lesson without a valid token", content_type = "text/plain", body = String),
        (status = 404, description = "No such lesson or file", content_type = "text/plain", body = String),
        (status = 416, description = "A range past the end"),
        (status = 503, description = "Too many blocking playlist requests waiting", content_type = "text/plain", body = String),
        (status = 504, description = "No response head within the playback timeout"),
    ))]
pub async fn vod(State(st): State<AppState>, params: IdAndPath, mut req: Request) -> Response {
    match params {
        Ok(Path((id, path))) => {
            let Some(admitted) = playback::gate(&st, &id, &path, &mut req) else {
                return playback::forbidden();
            };
            let res = serve(&st, Listing::Vod, &id, &path, req).await;
            playback::finish(res, admitted, path.ends_with(".m3u8")).await
        }
        Err(_) => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// What kind of file a resolved name is, which sets its headers.
#[derive(Clone, Copy)]
struct Kind {
    content_type: &'static str,
    cache_control: &'static str,
}

impl Kind {
    fn of(rel: &str, listing: Listing) -> Kind {
        let immutable = memfile::IMMUTABLE;
        if rel.ends_with(".m3u8") {
            let cache_control = match listing {
                // Live playlists change every segment; players must refetch.
                Listing::Live => "no-cache",
                Listing::Vod => "public, max-age=300",
            };
            Kind {
                content_type: memfile::PLAYLIST_TYPE,
                cache_control,
            }
        } else if rel.ends_with(".m4s") {
            Kind {
                content_type: memfile::SEGMENT_TYPE,
                cache_control: immutable,
            }
        } else if rel == "poster.jpg" {
            // Written once, before the lesson appears.
            Kind {
                content_type: "image/jpeg",
                cache_control: immutable,
            }
        } else if rel.ends_with(".m4a") {
            // A lesson's download: written once, before the lesson appears.
            Kind {
                content_type: "audio/mp4",
                cache_control: immutable,
            }
        } else {
            Kind {
                content_type: memfile::INIT_TYPE,
                cache_control: immutable,
            }
        }
    }
}

async fn serve(
    st: &AppState,
    listing: Listing,
    id: &str,
    path: &str,
    mut req: Request,
) -> Response {
    if !valid_id(id) {
        return not_found();
    }
    let Some(rel) = resolve(listing, path) else {
        return not_found();
    };
    let session = playback::lesson_dir(st, id);
    let Some((file, meta)) = checked_file(session, rel.clone()).await else {
        return not_found();
    };
    let kind = Kind::of(&rel, listing);
    let etag = entity_tag(&meta);
    if not_modified(req.headers_mut(), &etag) {
        return with_validators(StatusCode::NOT_MODIFIED.into_response(), kind, &etag);
    }
    let res = match ServeFile::new(&file).oneshot(req).await {
        Ok(res) => res.map(Body::new),
        Err(never) => match never {},
    };
    let mut res = match res.status() {
        // Gone between the check and the open (a VOD rewrite, a cleanup).
        StatusCode::NOT_FOUND => return not_found(),
        StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED => {
            with_validators(res, kind, &etag)
        }
        _ => res,
    };
    if let Some(name) = rel.strip_prefix("downloads/") {
        // Saved as "{lesson}-{rendition}.m4a"; both are checked names.
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}-{name}\"")) {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    res
}

/// Our content type (ServeFile guesses from the extension and does not know
/// `.m4s`), cache policy and entity tag. A 304 repeats the cache policy and
/// tag (RFC 9110 §15.4.5) but describes no body, so it gets no type.
fn with_validators(mut res: Response, kind: Kind, etag: &HeaderValue) -> Response {
    let has_body = res.status() != StatusCode::NOT_MODIFIED;
    let h = res.headers_mut();
    if has_body {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(kind.content_type),
        );
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(kind.cache_control),
    );
    h.insert(header::ETAG, etag.clone());
    res
}

/// A strong validator: length and modification time (nanoseconds) change
/// whenever the packager rewrites a file.
fn entity_tag(meta: &Metadata) -> HeaderValue {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let tag = format!("\"{:x}-{:x}\"", meta.len(), mtime);
    // Hex digits and quotes only: always a valid header value.
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Applies `If-None-Match` and `If-Range` (RFC 9110 §13.2.2 order) and says
/// whether the answer is 304. Removes what `ServeFile` must not act on: a
/// date condition once a tag condition decided, a range whose `If-Range`
/// does not match.
pub(crate) fn not_modified(headers: &mut HeaderMap, etag: &HeaderValue) -> bool {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        if v.to_str().is_ok_and(|list| none_match_hits(list, etag)) {
            return true;
        }
        headers.remove(header::IF_MODIFIED_SINCE);
    }
    if let Some(v) = headers.remove(header::IF_RANGE) {
        // Only a strong match keeps the range; a date (or another tag)
        // gets the whole file, which is always correct.
        if v != *etag {
            headers.remove(header::RANGE);
        }
    }
    false
}

/// Weak comparison, as `If-None-Match` requires: `W/` prefixes are ignored.
fn none_match_hits(list: &str, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    list.trim() == "*"
        || list
            .split(',')
            .map(str::trim)
            .any(|t| t.strip_prefix("W/").unwrap_or(t).as_bytes() == ours)
}

/// The file `sessions/{id}/hls/{rel}` below the session folder and its
/// metadata, if the session folder, `hls/`, every folder of `rel` and the
/// file itself are real (not symlinks) and the file is a regular file.
async fn checked_file(session: PathBuf, rel: String) -> Option<(PathBuf, Metadata)> {
    // One blocking task for the whole walk rather than one per component.
    tokio::task::spawn_blocking(move || checked_file_blocking(&session, &rel))
        .await
        .ok()
        .flatten()
}

fn checked_file_blocking(session: &FsPath, rel: &str) -> Option<(PathBuf, Metadata)> {
    let mut path = session.to_path_buf();
    real_dir(&path)?;
    path.push("hls");
    real_dir(&path)?;
    let mut parts = FsPath::new(rel).components().peekable();
    while let Some(part) = parts.next() {
        // `resolve` only makes plain names; anything else (`..`, a root)
        // is refused here too, so the walk never leaves the session folder.
        let Component::Normal(name) = part else {
            return None;
        };
        path.push(name);
        if parts.peek().is_some() {
            real_dir(&path)?;
        } else {
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() || !meta.is_file() {
                tracing::debug!(path = %path.display(), "refusing a symlink or special file");
                return None;
            }
            return Some((path, meta));
        }
    }
    None
}

fn real_dir(path: &FsPath) -> Option<()> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        tracing::debug!(path = %path.display(), "refusing a symlinked folder");
        return None;
    }
    meta.is_dir().then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let etag = HeaderValue::from_static("\"1f-abc\"");
        assert!(none_match_hits("\"1f-abc\"", &etag));
        assert!(none_match_hits("W/\"1f-abc\"", &etag));
        assert!(none_match_hits("\"x\", \"1f-abc\"", &etag));
        assert!(none_match_hits("*", &etag));
        assert!(!none_match_hits("\"1f-abd\"", &etag));
        assert!(!none_match_hits("1f-abc", &etag));
        assert!(!none_match_hits("", &etag));
    }

    #[test]
    fn if_range_mismatch_drops_the_range() {
        let etag = HeaderValue::from_static("\"1f-abc\"");
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-3"));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"old\""));
        assert!(!not_modified(&mut h, &etag));
        assert!(!h.contains_key(header::RANGE));

        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-3"));
        h.insert(header::IF_RANGE, etag.clone());
        assert!(!not_modified(&mut h, &etag));
        assert!(h.contains_key(header::RANGE));
    }

    #[test]
    fn a_tag_mismatch_removes_the_date_condition() {
        let etag = HeaderValue::from_static("\"1f-abc\"");
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Sun, 06 Nov 2044 08:49:37 GMT"),
        );
        assert!(!not_modified(&mut h, &etag));
        assert!(!h.contains_key(header::IF_MODIFIED_SINCE));
    }
}
