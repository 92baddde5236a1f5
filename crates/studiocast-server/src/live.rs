//! Live renditions served from memory: the [`LiveView`] the packager
//! publishes on a `watch` channel, found through
//! [`crate::SessionControl::live`].
//!
//! * `{rendition}/index.m3u8`: the view's playlist; with `_HLS_msn` (and
//!   `_HLS_part`) a blocking reload (RFC 8216bis 6.2.5.2) that waits on the
//!   channel until the view holds what was asked for; with `_HLS_skip` the
//!   delta update when the view has one.
//! * `{rendition}/{file}`: the view's `files`; the part the preload hint
//!   names (or the next segment's first part, which may come instead)
//!   waits for its publication the same way, and is a 404 (from the disk,
//!   which holds no parts) once the view has moved past it without it.
//!
//! Waiting is `watch::Receiver::wait_for`: a parked task, woken only when a
//! new view is published, so waiting requests cost no CPU. Whatever the
//! view cannot answer (no view, a file not in memory, a hinted part that
//! turned out not to come) returns `None`, and the caller serves the disk.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use studiocast_hls::{resolve, Listing, LiveView, PartRef};
use tokio::sync::watch;

use crate::api::valid_id;
use crate::directives::Directives;
use crate::memfile;
use crate::metrics::Waiting;
use crate::AppState;
use prometheus_client::metrics::gauge::Gauge;

type Views = watch::Receiver<Arc<LiveView>>;

/// A blocking wait ends this long before the playback timeout at the
/// latest, so that the client gets our 503 rather than the timeout's 504.
const TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// The answer from memory, or `None` to serve the request from disk.
pub(crate) async fn from_memory(
    st: &AppState,
    id: &str,
    path: &str,
    req: &mut Request,
) -> Option<Response> {
    if !valid_id(id) {
        return None;
    }
    // The same fixed set of names as on disk; `master.m3u8` has no `/`.
    resolve(Listing::Live, path)?;
    let (rendition, name) = path.split_once('/')?;
    let views = st.0.control.live(id, rendition)?;
    let timeout = st.0.config.playback_timeout;
    let waiting = &st.0.metrics.waiting;
    if name == "index.m3u8" {
        let query = req.uri().query().map(str::to_owned);
        playlist(views, query.as_deref(), timeout, waiting).await
    } else {
        file(views, name, req.headers_mut(), timeout, waiting).await
    }
}

/// How long a blocking request may wait: three target durations (RFC
/// 8216bis 6.2.5.2: then 503), and less than the playback timeout.
fn wait_limit(view: &LiveView, playback_timeout: Duration) -> Duration {
    let by_target = Duration::from_secs(view.target_duration.max(1).saturating_mul(3));
    by_target.min(playback_timeout.saturating_sub(TIMEOUT_MARGIN))
}

