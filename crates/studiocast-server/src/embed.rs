//! The viewer's player: `/embed/{id}` (one page for live and VOD, made to
//! sit in an iframe on the Campus or the Hub), its static assets under
//! `/player/`, and oEmbed discovery (`/oembed`).
//!
//! The page is the same bytes for every lesson but for one JSON block that
//! describes the lesson (title, course, the playlist, the poster, or the
//! message to show instead of a player). Every URL in it is relative, so
//! it works behind a proxy under a path prefix; only oEmbed, which must
//! give absolute URLs, uses `[server] public_url` (else the request's
//! `Host`).

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::Visibility;
use crate::api::valid_id;
use crate::{playback, AppState, SessionState};

const PAGE: &str = include_str!("../assets/embed.html");
const PLAYER_JS: &str = include_str!("../assets/player.js");
const PLAYER_CSS: &str = include_str!("../assets/player.css");
const SPATIAL_JS: &str = include_str!("../assets/spatial.js");
/// The head-tracked mode's AudioWorklet module.
const ROTATOR_JS: &str = include_str!("../assets/rotator.js");
/// hls.js, pinned by `tests/browser/package-lock.json` (a test checks the
/// copy here is that version's `dist/hls.min.js`).
pub const HLS_JS: &[u8] = include_bytes!("../assets/hls.min.js");
/// The name the page loads hls.js by: versioned, so it can be immutable.
pub const HLS_JS_NAME: &str = "hls-1.6.19.min.js";

/// What the page shows: a player, or a message instead.
struct Lesson {
    title: String,
    course: String,
    /// Relative to `/embed/{id}`: any player's master.
    src: Option<String>,
    /// The embedded player's master (every rendition), when the lesson
    /// has one; Safari's own player takes `src`.
    player_src: Option<String>,
    live: bool,
    poster: Option<String>,
    message: Option<String>,
    status: StatusCode,
    visibility: Visibility,
    /// A session or job by that id exists.
    exists: bool,
}

impl Lesson {
    fn message(status: StatusCode, text: &str) -> Lesson {
        Lesson {
            title: "studiocast".into(),
            course: String::new(),
            src: None,
            player_src: None,
            live: false,
            poster: None,
            message: Some(text.into()),
            status,
            visibility: Visibility::Public,
            exists: false,
        }
    }
}

/// What a record says of its lesson: title, course, the playlist (relative
/// to the page), live or not, the poster, the message instead of a player,
/// and whether the record itself says private.
struct FromRecord {
    title: String,
    course: String,
    src: String,
    live: bool,
    poster: Option<String>,
    message: Option<String>,
    private: bool,
}

/// A job's lesson, from its record; `None` for no such job.
async fn from_job(st: &AppState, id: &str, vod: bool) -> Option<FromRecord> {
    let job = st.0.control.jobs()?.get(id.to_string()).await.ok()?;
    let text = |k: &str| job.spec[k].as_str().unwrap_or("").to_string();
    let message = match job.state.as_str() {
        "succeeded" if vod => None,
        "queued" | "running" => Some(format!(
            "This lesson is being prepared ({:.0} %). Come back in a few minutes.",
            job.progress
        )),
        _ => Some("This lesson is not available.".to_string()),
    };
    Some(FromRecord {
        title: text("title"),
        course: text("course"),
        src: format!("../vod/{id}/master.m3u8"),
        live: false,
        poster: job
            .outputs
            .as_ref()
            .and_then(|o| o.poster.as_ref())
            .map(|_| format!("../vod/{id}/poster.jpg")),
        message,
        // Fixed at submission, before the lesson's folder exists.
        private: matches!(job.spec["visibility"].as_str(), Some("private" | "campus")),
    })
}

