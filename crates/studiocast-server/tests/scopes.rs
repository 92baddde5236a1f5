//! Scoped tokens: every route behind a token, with a token of each scope
//! (and none): 401 without a known token, 403 naming the scope a token
//! lacks, admitted otherwise; and the audit trail of control actions.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{send, Fake, TempDir, TOKEN};
use studiocast_server::{router, Scope, TokenSpec, ROUTES};

/// The README's table, written out here (not read from the code's list,
/// which it checks).
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/sessions", "read"),
    ("POST", "/api/v1/sessions", "sessions"),
    ("GET", "/api/v1/sessions/{id}", "read"),
    ("POST", "/api/v1/sessions/{id}/stop", "sessions"),
    ("POST", "/api/v1/sessions/{id}/playback-token", "sessions"),
    ("GET", "/api/v1/sessions/{id}/meters", "read"),
    ("GET", "/api/v1/devices", "read"),
    ("GET", "/api/v1/presets", "read"),
    ("GET", "/api/v1/retention", "read"),
    ("PUT", "/api/v1/sessions/{id}/pin", "sessions"),
    ("DELETE", "/api/v1/sessions/{id}/pin", "sessions"),
    ("GET", "/api/v1/jobs", "read"),
    ("POST", "/api/v1/jobs", "jobs"),
    ("GET", "/api/v1/jobs/{id}", "read"),
    ("DELETE", "/api/v1/jobs/{id}", "jobs"),
    ("POST", "/api/v1/jobs/{id}/playback-token", "jobs"),
    ("GET", "/api/v1/audit", "read"),
    ("GET", "/api/v1/events", "read"),
    ("GET", "/metrics", "metrics"),
];

/// One token per scope, named after it, and one with no scope at all.
fn tokens() -> Vec<TokenSpec> {
    let mut v: Vec<TokenSpec> = Scope::ALL
        .iter()
        .map(|s| {
            TokenSpec::from_secret(s.name(), &format!("{}-secret-0123456789", s.name()), &[*s])
        })
        .collect();
    v.push(TokenSpec {
        name: "nothing".into(),
        sha256: TokenSpec::parse_hash(&TokenSpec::hash_text("nothing-secret-0123456789")).unwrap(),
        scopes: vec![],
    });
    v
}

fn request(method: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let uri = path.replace("{id}", "s1");
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = match (method, path) {
        ("POST", "/api/v1/sessions") => r#"{"pipeline":"demo","title":"T"}"#,
        ("POST", "/api/v1/jobs") => r#"{"source":{"import":"x.wav"},"preset":"lesson"}"#,
        _ => "",
    };
    if body.is_empty() {
        b.body(Body::empty()).unwrap()
    } else {
        b.header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    }
}

#[tokio::test]
async fn each_route_with_each_scope() {
    let dir = TempDir::new("scopes");
    let fake = Fake::new();
    let mut cfg = common::config(dir.path());
    cfg.tokens = tokens();
    let app = router(cfg, fake.clone());
    assert_eq!(ROUTES.len(), EXPECTED.len());
    for (method, path, need) in EXPECTED {
        let need = &Scope::parse(need).unwrap();
        assert!(
            ROUTES
                .iter()
                .any(|(m, p, s, _)| m == method && p == path && s == need),
            "{method} {path} is not in the code's table with '{need}'"
        );
        let a = send(&app, request(method, path, None)).await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: no token"
        );
        for s in Scope::ALL {
            let secret = format!("{}-secret-0123456789", s.name());
            let a = send(&app, request(method, path, Some(&secret))).await;
            if s == *need {
                assert!(
                    a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
                    "{method} {path} with '{s}': {}",
                    a.status
                );
            } else {
                assert_eq!(
                    a.status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} with '{s}'"
                );
                let j = a.json();
                assert_eq!(j["code"], "forbidden");
                assert!(
                    j["message"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("'{need}'")),
                    "{method} {path}: {j}"
                );
            }
        }
        let a = send(
            &app,
            request(method, path, Some("nothing-secret-0123456789")),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {path}: no scope");
        // The single api_token has every scope.
        let a = send(&app, request(method, path, Some(TOKEN))).await;
        assert!(
            a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
            "{method} {path} with api_token: {}",
            a.status
        );
    }
}

