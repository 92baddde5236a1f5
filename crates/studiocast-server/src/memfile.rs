//! Responses for bodies held in memory (`Bytes` from a [`LiveView`]), with
//! what `ServeFile` gives files on disk: `Content-Length`, a single
//! `Range` (206, 416), and a strong `ETag` with `If-None-Match` (304) and
//! `If-Range`.
//!
//! [`LiveView`]: studiocast_hls::LiveView

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use crate::origin::not_modified;

pub(crate) const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub(crate) const SEGMENT_TYPE: &str = "video/iso.segment";
pub(crate) const INIT_TYPE: &str = "video/mp4";
/// Parts, segments and init segments never change under their name.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `status` with `body`. Its `Content-Length` comes from axum's router,
/// which sets it from the exact size a `Bytes` body reports (tested).
pub(crate) fn body_response(status: StatusCode, body: Bytes) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res
}

/// A part, segment or init segment from memory.
pub(crate) fn respond(name: &str, bytes: Bytes, request: &mut HeaderMap) -> Response {
    let etag = entity_tag(name, bytes.len());
    let content_type = if name.ends_with(".m4s") {
        SEGMENT_TYPE
    } else {
        INIT_TYPE
    };
    let mut res = if not_modified(request, &etag) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        match byte_range(request, bytes.len() as u64) {
            Range::Whole => body_response(StatusCode::OK, bytes),
            Range::Part { first, last } => {
                // Bounds checked by `byte_range`: first <= last < len.
                let slice = bytes.slice(first as usize..=last as usize);
                let mut r = body_response(StatusCode::PARTIAL_CONTENT, slice);
                let range = format!("bytes {first}-{last}/{}", bytes.len());
                if let Ok(v) = HeaderValue::try_from(range) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                r
            }
            Range::Unsatisfiable => {
                let mut r = body_response(StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new());
                if let Ok(v) = HeaderValue::try_from(format!("bytes */{}", bytes.len())) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        }
    };
    let has_body = res.status() != StatusCode::NOT_MODIFIED;
    let h = res.headers_mut();
    // A 304 describes no body: it repeats the validators, not the type.
    if has_body {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::ETAG, etag);
    res
}

/// Strong, from the name and length: the packager never publishes other
/// bytes under a name it has used.
fn entity_tag(name: &str, len: usize) -> HeaderValue {
    // `resolve` lets only ASCII letters, digits, `-`, `_` and `.` through.
    HeaderValue::try_from(format!("\"m-{name}-{len:x}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"m\""))
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    Whole,
    /// Inclusive byte positions.
    Part {
        first: u64,
        last: u64,
    },
    Unsatisfiable,
}

/// One `bytes=` range of a body of `len` bytes. Anything else (another
/// unit, several ranges, a malformed one) gets the whole body, which RFC
/// 9110 §14.2 allows (a server may ignore `Range`).
fn byte_range(request: &HeaderMap, len: u64) -> Range {
    let Some(spec) = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Range::Whole;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (num(a), num(b), a.is_empty()) {
        // `-n`: the last n bytes.
        (None, Some(n), true) => {
            if n == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part {
                    first: len.saturating_sub(n),
                    last: len - 1,
                }
            }
        }
        (Some(first), None, false) if b.is_empty() => within(first, u64::MAX, len),
        (Some(first), Some(last), false) if first <= last => within(first, last, len),
        _ => Range::Whole,
    }
}

fn within(first: u64, last: u64, len: u64) -> Range {
    if first >= len {
        Range::Unsatisfiable
    } else {
        Range::Part {
            first,
            last: last.min(len - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Range {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        byte_range(&h, len)
    }

    #[test]
    fn ranges() {
        let part = |first, last| Range::Part { first, last };
        assert_eq!(byte_range(&HeaderMap::new(), 20), Range::Whole);
        assert_eq!(range("bytes=2-5", 20), part(2, 5));
        assert_eq!(range("bytes=2-", 20), part(2, 19));
        assert_eq!(range("bytes=2-100", 20), part(2, 19));
        assert_eq!(range("bytes=-3", 20), part(17, 19));
        assert_eq!(range("bytes=-30", 20), part(0, 19));
        for unsatisfiable in ["bytes=20-", "bytes=100-200", "bytes=-0"] {
            assert_eq!(
                range(unsatisfiable, 20),
                Range::Unsatisfiable,
                "{unsatisfiable}"
            );
        }
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=x-1",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
        ] {
            assert_eq!(range(ignored, 20), Range::Whole, "{ignored}");
        }
    }
}