/// A session's lesson, from its record; `None` for no such session.
async fn from_session(st: &AppState, id: &str, vod: bool) -> Option<FromRecord> {
    let s = st.0.control.get(id.to_string()).await.ok()?;
    let live = matches!(s.state, SessionState::Starting | SessionState::Live);
    let message = match (live, vod) {
        (true, _) | (false, true) => None,
        (false, false) if s.state == SessionState::Stopping => {
            Some("The stream has just ended; its recording will be here in a moment.".into())
        }
        (false, false) => Some("This stream has ended and has no recording.".into()),
    };
    let src = if live {
        format!("../live/{id}/master.m3u8")
    } else {
        format!("../vod/{id}/master.m3u8")
    };
    Some(FromRecord {
        title: s.title,
        course: s.course,
        src,
        live,
        poster: None,
        message,
        private: s.visibility == Visibility::Private,
    })
}

/// The lesson `id` as a viewer may see it, from the session or job record.
async fn lesson(st: &AppState, id: &str) -> Lesson {
    let gone = || Lesson::message(StatusCode::NOT_FOUND, "There is no lesson at this address.");
    if !valid_id(id) {
        return gone();
    }
    let hls = playback::lesson_dir(st, id).join("hls");
    // (The recording's master, and the embedded player's: recordings
    // made before the player's master have none.)
    let (vod, player_vod) = {
        let h = hls.clone();
        tokio::task::spawn_blocking(move || {
            let is = |f: &str| h.join(f).is_file();
            (is("master-vod.m3u8"), is("master-player-vod.m3u8"))
        })
        .await
        .unwrap_or((false, false))
    };
    let record = if id.starts_with("job-") {
        from_job(st, id, vod).await
    } else {
        from_session(st, id, vod).await
    };
    let Some(FromRecord {
        title,
        course,
        src,
        live,
        poster,
        message,
        private: private_record,
    }) = record
    else {
        return gone();
    };
    // The record says it before the lesson's folder does (a job not yet
    // published, a failed one); the folder's file says it for the rest.
    let visibility = if private_record {
        Visibility::Private
    } else {
        st.0.access.visibility(id, || hls.clone())
    };
    Lesson {
        title: if title.trim().is_empty() {
            "Lesson".into()
        } else {
            title
        },
        course,
        // A live session of this daemon writes it with its first playlists
        // (a viewer who opens the page before then must still get it); a
        // recording made before it existed has none.
        player_src: (message.is_none() && (live || player_vod))
            .then(|| src.replace("/master.m3u8", "/master-player.m3u8")),
        src: message.is_none().then_some(src),
        live,
        poster,
        status: if message.is_some() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        },
        message,
        visibility,
        exists: true,
    }
}

/// `GET /embed/{id}`: the player page, or the page with a message.
#[utoipa::path(get, path = "/embed/{id}", operation_id = "embed_page", tag = "player", security(()),
    params(
        ("id" = String, Path, description = "A session or job id"),
        ("token" = Option<String>, Query, description = "A private lesson's playback token"),
    ),
    responses(
        (status = 200, description = "The player page", content_type = "text/html", body = String),
        (status = 403, description = "A private lesson without a valid token: a page that says so", content_type = "text/html", body = String),
        (status = 404, description = "No such lesson: a page that says so", content_type = "text/html", body = String),
    ))]
