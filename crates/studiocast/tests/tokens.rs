//! Scoped tokens through the binary: `studiocast token new` prints a
//! secret and the `[[auth.token]]` block; a daemon configured with it
//! admits the secret for its scopes only (403 naming the missing one),
//! audits its control actions under its name, and a bad block stops the
//! daemon from starting, naming the key.

mod support;

use std::process::Command;

use support::*;

fn token_new(name: &str, scopes: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_studiocast"))
        .args(["token", "new", "--name", name, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (secret, block) = text.split_once('\n').unwrap();
    assert!(
        secret.starts_with("sct_") && !secret.contains(' '),
        "{text}"
    );
    assert!(
        block.starts_with("[[auth.token]]") && !block.contains(secret),
        "{text}"
    );
    (secret.to_string(), block.to_string())
}

fn with_token(d: &Daemon, token: &str, method: &str, path: &str, body: Option<&str>) -> Response {
    let auth = format!("Bearer {token}");
    let mut h = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        h.push(("Content-Type", "application/json"));
    }
    request(&d.addr, method, path, &h, body.unwrap_or("").as_bytes())
}

#[test]
fn a_made_token_works_for_its_scopes_only_and_is_audited() {
    let (tech, tech_block) = token_new("tech-desk", "sessions,read");
    let (scrape, scrape_block) = token_new("prometheus", "metrics");
    let dir = tmpdir("tokens");
    let d = Daemon::start_configured(
        &dir.join("data"),
        &repo().join("pipelines"),
        &[],
        None,
        Some(&format!("{tech_block}\n{scrape_block}")),
    );
    assert_eq!(
        with_token(&d, &tech, "GET", "/api/v1/sessions", None).status,
        200
    );
    let r = with_token(&d, &tech, "GET", "/api/v1/jobs", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = with_token(&d, &tech, "POST", "/api/v1/jobs", Some("{}"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("'jobs'"), "{}", r.text());
    let r = with_token(&d, &scrape, "GET", "/api/v1/sessions", None);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("'read'"), "{}", r.text());
    assert_eq!(
        with_token(&d, "sct_not-a-token", "GET", "/api/v1/sessions", None).status,
        401
    );
    // A control action under the token's name.
    let r = with_token(
        &d,
        &tech,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"demo","title":"Audit"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = with_token(
        &d,
        &tech,
        "POST",
        &format!("/api/v1/sessions/{id}/stop"),
        None,
    );
    assert!(r.status < 300, "{}", r.text());
    let audit = with_token(&d, &tech, "GET", "/api/v1/audit", None).json();
    let e = audit["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2, "{audit}");
    assert_eq!(e[0]["action"], "session.stop");
    assert_eq!(e[1]["action"], "session.start");
    for x in e {
        assert_eq!(x["token"], "tech-desk");
        assert_eq!(x["target"], id.as_str());
    }
    d.terminate();
    let trail = std::fs::read_to_string(dir.join("data/audit.jsonl")).unwrap();
    assert_eq!(trail.lines().count(), 2, "{trail}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_token_block_stops_the_start_naming_the_key() {
    let dir = tmpdir("tokens-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[auth.token]]\nname = \"x\"\nhash = \"sha256:{}\"\nscopes = [\"admin\"]\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_studiocast"))
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[[auth.token]]") && err.contains("admin"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
