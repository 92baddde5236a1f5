//! Control tokens: parsing `Authorization`, telling which configured
//! token a request carries, and what it may do (its scopes).
//!
//! Every configured token is kept only as the SHA-256 of its secret (the
//! config's `[[auth.token]] hash`; the single `api_token` is hashed when
//! the router is built). A presented token is hashed and compared with
//! every configured hash by `subtle`'s constant-time equality, without
//! stopping at a match: the time says neither which token matched nor how
//! much of one. Digests are all 32 bytes, so lengths leak nothing either.
//! Tokens are long random strings (`studiocast token new`), for which a
//! fast hash is enough: there is nothing to guess a dictionary from.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::ApiError;
use crate::AppState;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Start and stop sessions, mint their playback links.
    Sessions,
    /// Submit and cancel jobs, mint their playback links.
    Jobs,
    /// Read sessions, devices, jobs, meters and the audit trail.
    Read,
    /// Scrape `/metrics`.
    Metrics,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Sessions, Scope::Jobs, Scope::Read, Scope::Metrics];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Sessions => "sessions",
            Scope::Jobs => "jobs",
            Scope::Read => "read",
            Scope::Metrics => "metrics",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.name() == s)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every route behind a token, the scope it needs, and for a control
/// action the name the audit trail gives it. The middleware, the tests and
/// the README's table all read this one list.
pub const ROUTES: &[(&str, &str, Scope, Option<&str>)] = &[
    ("GET", "/api/v1/sessions", Scope::Read, None),
    (
        "POST",
        "/api/v1/sessions",
        Scope::Sessions,
        Some("session.start"),
    ),
    ("GET", "/api/v1/sessions/{id}", Scope::Read, None),
    (
        "POST",
        "/api/v1/sessions/{id}/stop",
        Scope::Sessions,
        Some("session.stop"),
    ),
    (
        "POST",
        "/api/v1/sessions/{id}/playback-token",
        Scope::Sessions,
        Some("session.playback_token"),
    ),
    ("GET", "/api/v1/sessions/{id}/meters", Scope::Read, None),
    ("GET", "/api/v1/devices", Scope::Read, None),
    ("GET", "/api/v1/presets", Scope::Read, None),
    ("GET", "/api/v1/retention", Scope::Read, None),
    (
        "PUT",
        "/api/v1/sessions/{id}/pin",
        Scope::Sessions,
        Some("session.pin"),
    ),
    (
        "DELETE",
        "/api/v1/sessions/{id}/pin",
        Scope::Sessions,
        Some("session.unpin"),
    ),
    ("GET", "/api/v1/jobs", Scope::Read, None),
    ("POST", "/api/v1/jobs", Scope::Jobs, Some("job.submit")),
    ("GET", "/api/v1/jobs/{id}", Scope::Read, None),
    (
        "DELETE",
        "/api/v1/jobs/{id}",
        Scope::Jobs,
        Some("job.cancel"),
    ),
    (
        "POST",
        "/api/v1/jobs/{id}/playback-token",
        Scope::Jobs,
        Some("job.playback_token"),
    ),
    ("GET", "/api/v1/audit", Scope::Read, None),
    ("GET", "/api/v1/events", Scope::Read, None),
    ("GET", "/metrics", Scope::Metrics, None),
];

/// The scope and audit name of `method` on the route `path` (as the
/// router matched it: `/api/v1/jobs/{id}`).
pub fn route_scope(method: &Method, path: &str) -> Option<(Scope, Option<&'static str>)> {
    ROUTES
        .iter()
        .find(|(m, p, _, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, s, a)| (*s, *a))
}

/// A configured token.
#[derive(Clone)]
pub struct TokenSpec {
    /// Who it belongs to, for the audit trail ("console", "campus-sync").
    pub name: String,
    /// SHA-256 of the secret.
    pub sha256: [u8; 32],
    pub scopes: Vec<Scope>,
}

impl TokenSpec {
    /// The spec of a secret held in clear (the single `api_token`).
    pub fn from_secret(name: &str, secret: &str, scopes: &[Scope]) -> Self {
        TokenSpec {
            name: name.to_string(),
            sha256: Sha256::digest(secret.as_bytes()).into(),
            scopes: scopes.to_vec(),
        }
    }