pub async fn page(State(st): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let mut l = lesson(&st, &id).await;
    let token = crate::access::token_of(req.uri().query()).map(str::to_string);
    // Nothing of a private lesson, not even its state, without the token.
    let token_ok = token.as_deref().is_some_and(|t| {
        st.0.config
            .playback_key
            .as_ref()
            .is_some_and(|k| k.verify(&id, Some(t), crate::access::unix_now()).is_ok())
    });
    if l.exists && l.visibility == Visibility::Private && !token_ok {
        l = Lesson {
            visibility: Visibility::Private,
            exists: true,
            ..Lesson::message(
                StatusCode::FORBIDDEN,
                "This lesson is private. Open it from your course page, or ask for a new link: this one is missing or has expired.",
            )
        };
    }
    let token_q = match (&token, l.visibility) {
        (Some(t), Visibility::Private) => format!("?token={t}"),
        _ => String::new(),
    };
    let data = json!({
        "id": id,
        "title": l.title,
        "course": l.course,
        "src": l.src.map(|s| format!("{s}{token_q}")),
        "player_src": l.player_src.map(|s| format!("{s}{token_q}")),
        "live": l.live,
        "poster": l.poster.map(|p| format!("{p}{token_q}")),
        "message": l.message,
        "origins": st.0.config.embed_origins,
    });
    let oembed = absolute_base(&st, req.uri(), req.headers()).map(|base| {
        let page = format!("{base}/embed/{id}");
        format!(
            "<link rel=\"alternate\" type=\"application/json+oembed\" href=\"../oembed?url={}&amp;format=json\" title=\"{}\">",
            percent_encode(&page),
            html_escape(&l.title)
        )
    });
    let html = fill(
        PAGE,
        &[
            ("TITLE", html_escape(&l.title)),
            ("OEMBED", oembed.unwrap_or_default()),
            ("HLS", HLS_JS_NAME.to_string()),
            // `<` escaped: no title can close the script element.
            ("LESSON", data.to_string().replace('<', "\\u003c")),
        ],
    );
    let mut res = (l.status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Never without a policy: if it cannot be sent, nobody frames the page.
    let policy = HeaderValue::from_str(&csp(&st, l.visibility)).unwrap_or(
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, policy);
    res
}

/// The template with each `{{KEY}}` replaced, in one pass: what a value
/// holds (a title with `{{LESSON}}` in it) is never read as a marker.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let hit = after.find("}}").and_then(|end| {
            values
                .iter()
                .find(|(k, _)| *k == &after[..end])
                .map(|(_, v)| (v, end))
        });
        match hit {
            Some((v, end)) => {
                out.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Public lessons may be framed anywhere, as a public video; private ones
/// only by the configured origins (and the daemon's own pages).
fn csp(st: &AppState, visibility: Visibility) -> String {
    let ancestors = match visibility {
        Visibility::Public => "*".to_string(),
        Visibility::Private => std::iter::once("'self'".to_string())
            .chain(st.0.config.embed_origins.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; \
         base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )
}

/// `GET /player/{file}`: the page's script, style and hls.js.
#[utoipa::path(get, path = "/player/{file}", operation_id = "player_asset", tag = "player", security(()),
    params(("file" = String, Path, description = "`player.js`, `player.css`, `spatial.js`, `rotator.js` or hls.js")),
    responses(
        (status = 200, description = "The file (`deflate` when accepted)", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such file", content_type = "text/plain", body = String),
    ))]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let (ctype, body, cache): (&str, &'static [u8], &str) = match file.as_str() {
        "player.js" => (
            "text/javascript; charset=utf-8",
            PLAYER_JS.as_bytes(),
            "public, max-age=300",
        ),
        "spatial.js" => (
            "text/javascript; charset=utf-8",
            SPATIAL_JS.as_bytes(),
            "public, max-age=300",
        ),
        "rotator.js" => (
            "text/javascript; charset=utf-8",
            ROTATOR_JS.as_bytes(),
            "public, max-age=300",
        ),
        "player.css" => (
            "text/css; charset=utf-8",
            PLAYER_CSS.as_bytes(),
            "public, max-age=300",
        ),
        f if f == HLS_JS_NAME => (
            "text/javascript; charset=utf-8",
            HLS_JS,
            "public, max-age=31536000, immutable",
        ),
        _ => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    let deflate = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_deflate);
    let mut res = if deflate {
        let mut r = Response::new(Body::from(compressed(&file, body)));
        r.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("deflate"),
        );
        r
    } else {
        Response::new(Body::from(body))
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(cache).unwrap_or(HeaderValue::from_static("no-cache")),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// `deflate` is listed in `Accept-Encoding` and not refused with `q=0`.
fn accepts_deflate(header: &str) -> bool {
    header.split(',').any(|e| {
        let mut parts = e.split(';').map(str::trim);
        parts
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case("deflate"))
            && parts.all(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_none_or(|q| q > 0.0)
            })
    })
}