async fn playlist(
    mut views: Views,
    query: Option<&str>,
    timeout: Duration,
    waiting: &Gauge,
) -> Option<Response> {
    let view = views.borrow().clone();
    let Some(part_target) = view.part_target else {
        // A standard playlist advertises no CAN-BLOCK-RELOAD, and a server
        // that does not offer a directive ignores it (as any file server
        // or CDN would): the current playlist, at once, whatever the query.
        let skip = Directives::wants_skip(query);
        return playlist_answer(&view, skip, Cache::NoCache);
    };
    let d = match Directives::parse(query) {
        Ok(d) => d,
        Err(e) => return Some(refuse(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let Some(msn) = d.msn else {
        return playlist_answer(&view, d.skip, Cache::NoCache);
    };
    let cache = Cache::Blocking(blocking_max_age(part_target));
    // `satisfies` is also true once the stream has ended: answer at once.
    if view.satisfies(msn, d.part) {
        return playlist_answer(&view, d.skip, cache);
    }
    if view.too_far_ahead(msn) {
        let why = "_HLS_msn is more than two segments past the last one";
        return Some(refuse(StatusCode::BAD_REQUEST, why));
    }
    let limit = wait_limit(&view, timeout);
    let _counted = Waiting::enter(waiting);
    let waited = tokio::time::timeout(limit, views.wait_for(|v| v.satisfies(msn, d.part))).await;
    match waited {
        Ok(Ok(v)) => {
            let v = Arc::clone(&v);
            playlist_answer(&v, d.skip, cache)
        }
        // The publisher is gone without ending the stream (a failed
        // session): nothing more will come.
        Ok(Err(_)) => Some(unavailable("the stream stopped")),
        Err(_) => Some(unavailable(
            "the requested segment or part did not come in time",
        )),
    }
}

/// How long a CDN may keep the answer to a blocking request. It is keyed
/// by `_HLS_msn`/`_HLS_part`, and every later playlist also holds what was
/// asked for, so a kept copy stays a right answer; it only falls behind
/// the live edge. Three part targets is the least PART-HOLD-BACK a player
/// keeps (RFC 8216bis 4.4.3.8), so a copy that old never takes a player
/// past its hold-back, and the player's next request (for the next part)
/// is another key anyway. HTTP counts in whole seconds: at least 1.
pub(crate) fn blocking_max_age(part_target: f64) -> u64 {
    let secs = (3.0 * part_target).ceil();
    if secs.is_finite() && secs >= 1.0 {
        // Bounded so that a nonsensical part target cannot ask a CDN to
        // keep a live playlist for long.
        (secs as u64).min(MAX_BLOCKING_MAX_AGE)
    } else {
        1
    }
}

const MAX_BLOCKING_MAX_AGE: u64 = 10;

#[derive(Clone, Copy)]
enum Cache {
    /// A plain request: the playlist changes with every part.
    NoCache,
    /// A blocking request: see [`blocking_max_age`].
    Blocking(u64),
}

/// The view's playlist (its delta update when asked and available), or
/// `None` if the view has none yet (the disk may).
fn playlist_answer(view: &LiveView, skip: bool, cache: Cache) -> Option<Response> {
    let body = match (&view.playlist_skip, skip) {
        (Some(delta), true) if !delta.is_empty() => delta.clone(),
        _ => view.playlist.clone(),
    };
    if body.is_empty() {
        return None;
    }
    let cache = match cache {
        Cache::NoCache => HeaderValue::from_static("no-cache"),
        // Digits and fixed text: always a valid header value.
        Cache::Blocking(secs) => HeaderValue::try_from(format!("public, max-age={secs}"))
            .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
    };
    let mut res = memfile::body_response(StatusCode::OK, body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(memfile::PLAYLIST_TYPE),
    );
    h.insert(header::CACHE_CONTROL, cache);
    Some(res)
}

async fn file(
    mut views: Views,
    name: &str,
    headers: &mut HeaderMap,
    timeout: Duration,
    waiting: &Gauge,
) -> Option<Response> {
    let view = views.borrow().clone();
    if let Some(bytes) = view.file(name) {
        return Some(memfile::respond(name, bytes, headers));
    }
    if !coming_next(&view, name) {
        return None;
    }
    let limit = wait_limit(&view, timeout);
    let _counted = Waiting::enter(waiting);
    let arrived = views.wait_for(|v| v.files.contains_key(name) || !coming_next(v, name));
    // `Some(found)` once decided; `None` when the publisher went away.
    let decided = match tokio::time::timeout(limit, arrived).await {
        Ok(Ok(v)) => Some(v.file(name)),
        Ok(Err(_)) => None,
        Err(_) => return Some(unavailable("the hinted part did not come in time")),
    };
    // Publisher gone: whatever its last view had, else the disk.
    let bytes = decided.unwrap_or_else(|| views.borrow().file(name));
    // `None`: another part came instead (the segment ended early); the
    // disk answers, with 404 unless the packager wrote it there.
    bytes.map(|b| memfile::respond(name, b, headers))
}

/// Is `name` a part the view expects next: the one its preload hint
/// names, or, when that is a next part of the open segment, the first part
/// of the following segment (the muxer may start one instead)?
fn coming_next(view: &LiveView, name: &str) -> bool {
    if view.ended || view.part_target.is_none() {
        return false;
    }
    let Some(hint) = view.preload_hint else {
        return false;
    };
    let next_segment = PartRef {
        msn: hint.msn.saturating_add(1),
        part: 0,
    };
    name == hint.uri() || (hint.part > 0 && name == next_segment.uri())
}

fn unavailable(why: &str) -> Response {
    refuse(StatusCode::SERVICE_UNAVAILABLE, why)
}

/// A short text answer nobody should cache.
fn refuse(status: StatusCode, why: &str) -> Response {
    let mut res = memfile::body_response(status, Bytes::from(format!("{why}\n")));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(last_part: Option<(u64, u32)>, last_segment: Option<u64>) -> LiveView {
        LiveView {
            last_part: last_part.map(|(msn, part)| PartRef { msn, part }),
            last_segment,
            ..LiveView::empty("video", 2, Some(0.5))
        }
    }

    #[test]
    fn the_parts_coming_next() {
        let p = |msn, part| PartRef { msn, part };
        let mut v = view(Some((12, 3)), Some(11));
        v.preload_hint = Some(p(12, 4));
        // The hinted part, or the next segment's first if one starts.
        assert!(coming_next(&v, "seg000012.p4.m4s"));
        assert!(coming_next(&v, "seg000013.p0.m4s"));
        for not in [
            "seg000012.p5.m4s",
            "seg000012.p3.m4s",
            "seg000013.p1.m4s",
            "seg12.p4.m4s",
            "seg000012.p04.m4s",
            "seg000012.m4s",
        ] {
            assert!(!coming_next(&v, not), "{not}");
        }
        // A hint at a segment's start: only that part.
        v.preload_hint = Some(p(13, 0));
        assert!(coming_next(&v, "seg000013.p0.m4s"));
        assert!(!coming_next(&v, "seg000014.p0.m4s"));
        // Nothing is expected of an ended or standard rendition, or
        // without a hint.
        let mut ended = v.clone();
        ended.ended = true;
        assert!(!coming_next(&ended, "seg000013.p0.m4s"));
        let mut standard = v.clone();
        standard.part_target = None;
        assert!(!coming_next(&standard, "seg000013.p0.m4s"));
        v.preload_hint = None;
        assert!(!coming_next(&v, "seg000013.p0.m4s"));
    }

    #[test]
    fn blocking_cache_ages() {
        assert_eq!(blocking_max_age(0.333), 1);
        assert_eq!(blocking_max_age(0.5), 2);
        assert_eq!(blocking_max_age(1.0), 3);
        assert_eq!(blocking_max_age(0.0), 1);
        assert_eq!(blocking_max_age(f64::NAN), 1);
        assert_eq!(blocking_max_age(f64::INFINITY), 1);
        assert_eq!(blocking_max_age(100.0), MAX_BLOCKING_MAX_AGE);
    }

    #[test]
    fn wait_limits() {
        let v = view(None, None);
        let ten = Duration::from_secs(10);
        assert_eq!(wait_limit(&v, ten), Duration::from_secs(6));
        assert_eq!(
            wait_limit(&v, Duration::from_secs(2)),
            Duration::from_millis(1500)
        );
        let zero_target = LiveView::empty("v", 0, Some(0.5));
        assert_eq!(wait_limit(&zero_target, ten), Duration::from_secs(3));
    }
}