    /// `sha256:` and 64 hex digits, as the config stores a token.
    pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
        let hex = text.strip_prefix("sha256:")?;
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *o = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(out)
    }

    /// The config's form of a secret's hash.
    pub fn hash_text(secret: &str) -> String {
        let d: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

// By hand: the hash stays out of logs too.
impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Who made a request: put in its extensions once its token is known.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: Arc<str>,
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn may(&self, s: Scope) -> bool {
        self.scopes.contains(&s)
    }
}

/// The configured tokens.
pub(crate) struct Tokens {
    entries: Vec<(Arc<str>, [u8; 32], Vec<Scope>)>,
}

impl Tokens {
    /// `api_token` (when set) is a token named "api_token" with every scope.
    pub(crate) fn new(api_token: &str, specs: &[TokenSpec]) -> Self {
        let mut entries: Vec<(Arc<str>, [u8; 32], Vec<Scope>)> = specs
            .iter()
            .map(|t| (Arc::from(t.name.as_str()), t.sha256, t.scopes.clone()))
            .collect();
        if !api_token.is_empty() {
            let t = TokenSpec::from_secret("api_token", api_token, &Scope::ALL);
            entries.push((Arc::from("api_token"), t.sha256, t.scopes));
        }
        Tokens { entries }
    }

    /// The caller whose token `presented` is, comparing with every
    /// configured token in constant time.
    pub(crate) fn identify(&self, presented: &str) -> Option<Caller> {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (i, (_, h, _)) in self.entries.iter().enumerate() {
            if bool::from(d.ct_eq(h)) {
                found = Some(i);
            }
        }
        found.map(|i| {
            let (name, _, scopes) = &self.entries[i];
            Caller {
                name: name.clone(),
                scopes: scopes.clone(),
            }
        })
    }

    /// The caller named by `Authorization: Bearer <token>`.
    pub(crate) fn caller_of(&self, headers: &HeaderMap) -> Option<Caller> {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .and_then(|t| self.identify(t))
    }
}

/// The token of a `Bearer` credential. RFC 7235 makes the scheme
/// case-insensitive and separates it from the token by one or more spaces.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(|c| c == ' ' || c == '\t');
    (!token.is_empty()).then_some(token)
}

/// Middleware on the control routes: 401 without a known token, 403 when
/// it lacks the route's scope (named), both before the handler (and so the
/// supervisor) is reached. A method the table does not list is refused
/// with 405 here, so a handler added to the router but not to [`ROUTES`]
/// is never reachable by any token. A control action is written to the
/// audit trail with the token's name, its target and the answer's status.
pub async fn require_token(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(caller) = st.0.tokens.caller_of(req.headers()) else {
        return Err(ApiError::Unauthorized);
    };
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    // HEAD runs the GET handler: it needs GET's scope.
    let method = if req.method() == Method::HEAD {
        &Method::GET
    } else {
        req.method()
    };
    let route = matched.as_deref().and_then(|p| route_scope(method, p));
    let Some((scope, action)) = route else {
        return Ok(method_not_allowed(matched.as_deref()));
    };
    if !caller.may(scope) {
        return Err(ApiError::Forbidden(scope));
    }
    req.extensions_mut().insert(caller.clone());
    let Some(action) = action else {
        return Ok(next.run(req).await);
    };
    // A streamed upload stays in the connection's task: run in a task of
    // its own, its form's metering (see `upload.rs`) saw the body read
    // far ahead of the parser and refused it. A client that hangs up
    // mid-upload leaves no job, so nothing is left out of the trail.
    let streamed = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/"));
    if streamed {
        return Ok(run_audited(st, caller, action, req, next).await);
    }
    // Any other control action runs to its end and is audited even when
    // the client hangs up meanwhile (dropping the request's future would
    // skip the record of a session that did start).
    tokio::spawn(run_audited(st, caller, action, req, next))
        .await
        .map_err(|_| ApiError::Internal)
}

/// Run the handler, then write the action to the audit trail (off the
/// async workers: the file append is blocking I/O).
async fn run_audited(
    st: AppState,
    caller: Caller,
    action: &'static str,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let target = res
        .extensions()
        .get::<crate::audit::Target>()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| crate::audit::target_of(&path));
    let status = res.status().as_u16();
    let _ = tokio::task::spawn_blocking(move || {
        st.0.audit.record(&caller.name, action, &target, status);
    })
    .await;
    res
}

