//! Built-in TLS for [`crate::serve`]: a certificate chain and key from PEM
//! files, rustls with the ring provider, ALPN `h2` then `http/1.1`.
//!
//! Loading checks everything that can be checked before the first client
//! comes: both files are read (with a size bound, so a path to `/dev/zero`
//! fails at once), the PEM parses, there is a certificate and a key, and
//! the key is the certificate's (rustls compares the public keys).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Largest certificate or key file read. A chain of a few certificates is
/// a few KiB; the bound only keeps a wrong path from being read forever.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// ALPN protocols offered, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why [`load_tls`] failed. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS {what} file {path} is larger than {limit} bytes")]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        limit: u64,
    },
    #[error("the TLS {what} file {path} is not valid PEM: {reason}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the TLS certificate file {path} holds no CERTIFICATE section")]
    NoCertificate { path: PathBuf },
    #[error(
        "the TLS key file {path} holds no private key \
         (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)"
    )]
    NoKey { path: PathBuf },
    #[error("the TLS key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the TLS certificate {cert} or key {key} cannot be used: {reason}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// A loaded certificate and key, ready for [`crate::ServeOptions::tls`].
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl TlsConfig {
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

// rustls's config has no `Debug` worth printing (and holds the key).
impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &"h2, http/1.1")
            .finish_non_exhaustive()
    }
}

/// Loads a PEM certificate chain (end-entity certificate first) and its
/// private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_tls(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
    let cert_pem = read_bounded("certificate", cert)?;
    let key_pem = read_bounded("key", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem("certificate", cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let private = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey { path: key.into() })
        }
        Err(e) => return Err(bad_pem("key", key, e)),
    };
    // Explicitly ring: the process-wide default provider would panic if
    // another crate in the build enabled a second one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: cert.into(),
                    key: key.into(),
                }
            }
            other => TlsError::Unusable {
                cert: cert.into(),
                key: key.into(),
                reason: other.to_string(),
            },
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(TlsConfig {
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

fn bad_pem(what: &'static str, path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    use rustls::pki_types::pem::Error as Pem;
    // These two carry bytes, which their `Display` prints as numbers.
    let reason = match e {
        Pem::MissingSectionEnd { end_marker } => format!(
            "no \"-----END {}-----\" line",
            String::from_utf8_lossy(&end_marker)
        ),
        Pem::IllegalSectionStart { line } => format!(
            "malformed BEGIN line \"{}\"",
            String::from_utf8_lossy(&line).escape_debug()
        ),
        other => other.to_string(),
    };
    TlsError::BadPem {
        what,
        path: path.into(),
        reason,
    }
}

fn read_bounded(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read {
        what,
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            what,
            path: path.into(),
            limit: MAX_PEM_BYTES,
        });
    }
    Ok(bytes)
}