/// Each asset compressed once (zlib, as HTTP's `deflate` is), on first use:
/// a flood of requests for hls.js costs no compression.
fn compressed(file: &str, body: &'static [u8]) -> bytes::Bytes {
    static JS: OnceLock<bytes::Bytes> = OnceLock::new();
    static CSS: OnceLock<bytes::Bytes> = OnceLock::new();
    static SPATIAL: OnceLock<bytes::Bytes> = OnceLock::new();
    static ROTATOR: OnceLock<bytes::Bytes> = OnceLock::new();
    static HLS: OnceLock<bytes::Bytes> = OnceLock::new();
    let cell = match file {
        "player.js" => &JS,
        "player.css" => &CSS,
        "spatial.js" => &SPATIAL,
        "rotator.js" => &ROTATOR,
        _ => &HLS,
    };
    cell.get_or_init(|| bytes::Bytes::from(miniz_oxide::deflate::compress_to_vec_zlib(body, 9)))
        .clone()
}

/// The daemon's absolute address: `public_url`, else the request's
/// authority (`Host`, or HTTP/2's `:authority`) with our own scheme.
fn absolute_base(st: &AppState, uri: &axum::http::Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(u) = &st.0.config.public_url {
        return Some(u.trim_end_matches('/').to_string());
    }
    let host = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    let safe = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    let scheme = if st.0.config.https { "https" } else { "http" };
    safe.then(|| format!("{scheme}://{host}"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OembedQuery {
    /// An embed page's absolute URL (`…/embed/{id}`, with `?token=` for a
    /// private lesson).
    url: Option<String>,
    maxwidth: Option<u32>,
    maxheight: Option<u32>,
    /// `json`, the only one offered (empty means `json` too; `xml` is 501
    /// as oEmbed says, anything else 400).
    #[param(pattern = "^(json)?$")]
    format: Option<String>,
}

/// The oEmbed 1.0 `video` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Oembed {
    /// `1.0`.
    pub version: String,
    /// `video`.
    #[serde(rename = "type")]
    pub kind: String,
    pub provider_name: String,
    pub provider_url: String,
    pub title: String,
    /// The course.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    pub width: u32,
    pub height: u32,
    /// The `<iframe>` of the embed page.
    pub html: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_width: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_height: Option<u16>,
}

/// `GET /oembed?url=…`: the oEmbed 1.0 `video` answer for an embed page.
#[utoipa::path(get, path = "/oembed", tag = "player", security(()), params(OembedQuery),
    responses(
        (status = 200, description = "The embed", body = Oembed),
        (status = 400, description = "A query that does not parse, or a `format` that is not one", content_type = "text/plain", body = String),
        (status = 401, description = "A private lesson's page without a valid token", content_type = "text/plain", body = String),
        (status = 404, description = "Not an embed page of this daemon, or no such lesson", content_type = "text/plain", body = String),
        (status = 501, description = "`format=xml`: oEmbed's other format, not offered", content_type = "text/plain", body = String),
    ))]