#[tokio::test]
async fn control_actions_are_audited_with_the_tokens_name() {
    let dir = TempDir::new("audit");
    let fake = Fake::new();
    let mut cfg = common::config(dir.path());
    cfg.tokens = tokens();
    let app = router(cfg, fake.clone());
    let start = send(
        &app,
        request(
            "POST",
            "/api/v1/sessions",
            Some("sessions-secret-0123456789"),
        ),
    )
    .await;
    assert_eq!(start.status, StatusCode::CREATED);
    let id = start.json()["id"].as_str().unwrap().to_string();
    let stop = send(
        &app,
        request("POST", "/api/v1/sessions/{id}/stop", Some(TOKEN)),
    )
    .await;
    // A refused action (no scope) is not an action: 403 before the trail.
    send(
        &app,
        request(
            "POST",
            "/api/v1/sessions/{id}/stop",
            Some("read-secret-0123456789"),
        ),
    )
    .await;
    // Reads are not control actions.
    send(
        &app,
        request("GET", "/api/v1/sessions", Some("read-secret-0123456789")),
    )
    .await;
    let page = send(
        &app,
        request(
            "GET",
            "/api/v1/audit?limit=10",
            Some("read-secret-0123456789"),
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let j = page.json();
    let e = j["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2, "{j}");
    assert_eq!(e[0]["action"], "session.stop");
    assert_eq!(e[0]["token"], "api_token");
    assert_eq!(e[0]["target"], "s1");
    assert_eq!(e[0]["status"], stop.status.as_u16());
    assert_eq!(e[1]["action"], "session.start");
    assert_eq!(e[1]["token"], "sessions");
    assert_eq!(e[1]["target"], id.as_str());
    assert_eq!(e[1]["status"], 201);
    assert!(e[1]["at"].as_str().unwrap().ends_with('Z'));
    // Pages: one at a time, then the cursor runs out.
    let p1 = send(&app, request("GET", "/api/v1/audit?limit=1", Some(TOKEN)))
        .await
        .json();
    assert_eq!(p1["entries"].as_array().unwrap().len(), 1);
    let next = p1["next"].as_u64().unwrap();
    let p2 = send(
        &app,
        request(
            "GET",
            &format!("/api/v1/audit?limit=1&before={next}"),
            Some(TOKEN),
        ),
    )
    .await
    .json();
    assert_eq!(p2["entries"][0]["action"], "session.start");
    assert!(p2["next"].is_null(), "{p2}");
    // Out of the documented range is refused, not clamped.
    for q in [
        "limit=x",
        "limit=0",
        "limit=501",
        "before=-1",
        "before=9223372036854775808",
    ] {
        let bad = send(
            &app,
            request("GET", &format!("/api/v1/audit?{q}"), Some(TOKEN)),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{q}");
    }
    // On disk, for the next start.
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

/// HEAD runs the GET handler (axum answers it from GET's route): it needs
/// GET's scope, not none.
#[tokio::test]
async fn head_needs_the_scope_of_get() {
    let dir = TempDir::new("scopes-head");
    let fake = Fake::new();
    let mut cfg = common::config(dir.path());
    cfg.tokens = tokens();
    let app = router(cfg, fake.clone());
    for (_, path, need) in EXPECTED.iter().filter(|(m, _, _)| *m == "GET") {
        for s in Scope::ALL.iter().filter(|s| s.name() != *need) {
            let secret = format!("{}-secret-0123456789", s.name());
            let a = send(&app, request("HEAD", path, Some(&secret))).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "HEAD {path} with '{s}'");
        }
        let secret = format!("{need}-secret-0123456789");
        let a = send(&app, request("HEAD", path, Some(&secret))).await;
        assert_ne!(a.status, StatusCode::FORBIDDEN, "HEAD {path} with '{need}'");
    }
}

/// A client that hangs up while its start is being handled: the session
/// starts all the same, so the trail records it (the request's future,
/// dropped with the connection, used to take the record with it).
#[tokio::test]
async fn an_action_whose_client_hung_up_is_still_audited() {
    let dir = TempDir::new("audit-hangup");
    let fake = Fake::new();
    *fake.delay.lock().unwrap() = std::time::Duration::from_millis(300);
    let mut cfg = common::config(dir.path());
    cfg.tokens = tokens();
    let app = router(cfg, fake.clone());
    let start = request(
        "POST",
        "/api/v1/sessions",
        Some("sessions-secret-0123456789"),
    );
    let gone = tokio::time::timeout(std::time::Duration::from_millis(50), send(&app, start)).await;
    assert!(gone.is_err(), "the start should still be running");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let page = send(&app, request("GET", "/api/v1/audit", Some(TOKEN)))
        .await
        .json();
    let e = page["entries"].as_array().unwrap();
    assert_eq!(e.len(), 1, "{page}");
    assert_eq!(e[0]["action"], "session.start");
    assert_eq!(e[0]["token"], "sessions");
    assert_eq!(e[0]["status"], 201);
}
