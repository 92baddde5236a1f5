//! The control token: parsing `Authorization` and comparing tokens.
//!
//! Tokens are never compared directly. Both the configured and the presented
//! token go through HMAC-SHA256 under a key drawn when the router is built,
//! and the two 32-byte digests are compared with `subtle`'s constant-time
//! equality. A direct comparison has to look at lengths first, which tells
//! a timing attacker how long the token is; digests always have the same
//! length, and the random key keeps an attacker from choosing inputs whose
//! digests share a prefix with the real one.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::ApiError;
use crate::AppState;

type HmacSha256 = Hmac<Sha256>;

/// The configured token, kept only as its keyed digest.
pub(crate) struct TokenCheck {
    /// Keyed with the per-process key; cloned for every comparison.
    mac: HmacSha256,
    /// `None` when no token is configured: then nothing matches, not even
    /// an empty token.
    expected: Option<[u8; 32]>,
}

impl TokenCheck {
    pub(crate) fn new(configured: &str) -> Self {
        let mac = keyed_mac(&random_key());
        let expected = (!configured.is_empty()).then(|| digest(&mac, configured));
        TokenCheck { mac, expected }
    }

    /// Whether `presented` is the configured token, in time independent of
    /// both tokens' contents and lengths (apart from hashing `presented`).
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let Some(expected) = &self.expected else {
            return false;
        };
        digest(&self.mac, presented).ct_eq(expected).into()
    }

    /// The request carries `Authorization: Bearer <the token>`.
    pub(crate) fn header_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .is_some_and(|t| self.matches(t))
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

fn digest(mac: &HmacSha256, token: &str) -> [u8; 32] {
    let mut mac = mac.clone();
    mac.update(token.as_bytes());
    mac.finalize().into_bytes().into()
}

/// HMAC pads a key shorter than the hash's 64-byte block with zeros; doing
/// it here gives the same MAC as `new_from_slice` without its (never taken)
/// error path.
fn keyed_mac(key: &[u8; 32]) -> HmacSha256 {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    HmacSha256::new(&block.into())
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut key) {
        // Practically unreachable on Linux. The comparison stays fixed-length
        // and constant-time with a guessable key; only the hardening against
        // chosen digests is weaker, so degrade rather than refuse to start.
        tracing::error!(error = %e, "no OS randomness for the token key; using a weaker key");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(now.as_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update((&key as *const _ as usize).to_le_bytes());
        key = h.finalize().into();
    }
    key
}

/// Middleware on the control routes: 401 before the handler (and so the
/// supervisor) is reached.
pub async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !st.0.tokens.header_ok(req.headers()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = "0123456789abcdef-token";
        let check = TokenCheck::new(token);
        assert!(check.matches(token));
        // Every prefix, every extension and every single-byte change.
        for n in 0..token.len() {
            assert!(!check.matches(&token[..n]), "prefix {n}");
        }
        assert!(!check.matches(&format!("{token}x")));
        assert!(!check.matches(&format!("{token}{token}")));
        for i in 0..token.len() {
            let mut b = token.as_bytes().to_vec();
            b[i] ^= 1;
            let changed = String::from_utf8(b).unwrap();
            assert!(!check.matches(&changed), "byte {i} changed");
        }
    }

    #[test]
    fn an_empty_configured_token_admits_nobody() {
        let check = TokenCheck::new("");
        assert!(!check.matches(""));
        assert!(!check.matches("anything"));
    }

    #[test]
    fn keys_differ_between_checks() {
        // Two routers never share a key (the key is random, not constant).
        let a = TokenCheck::new("t");
        let b = TokenCheck::new("t");
        assert_ne!(a.expected, b.expected);
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