pub async fn oembed(
    State(st): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    q: Result<Query<OembedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found\n").into_response();
    let Ok(Query(q)) = q else {
        return (StatusCode::BAD_REQUEST, "bad query\n").into_response();
    };
    // oEmbed: a format the provider does not offer is 501. Only `xml` is
    // one; any other word is not a format at all, and an empty one asks
    // for nothing in particular.
    match q.format.as_deref() {
        None | Some("" | "json") => {}
        Some("xml") => return (StatusCode::NOT_IMPLEMENTED, "only format=json\n").into_response(),
        Some(_) => return (StatusCode::BAD_REQUEST, "format: json\n").into_response(),
    }
    let (Some(url), Some(base)) = (q.url, absolute_base(&st, &uri, &headers)) else {
        return not_found();
    };
    let Some(rest) = url.strip_prefix(&format!("{base}/embed/")) else {
        return not_found();
    };
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    let l = lesson(&st, id).await;
    if !l.exists {
        return not_found();
    }
    let token = crate::access::token_of(Some(query));
    if l.visibility == Visibility::Private {
        let ok =
            st.0.config
                .playback_key
                .as_ref()
                .is_some_and(|k| k.verify(id, token, crate::access::unix_now()).is_ok());
        if !ok {
            return (StatusCode::UNAUTHORIZED, "private\n").into_response();
        }
    }
    let (w, h) = fit(q.maxwidth, q.maxheight);
    let src = match (token, l.visibility) {
        (Some(t), Visibility::Private) => format!("{base}/embed/{id}?token={t}"),
        _ => format!("{base}/embed/{id}"),
    };
    let title = html_escape(&l.title);
    let mut body = Oembed {
        version: "1.0".into(),
        kind: "video".into(),
        provider_name: "studiocast".into(),
        provider_url: format!("{base}/"),
        html: format!(
            "<iframe src=\"{}\" width=\"{w}\" height=\"{h}\" title=\"{title}\" frameborder=\"0\" \
             allow=\"autoplay; fullscreen; picture-in-picture; gyroscope; accelerometer\" allowfullscreen></iframe>",
            html_escape(&src)
        ),
        title: l.title,
        width: w,
        height: h,
        author_name: (!l.course.is_empty()).then_some(l.course),
        thumbnail_url: None,
        thumbnail_width: None,
        thumbnail_height: None,
    };
    if let Some(p) = l.poster {
        let file = playback::lesson_dir(&st, id).join("hls/poster.jpg");
        let head = tokio::task::spawn_blocking(move || jpeg_head(&file))
            .await
            .ok()
            .flatten();
        if let Some((pw, ph)) = head.and_then(|b| jpeg_size(&b)) {
            let p = p.trim_start_matches("..");
            let t = if l.visibility == Visibility::Private {
                token.map(|t| format!("?token={t}")).unwrap_or_default()
            } else {
                String::new()
            };
            body.thumbnail_url = Some(format!("{base}{p}{t}"));
            body.thumbnail_width = Some(pw);
            body.thumbnail_height = Some(ph);
        }
    }
    let mut res = axum::Json(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// 16:9 within the limits (oEmbed: never beyond them), 640x360 when there
/// are none.
fn fit(maxwidth: Option<u32>, maxheight: Option<u32>) -> (u32, u32) {
    let w = maxwidth.unwrap_or(640).clamp(1, 3840);
    let h = maxheight.unwrap_or(2160).clamp(1, 2160);
    let w = w.min(h.saturating_mul(16) / 9).max(1);
    (w, (w * 9 / 16).clamp(1, h))
}

/// The first 64 KiB of a poster (its frame header is near the start): a
/// regular file only, never a symlink.
fn jpeg_head(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

/// Width and height from a baseline or progressive JPEG's frame header.
fn jpeg_size(b: &[u8]) -> Option<(u16, u16)> {
    if b.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 9 < b.len() {
        if b[i] != 0xFF {
            return None;
        }
        // Fill bytes (0xFF) may pad the space before a marker.
        if b[i + 1] == 0xFF {
            i += 1;
            continue;
        }
        let marker = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]);
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]);
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_sixteen_by_nine() {
        assert_eq!(fit(None, None), (640, 360));
        assert_eq!(fit(Some(320), None), (320, 180));
        assert_eq!(fit(Some(1000), Some(180)), (320, 180));
        assert_eq!(fit(Some(0), None), (1, 1));
        assert_eq!(fit(Some(10), Some(4)), (7, 3));
    }

    #[test]
    fn a_jpeg_says_its_size_and_rubbish_says_nothing() {
        // SOI, an APP0 of 16 bytes, SOF0 for 1920x1080.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        j.extend_from_slice(&[0; 14]);
        j.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x04, 0x38, 0x07, 0x80, 0x03]);
        j.extend_from_slice(&[0; 16]);
        assert_eq!(jpeg_size(&j), Some((1920, 1080)));
        assert_eq!(jpeg_size(b"\xFF\xD8\xFF"), None);
        assert_eq!(jpeg_size(b"GIF89a"), None);
        let mut endless = vec![0xFF, 0xD8];
        endless.extend(std::iter::repeat_n([0xFF, 0xE1, 0x00, 0x02], 100).flatten());
        assert_eq!(jpeg_size(&endless), None);
    }

    #[test]
    fn text_cannot_break_out_of_its_attribute() {
        assert_eq!(html_escape("a\"<b>&'"), "a&quot;&lt;b&gt;&amp;&#39;");
        assert_eq!(
            percent_encode("http://h:1/embed/x?y"),
            "http%3A%2F%2Fh%3A1%2Fembed%2Fx%3Fy"
        );
    }
}