/// 405 with `Allow`: the methods the table lists for the route.
fn method_not_allowed(path: Option<&str>) -> Response {
    use axum::response::IntoResponse;
    let mut allow: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, p, _, _)| Some(*p) == path)
        .map(|(m, _, _, _)| *m)
        .collect();
    if allow.contains(&"GET") {
        allow.push("HEAD");
    }
    let mut res = ApiError::MethodNotAllowed.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&allow.join(",")) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(
            "0123456789abcdef-token",
            &[
                TokenSpec::from_secret("console", "console-secret", &[Scope::Read]),
                TokenSpec {
                    name: "sync".into(),
                    sha256: TokenSpec::parse_hash(&TokenSpec::hash_text("sync-secret")).unwrap(),
                    scopes: vec![Scope::Jobs, Scope::Read],
                },
            ],
        )
    }

    #[test]
    fn only_the_exact_token_matches() {
        let t = tokens();
        let token = "0123456789abcdef-token";
        let c = t.identify(token).unwrap();
        assert_eq!(&*c.name, "api_token");
        assert!(Scope::ALL.iter().all(|s| c.may(*s)));
        // Every prefix, every extension and every single-byte change.
        for n in 0..token.len() {
            assert!(t.identify(&token[..n]).is_none(), "prefix {n}");
        }
        assert!(t.identify(&format!("{token}x")).is_none());
        for i in 0..token.len() {
            let mut b = token.as_bytes().to_vec();
            b[i] ^= 1;
            let changed = String::from_utf8(b).unwrap();
            assert!(t.identify(&changed).is_none(), "byte {i} changed");
        }
    }

    #[test]
    fn each_token_has_its_name_and_scopes() {
        let t = tokens();
        let c = t.identify("console-secret").unwrap();
        assert_eq!(&*c.name, "console");
        assert!(c.may(Scope::Read) && !c.may(Scope::Sessions) && !c.may(Scope::Metrics));
        let s = t.identify("sync-secret").unwrap();
        assert_eq!(&*s.name, "sync");
        assert!(s.may(Scope::Jobs) && !s.may(Scope::Sessions));
        // A hash is not a token.
        assert!(t.identify(&TokenSpec::hash_text("sync-secret")).is_none());
    }

    #[test]
    fn an_empty_configured_token_admits_nobody() {
        let t = Tokens::new("", &[]);
        assert!(t.identify("").is_none());
        assert!(t.identify("anything").is_none());
    }

    #[test]
    fn hashes_parse_only_in_the_config_form() {
        let h = TokenSpec::hash_text("x");
        assert!(h.starts_with("sha256:") && h.len() == 7 + 64);
        assert!(TokenSpec::parse_hash(&h).is_some());
        assert!(TokenSpec::parse_hash(&h.to_uppercase().replace("SHA256", "sha256")).is_some());
        for bad in [
            "",
            "sha256:",
            "md5:00",
            &h[..h.len() - 1],
            &format!("{h}0"),
            &h.replace('a', "g"),
        ] {
            if bad.contains('g') || bad.len() != h.len() || !bad.starts_with("sha256:") {
                assert!(TokenSpec::parse_hash(bad).is_none(), "{bad}");
            }
        }
        assert!(TokenSpec::parse_hash(
            "sha256:zz00000000000000000000000000000000000000000000000000000000000000"
        )
        .is_none());
    }

    #[test]
    fn every_route_has_one_scope() {
        for (m, p, _, _) in ROUTES {
            let n = ROUTES
                .iter()
                .filter(|(m2, p2, _, _)| m2 == m && p2 == p)
                .count();
            assert_eq!(n, 1, "{m} {p}");
        }
        assert_eq!(
            route_scope(&Method::POST, "/api/v1/sessions"),
            Some((Scope::Sessions, Some("session.start")))
        );
        assert_eq!(route_scope(&Method::GET, "/api/v1/nope"), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_with_any_spaces() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("BeArEr    abc"), Some("abc"));
        assert_eq!(bearer("Bearer abc  "), Some("abc"));
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer    "), None);
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
        assert_eq!(bearer("Token abc"), None);
        assert_eq!(bearer(""), None);
    }
}
