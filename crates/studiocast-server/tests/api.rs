//! The control API, health and CORS, in process against a scripted
//! supervisor.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{app, authed, get, send, Fake, TempDir, TOKEN};
use serde_json::json;
use studiocast_server::{router, ControlError, Health, ServerConfig};

/// Every control route, with a body where it takes one.
fn control_routes() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    vec![
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"pipeline":"demo","title":"T"}"#),
        ),
        ("GET", "/api/v1/sessions", None),
        ("GET", "/api/v1/sessions/s1", None),
        ("POST", "/api/v1/sessions/s1/stop", None),
        ("GET", "/api/v1/devices", None),
        ("GET", "/api/v1/sessions/s1/meters", None),
    ]
}

fn request(method: &str, uri: &str, body: Option<&str>, auth: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    match body {
        Some(json) => b
            .header("content-type", "application/json")
            .body(Body::from(json.to_string())),
        None => b.body(Body::empty()),
    }
    .unwrap()
}

#[tokio::test]
async fn every_control_route_refuses_a_missing_wrong_or_misschemed_token() {
    let dir = TempDir::new("auth");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    let wrong_scheme_basic = format!("Basic {TOKEN}");
    let wrong_scheme_token = format!("Token {TOKEN}");
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let longer = format!("Bearer {TOKEN}x");
    let cases: [(&str, Option<&str>); 7] = [
        ("no token", None),
        ("wrong token", Some("Bearer wrong-token")),
        ("token prefix", Some(&prefix)),
        ("longer token", Some(&longer)),
        ("Basic scheme", Some(&wrong_scheme_basic)),
        ("Token scheme", Some(&wrong_scheme_token)),
        ("bare token", Some(TOKEN)),
    ];
    for (method, uri, body) in control_routes() {
        for (case, auth) in cases {
            let a = send(&app, request(method, uri, body, auth)).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {uri}: {case}");
            assert_eq!(a.json()["code"], "unauthorized", "{method} {uri}: {case}");
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert!(
        fake.calls().is_empty(),
        "the supervisor was called without a valid token: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn every_control_route_admits_the_right_token() {
    let dir = TempDir::new("auth-ok");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    let auth = format!("Bearer {TOKEN}");
    for (method, uri, body) in control_routes() {
        let a = send(&app, request(method, uri, body, Some(&auth))).await;
        let expected = match uri {
            "/api/v1/sessions" if method == "POST" => StatusCode::CREATED,
            // In process there is no connection to upgrade: past the token
            // check, the route says a WebSocket is needed.
            u if u.ends_with("/meters") => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::OK,
        };
        assert_eq!(a.status, expected, "{method} {uri}: {}", a.text());
        if expected == StatusCode::UPGRADE_REQUIRED {
            assert_eq!(a.header("upgrade"), Some("websocket"));
        }
        assert!(a
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
    }
    assert_eq!(fake.calls(), ["create", "list", "get", "stop", "devices"]);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_takes_several_spaces() {
    let dir = TempDir::new("scheme");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    for auth in [
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("BeArEr {TOKEN}"),
        format!("Bearer     {TOKEN}"),
    ] {
        let a = send(&app, request("GET", "/api/v1/sessions", None, Some(&auth))).await;
        assert_eq!(a.status, StatusCode::OK, "{auth:?}");
    }
}

#[tokio::test]
async fn an_empty_configured_token_admits_nobody() {
    let dir = TempDir::new("empty-token");
    let fake = Fake::new();
    let app = router(ServerConfig::new("", dir.path()), fake.clone());
    for auth in [None, Some("Bearer "), Some("Bearer"), Some("Bearer \"\"")] {
        let a = send(&app, request("GET", "/api/v1/sessions", None, auth)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    let a = send(&app, get("/api/v1/sessions/s1/meters?token=")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn meters_take_the_token_from_a_subprotocol_or_the_query() {
    let dir = TempDir::new("meters-auth");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    let uri = "/api/v1/sessions/s1/meters";
    let with_protocols = |p: &str| {
        Request::get(uri)
            .header("sec-websocket-protocol", p)
            .body(Body::empty())
            .unwrap()
    };
    // Accepted channels get past the token check (426: no upgrade in process).
    let ok = [
        with_protocols(&format!("studiocast.bearer, {TOKEN}")),
        get(&format!("{uri}?token={TOKEN}")),
    ];
    for req in ok {
        let a = send(&app, req).await;
        assert_eq!(a.status, StatusCode::UPGRADE_REQUIRED, "{}", a.text());
    }
    let refused = [
        with_protocols("studiocast.bearer, wrong"),
        // The token without the marker protocol is not a token offer.
        with_protocols(TOKEN),
        with_protocols(&format!("studiocast.bearer, {}", &TOKEN[1..])),
        get(&format!("{uri}?token=wrong")),
        get(&format!("{uri}?token={TOKEN}&token={TOKEN}")),
        get(&format!("{uri}?token=")),
    ];
    for req in refused {
        let shown = format!("{:?} {:?}", req.uri(), req.headers());
        let a = send(&app, req).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{shown}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

/// RFC 6455's sample key.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A WebSocket handshake for the meters route, with or without its key
/// and its version.
fn ws_handshake(key: Option<&str>, version: Option<&str>) -> Request<Body> {
    let mut r = Request::get("/api/v1/sessions/s1/meters")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket");
    if let Some(k) = key {
        r = r.header("sec-websocket-key", k);
    }
    if let Some(v) = version {
        r = r.header("sec-websocket-version", v);
    }
    r.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_websocket_handshake_without_its_key_is_400() {
    let dir = TempDir::new("ws-key");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    let handshake = |key| ws_handshake(key, Some("13"));
    let a = send(&app, handshake(None)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("bad_request"), "{}", a.text());
    // With its key the handshake is whole; in process there is still no
    // connection to upgrade.
    let a = send(&app, handshake(Some(WS_KEY))).await;
    assert_eq!(a.status, StatusCode::UPGRADE_REQUIRED, "{}", a.text());
}

/// RFC 6455 4.2.1 and 4.4: a handshake without `Sec-WebSocket-Version` is
/// malformed (400); one with another version gets 426 naming version 13.
#[tokio::test]
async fn a_websocket_handshake_needs_version_13() {
    let dir = TempDir::new("ws-version");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    let handshake = |version| ws_handshake(Some(WS_KEY), version);
    let a = send(&app, handshake(None)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("Sec-WebSocket-Version"), "{}", a.text());
    let a = send(&app, handshake(Some("8"))).await;
    assert_eq!(a.status, StatusCode::UPGRADE_REQUIRED, "{}", a.text());
    assert_eq!(a.headers["sec-websocket-version"], "13");
    assert_eq!(a.headers["upgrade"], "websocket");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn control_errors_map_to_statuses_and_stable_codes() {
    let dir = TempDir::new("errors");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    let cases = [
        (
            ControlError::SessionNotFound("s1".into()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            ControlError::PipelineNotFound("demo".into()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            ControlError::Conflict("not running".into()),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            ControlError::Unavailable("no camera".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (
            ControlError::Internal("db at /secret/path broke".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
        ),
    ];
    for (err, status, code) in cases {
        *fake.error.lock().unwrap() = Some(err.clone());
        let a = send(
            &app,
            authed("POST", "/api/v1/sessions/s1/stop")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, status, "{err:?}");
        let body = a.json();
        assert_eq!(body["code"], code, "{err:?}");
        assert!(body["message"].is_string());
        assert_eq!(body.as_object().unwrap().len(), 2, "only code and message");
        if let ControlError::Internal(_) = err {
            assert_eq!(body["message"], "internal error");
            assert!(
                !a.text().contains("secret"),
                "the cause leaked: {}",
                a.text()
            );
        } else {
            assert_eq!(body["message"], err.to_string());
        }
    }
}

fn create(body: impl Into<Body>, content_type: Option<&str>) -> Request<Body> {
    let mut b = authed("POST", "/api/v1/sessions");
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).unwrap()
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn json_rejections_keep_their_real_status() {
    let dir = TempDir::new("json");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    // 100 KiB of valid JSON: over the 64 KiB limit, so 413 (it would be a
    // 400 "title too long" if the limit were axum's default 2 MiB).
    let big = json!({"pipeline": "demo", "title": "x".repeat(100 * 1024)}).to_string();
    let with_length = authed("POST", "/api/v1/sessions")
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    // No Content-Length: the limit still holds while the body is read.
    let without_length = create(big, JSON);
    for req in [with_length, without_length] {
        let a = send(&app, req).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
        assert_eq!(a.json()["code"], "payload_too_large");
    }
    let cases = [
        (
            create(r#"{"pipeline":"demo","title":"T"}"#, None),
            415,
            "unsupported_media_type",
        ),
        (
            create(r#"{"pipeline":"demo","title":"T"}"#, Some("text/plain")),
            415,
            "unsupported_media_type",
        ),
        (
            create(r#"{"pipeline":"demo","title":"#, JSON),
            400,
            "bad_request",
        ),
        (create(r#"{"pipeline":"demo"}"#, JSON), 400, "bad_request"),
        (
            create(r#"{"pipeline":"demo","title":"T","x":1}"#, JSON),
            400,
            "bad_request",
        ),
        (
            create(r#"{"pipeline":5,"title":"T"}"#, JSON),
            400,
            "bad_request",
        ),
    ];
    for (req, status, code) in cases {
        let a = send(&app, req).await;
        assert_eq!(a.status.as_u16(), status, "{}", a.text());
        assert_eq!(a.json()["code"], code);
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn titles_and_courses_are_bounded_and_free_of_control_characters() {
    let dir = TempDir::new("text");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    let body = |title: &str, course: &str| {
        json!({"pipeline": "demo", "title": title, "course": course}).to_string()
    };
    let refused = [
        body("", ""),
        body("   ", ""),
        body(&"t".repeat(201), ""),
        body("T", &"c".repeat(201)),
        body("line\nforged log line", ""),
        body("carriage\rreturn", ""),
        body("escape\u{1b}[31m", ""),
        body("delete\u{7f}", ""),
        body("next line\u{85}", ""),
        body("nul\u{0}", ""),
        body("T", "tab\tcourse"),
        body("T", "course\n"),
    ];
    for b in refused {
        let a = send(&app, create(b.clone(), JSON)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(a.json()["code"], "bad_request");
    }
    assert!(fake.calls().is_empty());
    // Limits count characters, not bytes: 200 three-byte characters pass.
    let accepted = [
        body(&"é".repeat(200), &"日".repeat(200)),
        body("Acoustics — week 3", "PHY-201"),
    ];
    for b in accepted {
        let a = send(&app, create(b.clone(), JSON)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{b}: {}", a.text());
    }
}

#[tokio::test]
async fn a_slow_supervisor_call_times_out_with_a_json_504() {
    let dir = TempDir::new("timeout");
    let fake = Fake::new();
    *fake.delay.lock().unwrap() = Duration::from_secs(5);
    let mut cfg = common::config(dir.path());
    cfg.api_timeout = Duration::from_millis(200);
    let app = router(cfg, fake.clone());
    let t = Instant::now();
    let a = send(
        &app,
        authed("GET", "/api/v1/sessions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let took = t.elapsed();
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.json()["code"], "timeout");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    eprintln!("API timeout of 200 ms answered after {took:?}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let dir = TempDir::new("fallback");
    let fake = Fake::new();
    let app = app(&fake, dir.path());
    for uri in ["/nope", "/api/v1/nope", "/api/v2/sessions", "/live"] {
        let a = send(&app, get(uri)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(a.json()["code"], "not_found");
    }
    let a = send(
        &app,
        authed("DELETE", "/api/v1/sessions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.json()["code"], "method_not_allowed");
    assert!(a.header("allow").is_some_and(|v| v.contains("POST")));
    // Even the method is not revealed without the token.
    let a = send(&app, request("DELETE", "/api/v1/sessions", None, None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

fn health_app(fake: &Arc<Fake>, dir: &TempDir) -> axum::Router {
    let mut cfg = common::config(dir.path());
    cfg.health_timeout = Duration::from_millis(200);
    router(cfg, fake.clone())
}

#[tokio::test]
async fn healthz_reports_liveness_without_details() {
    let dir = TempDir::new("healthz");
    let fake = Fake::new();
    let app = health_app(&fake, &dir);
    let a = send(&app, get("/healthz")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "ok"}));
    assert_eq!(a.header("cache-control"), Some("no-store"));

    fake.health.lock().unwrap().live = false;
    let a = send(&app, get("/healthz")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json(), json!({"status": "unavailable"}));
    // Liveness never asks for the deep (disk) checks.
    let calls = fake.calls();
    assert!(calls.iter().all(|c| *c == "health"), "{calls:?}");
}

#[tokio::test]
async fn a_supervisor_that_does_not_answer_is_not_live() {
    let dir = TempDir::new("healthz-hang");
    let fake = Fake::new();
    *fake.health_hangs.lock().unwrap() = true;
    let app = health_app(&fake, &dir);
    for uri in ["/healthz", "/readyz"] {
        let t = Instant::now();
        let a = send(&app, get(uri)).await;
        let took = t.elapsed();
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(took < Duration::from_secs(2), "{uri} took {took:?}");
        eprintln!("{uri} with a hung supervisor (200 ms limit): 503 after {took:?}");
    }
    let a = send(&app, get("/readyz")).await;
    assert_eq!(
        a.json(),
        json!({"status": "not_ready", "reasons": ["the supervisor did not answer in time"]})
    );
}

#[tokio::test]
async fn readyz_reports_readiness_with_reasons() {
    let dir = TempDir::new("readyz");
    let fake = Fake::new();
    let app = health_app(&fake, &dir);
    let a = send(&app, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "ready"}));

    *fake.health.lock().unwrap() = Health {
        live: true,
        ready: false,
        reasons: vec![
            "disk nearly full".into(),
            "all 4 session slots in use".into(),
        ],
        sessions: 4,
        max_sessions: 4,
    };
    let a = send(&app, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.json(),
        json!({"status": "not_ready", "reasons": ["disk nearly full", "all 4 session slots in use"]})
    );
    assert_eq!(a.header("cache-control"), Some("no-store"));

    // Live is a precondition of ready, whatever `ready` says.
    *fake.health.lock().unwrap() = Health {
        live: false,
        ready: true,
        ..Health::default()
    };
    let a = send(&app, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["reasons"], json!(["the supervisor is not live"]));
    // Health never needed a token, and only health was asked, with the
    // deep checks (readiness).
    let calls = fake.calls();
    assert!(calls.iter().all(|c| *c == "health(deep)"), "{calls:?}");
}

fn playback_get(uri: &str, origin: &str) -> Request<Body> {
    Request::get(uri)
        .header("origin", origin)
        .body(Body::empty())
        .unwrap()
}

fn preflight(uri: &str, origin: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri(uri)
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .body(Body::empty())
        .unwrap()
}

fn with_playlist(dir: &TempDir) {
    let hls = dir.path().join("sessions/s1/hls");
    std::fs::create_dir_all(&hls).unwrap();
    std::fs::write(hls.join("master.m3u8"), "#EXTM3U\n").unwrap();
}

#[tokio::test]
async fn cors_follows_the_configured_origins() {
    let dir = TempDir::new("cors");
    with_playlist(&dir);
    let fake = Fake::new();
    let uri = "/live/s1/master.m3u8";

    // Default: any origin.
    let any = app(&fake, dir.path());
    let a = send(&any, playback_get(uri, "https://anyone.example")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    let exposed = a
        .header("access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    for h in ["content-length", "content-range", "etag", "accept-ranges"] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }

    // A list: allowed origins are echoed, others get no CORS headers.
    let mut cfg = common::config(dir.path());
    cfg.cors_origins = vec!["https://campus.example".into()];
    let listed = router(cfg, fake.clone());
    let a = send(&listed, playback_get(uri, "https://campus.example")).await;
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://campus.example")
    );
    let a = send(&listed, playback_get(uri, "https://evil.example")).await;
    assert_eq!(a.header("access-control-allow-origin"), None);

    // Preflight for a range request.
    let a = send(&listed, preflight(uri, "https://campus.example")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://campus.example")
    );
    assert!(a
        .header("access-control-allow-headers")
        .unwrap()
        .to_lowercase()
        .contains("range"));
    assert!(a
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    let a = send(&listed, preflight(uri, "https://evil.example")).await;
    assert_eq!(a.header("access-control-allow-origin"), None);
    let a = send(
        &any,
        preflight("/vod/s1/video/seg1.m4s", "https://x.example"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
}
