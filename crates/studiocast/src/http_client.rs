//! A small HTTP/1.1 client on hyper and tokio-rustls, for the two places
//! the daemon's side speaks first: job-end webhooks and the `jobs` CLI.
//! https is checked against the machine's roots (`/etc/ssl/certs`, or
//! `SSL_CERT_FILE`); one request per connection, redirects not followed.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::http::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest answer body read.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL itself is not repeated: it may carry a token.
    #[error("bad URL: {1}")]
    Url(String, String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("reading {0}: {1}")]
    File(PathBuf, std::io::Error),
}

/// What a request carries.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// `head`, the file's bytes, `tail`, streamed (a multipart upload).
    File {
        head: Vec<u8>,
        path: PathBuf,
        tail: Vec<u8>,
    },
}

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct Client {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client { tls: connector() }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Answer, HttpError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url(url.into(), e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(HttpError::Url(url.into(), "not http(s)".into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| HttpError::Url(url.into(), "no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // Host and port only: never the URL's user:password@.
        let authority = match uri.port_u16() {
            Some(p) if host.contains(':') => format!("[{host}]:{p}"),
            Some(p) => format!("{host}:{p}"),
            None if host.contains(':') => format!("[{host}]"),
            None => host.clone(),
        };
        let (body, length) = body_of(body).await?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header("host", authority)
            .header(
                "user-agent",
                concat!("studiocast/", env!("CARGO_PKG_VERSION")),
            )
            .header("content-length", length.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body).map_err(|e| HttpError::Http(e.to_string()))?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(format!("{host}:{port}"), e))?;
        if https {
            let tls = self
                .tls
                .as_ref()
                .ok_or_else(|| HttpError::Tls(host.clone(), "no trusted roots here".into()))?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| HttpError::Tls(host.clone(), e.to_string()))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(host.clone(), e.to_string()))?;
            exchange(TokioIo::new(stream), req).await
        } else {
            exchange(TokioIo::new(tcp), req).await
        }
    }
}

type ReqBody = BoxBody<Bytes, std::io::Error>;

async fn body_of(body: Body) -> Result<(ReqBody, u64), HttpError> {
    Ok(match body {
        Body::Empty => (Full::new(Bytes::new()).map_err(|e| match e {}).boxed(), 0),
        Body::Bytes(b) => {
            let n = b.len() as u64;
            (Full::new(Bytes::from(b)).map_err(|e| match e {}).boxed(), n)
        }
        Body::File { head, path, tail } => {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| HttpError::File(path.clone(), e))?;
            let len = file
                .metadata()
                .await
                .map_err(|e| HttpError::File(path.clone(), e))?
                .len();
            let n = head.len() as u64 + len + tail.len() as u64;
            let reader = std::io::Cursor::new(head)
                .chain(file)
                .chain(std::io::Cursor::new(tail));
            let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024);
            let frames = futures_util::TryStreamExt::map_ok(stream, Frame::data);
            (BodyExt::boxed(StreamBody::new(frames)), n)
        }
    })
}

async fn exchange<I>(io: I, req: Request<ReqBody>) -> Result<Answer, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| HttpError::Http(e.to_string()))?;
        let status = res.status().as_u16();
        let limited = http_body_util::Limited::new(res.into_body(), MAX_ANSWER);
        let body = limited
            .collect()
            .await
            .map_err(|e| HttpError::Http(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(Answer { status, body })
    }
    .await;
    driver.abort();
    result
}

/// The machine's trusted roots; `None` when there are none.
fn connector() -> Option<tokio_rustls::TlsConnector> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(%e, "a trusted root could not be read");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
