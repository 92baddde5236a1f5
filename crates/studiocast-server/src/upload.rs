//! `POST /api/v1/jobs` with `multipart/form-data`: a recording uploaded
//! beside its spec. The file streams to disk (never into memory) under a
//! size limit the queue sets, and is handed to the queue once complete.
//!
//! Fields: `spec` (the JSON spec, at most [`MAX_SPEC`] bytes) and `file`
//! (the media, with its file name); any other field is 400. A declared
//! `Content-Length` over the limit is refused before a byte is read; a body
//! that grows past it is cut off there and its partial file removed. A
//! client that sends nothing for [`IDLE`] is dropped the same way, so a
//! stalled upload cannot hold a file and a connection for ever.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use axum::body::Body;
use axum::http::HeaderMap;
use tokio::io::AsyncWriteExt;

use crate::api::ApiError;
use crate::{JobControl, JobInfo};

/// Longest wait for the next piece of the body.
pub const IDLE: Duration = Duration::from_secs(30);
/// Largest `spec` field.
pub const MAX_SPEC: u64 = 64 * 1024;
/// Most of the body held in memory at once: what the parser has read but
/// not handed out as a field's bytes (a preamble, a part's headers). Its
/// own limits apply to whole fields, not to this.
pub const MAX_BUFFERED: u64 = 1 << 20;

/// The body, counting what the parser takes from it; it fails once the
/// parser holds more than [`MAX_BUFFERED`] that no field has handed out.
struct Metered<S> {
    inner: S,
    received: u64,
    consumed: Arc<AtomicU64>,
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let held = self
            .received
            .saturating_sub(self.consumed.load(Ordering::Relaxed));
        if held > MAX_BUFFERED {
            return Poll::Ready(Some(Err(std::io::Error::other(format!(
                "over {} KiB of form headers or preamble",
                MAX_BUFFERED / 1024
            )))));
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.received += b.len() as u64;
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Where an upload may go, from the queue.
#[derive(Debug, Clone)]
pub struct UploadTarget {
    /// A fresh file path (its folder exists).
    pub path: PathBuf,
    /// The most it may hold: the configured limit, less when the disk is
    /// short; the declared length when there is one.
    pub max_bytes: u64,
    /// Disk space held for it until [`JobControl::upload_finished`].
    pub reserved: u64,
}

/// Gives the upload's disk reservation back however the request ends.
struct Held<'a> {
    jobs: &'a dyn JobControl,
    target: UploadTarget,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.jobs.upload_finished(&self.target);
    }
}

/// A complete upload, handed to the queue.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub path: PathBuf,
    /// The client's file name (untrusted: only for the record).
    pub file_name: String,
    pub bytes: u64,
}

/// Removes the partial file unless the upload completed.
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Removing gigabytes blocks: off the async workers when on one.
        let path = std::mem::take(&mut self.path);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(move || std::fs::remove_file(path))),
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

/// Reads the multipart body and queues the job.
pub async fn receive(
    jobs: &dyn JobControl,
    headers: &HeaderMap,
    body: Body,
) -> Result<JobInfo, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| bad(format!("multipart/form-data without a boundary: {e}")))?;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refused before the body is read: over the limit, or no room.
    let target = jobs.upload_target(declared).await?;
    let held = Held {
        jobs,
        target: target.clone(),
    };
    let mut partial = Partial {
        path: target.path.clone(),
        keep: false,
    };
    let consumed = Arc::new(AtomicU64::new(0));
    let metered = Metered {
        inner: body.into_data_stream(),
        received: 0,
        consumed: consumed.clone(),
    };
    let whole = target.max_bytes + MAX_SPEC + MAX_BUFFERED;
    let limits =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(whole));
    let mut form = multer::Multipart::with_constraints(metered, boundary, limits);
    let mut spec: Option<serde_json::Value> = None;
    let mut file: Option<(String, u64)> = None;
    while let Some(mut field) = idle(form.next_field()).await? {
        match field.name() {
            Some("spec") if spec.is_none() => {
                let mut text = Vec::new();
                while let Some(chunk) = idle(field.chunk()).await? {
                    consumed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if (text.len() + chunk.len()) as u64 > MAX_SPEC {
                        return Err(ApiError::PayloadTooLarge(format!(
                            "the spec field is over {} KiB",
                            MAX_SPEC / 1024
                        )));
                    }
                    text.extend_from_slice(&chunk);
                }
                spec = Some(
                    serde_json::from_slice(&text)
                        .map_err(|e| bad(format!("the spec field is not JSON: {e}")))?,
                );
            }
            Some("file") if file.is_none() => {
                let name = field.file_name().unwrap_or("upload").to_string();
                let bytes = save(&mut field, &target, &consumed).await?;
                file = Some((name, bytes));
            }
            Some(n @ ("spec" | "file")) => return Err(bad(format!("two \"{n}\" fields"))),
            other => {
                return Err(bad(format!(
                    "unknown field {:?}: the form takes \"spec\" and \"file\"",
                    other.unwrap_or("")
                )))
            }
        }
    }
    let spec = spec.ok_or_else(|| bad("the form has no \"spec\" field"))?;
    let (file_name, bytes) = file.ok_or_else(|| bad("the form has no \"file\" field"))?;
    if bytes == 0 {
        return Err(bad("the uploaded file is empty"));
    }
    let info = jobs
        .submit_upload(
            spec,
            Uploaded {
                path: target.path.clone(),
                file_name,
                bytes,
            },
        )
        .await?;
    // The queue moved it under the job.
    partial.keep = true;
    drop(held);
    Ok(info)
}

/// Streams one field to the target file, counting against its limit.
async fn save(
    field: &mut multer::Field<'_>,
    target: &UploadTarget,
    consumed: &AtomicU64,
) -> Result<u64, ApiError> {
    let disk = |e: std::io::Error| {
        tracing::error!(%e, path = %target.path.display(), "upload: cannot write");
        ApiError::Unavailable(format!("the upload could not be stored: {e}"))
    };
    let f = tokio::fs::File::create(&target.path).await.map_err(disk)?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, f);
    let mut bytes = 0u64;
    while let Some(chunk) = idle(field.chunk()).await? {
        consumed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        bytes += chunk.len() as u64;
        if bytes > target.max_bytes {
            return Err(ApiError::PayloadTooLarge(format!(
                "the upload is over its limit of {} MB",
                target.max_bytes / 1_000_000
            )));
        }
        out.write_all(&chunk).await.map_err(disk)?;
    }
    out.flush().await.map_err(disk)?;
    // On disk before the job that names it is.
    out.get_ref().sync_all().await.map_err(disk)?;
    Ok(bytes)
}

/// One step of the body, or an error if the client went quiet or broke
/// the form.
async fn idle<T>(
    step: impl std::future::Future<Output = Result<T, multer::Error>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(IDLE, step).await {
        Err(_) => Err(bad(format!(
            "the upload stalled: nothing for {} s",
            IDLE.as_secs()
        ))),
        Ok(Err(e)) => {
            // multer's stream errors keep their cause one level down.
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            Err(bad(format!("a broken multipart body: {e}{cause}")))
        }
        Ok(Ok(v)) => Ok(v),
    }
}
