//! Job-end webhooks: the deliverer that takes due deliveries from the
//! outbox ([`super::outbox`]) and POSTs each event, signed, to its URL.
//!
//! The request:
//! * body: `{"id": "evt-…", "type": "job.succeeded", "created": "…", "job": {…}}`,
//!   the job as `GET /api/v1/jobs/{id}` shows it (output URLs absolute when
//!   `[jobs] public_url` is set);
//! * `X-Studiocast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//!   `"<t>.<body>"` with `[jobs] webhook_secret`, as Stripe and GitHub do:
//!   the receiver recomputes it, compares in constant time, and refuses an
//!   old `t` (a replay);
//! * `X-Studiocast-Event-Id` for deduplication (delivery is at least once).
//!
//! A 2xx answer delivers; anything else, a refused connection or no answer
//! in 10 s is retried with backoff ([`super::outbox::retry_delay_ms`]).
//! Redirects are not followed: the configured URL is the one trusted.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use hyper::http::Method;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::outbox::{Delivery, Retry};
use super::store::Store;
use super::Jobs;
use crate::http_client::{Body, Client};

/// One attempt, connection to answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A delivery taken is this deliverer's for so long (well over an attempt).
const LEASE_MS: i64 = 60_000;
/// Attempts in flight at once (a slow receiver does not hold the others).
const BATCH: usize = 8;
/// With nothing due, look again this often anyway (another daemon's
/// events on a shared queue do not wake this one).
const IDLE_LOOK: Duration = Duration::from_secs(5);

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// What the deliverer needs besides the store.
pub struct WebhookSettings {
    pub secret: Vec<u8>,
    /// `https://media.example.org`: output paths in events become URLs.
    pub public_url: Option<String>,
}

/// Runs until `stop`; `wake` is notified when an event is written.
pub async fn deliver(
    store: Arc<Store>,
    jobs: Arc<Jobs>,
    settings: WebhookSettings,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let settings = Arc::new(settings);
    let client = Client::new();
    loop {
        let now = super::now_ms();
        let s = store.clone();
        let due = match tokio::task::spawn_blocking(move || s.take_deliveries(now, LEASE_MS, BATCH))
            .await
        {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(%e, "webhooks: cannot read the outbox");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(%e, "webhooks: outbox task failed");
                Vec::new()
            }
        };
        if due.is_empty() {
            let s = store.clone();
            let next = tokio::task::spawn_blocking(move || s.next_delivery_ms())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let wait = next
                .map(|t| {
                    Duration::from_millis((t - now).clamp(0, IDLE_LOOK.as_millis() as i64) as u64)
                })
                .unwrap_or(IDLE_LOOK);
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for d in due {
            let (store, jobs, settings, client) = (
                store.clone(),
                jobs.clone(),
                settings.clone(),
                client.clone(),
            );
            // Logs name the receiver's host only: a webhook URL's path
            // often carries a token.
            let host = d
                .url
                .parse::<hyper::http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned))
                .unwrap_or_default();
            let span = tracing::info_span!("webhook", job = %d.job_id, event = %d.event_id, %host);
            set.spawn(
                async move { attempt(&store, &jobs, &settings, &client, d).await }.instrument(span),
            );
        }
        tokio::select! {
            _ = async { while set.join_next().await.is_some() {} } => {}
            // A shutdown mid-attempt: the leases lapse and the next start
            // sends again.
            _ = stop.cancelled() => return,
        }
    }
}

/// One delivery: build, sign, send, record.
async fn attempt(
    store: &Arc<Store>,
    jobs: &Jobs,
    settings: &WebhookSettings,
    client: &Client,
    d: Delivery,
) {
    let s = store.clone();
    let job_id = d.job_id.clone();
    let job = match tokio::task::spawn_blocking(move || s.get(&job_id)).await {
        Ok(Ok(Some(j))) => j,
        other => {
            // Counted as a failed attempt, so that it is given up on in
            // time rather than taken again every lease for ever.
            tracing::error!(?other, "webhooks: cannot read the event's job");
            let s = store.clone();
            let now = super::now_ms();
            let _ = tokio::task::spawn_blocking(move || {
                s.delivery_failed(&d, now, "the job could not be read")
            })
            .await;
            return;
        }
    };
    let body = event_body(jobs, settings, &d, &job);
    let t = super::now_ms() / 1000;
    let sig = signature(&settings.secret, t, &body);
    let result = tokio::time::timeout(ATTEMPT_TIMEOUT, post(client, &d, body, &sig))
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", ATTEMPT_TIMEOUT.as_secs())));
    let now = super::now_ms();
    let s = store.clone();
    match result {
        Ok(()) => {
            tracing::info!(attempt = d.attempts + 1, "webhook delivered");
            let _ = tokio::task::spawn_blocking(move || s.delivered(&d, now)).await;
        }
        Err(e) => {
            let why = e.clone();
            let outcome =
                tokio::task::spawn_blocking(move || s.delivery_failed(&d, now, &why)).await;
            match outcome {
                Ok(Ok(Retry::At(t))) => {
                    tracing::warn!(error = %e, retry_in_ms = t - now, "webhook not delivered")
                }
                Ok(Ok(Retry::GaveUp)) => {
                    tracing::error!(error = %e, "webhook given up after a day of failures")
                }
                _ => tracing::error!(error = %e, "webhook: cannot record the failure"),
            }
        }
    }
}

/// The JSON the receiver gets; the same bytes are signed.
fn event_body(
    jobs: &Jobs,
    settings: &WebhookSettings,
    d: &Delivery,
    job: &super::store::JobRecord,
) -> Vec<u8> {
    let mut info = jobs.info(job);
    if let (Some(base), Some(out)) = (&settings.public_url, info.outputs.as_mut()) {
        out.master = format!("{base}{}", out.master);
        for url in out.downloads.values_mut() {
            *url = format!("{base}{url}");
        }
    }
    let event = serde_json::json!({
        "id": d.event_id,
        "type": d.kind,
        "created": super::rfc3339(d.created_ms),
        "job": info,
    });
    serde_json::to_vec(&event).unwrap_or_default()
}

/// POST the body; Ok on a 2xx answer.
async fn post(client: &Client, d: &Delivery, body: Vec<u8>, sig: &str) -> Result<(), String> {
    let headers = [
        ("content-type", "application/json"),
        ("x-studiocast-event", d.kind.as_str()),
        ("x-studiocast-event-id", d.event_id.as_str()),
        ("x-studiocast-signature", sig),
    ];
    let answer = client
        .send(Method::POST, &d.url, &headers, Body::Bytes(body))
        .await
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(format!("HTTP {}", answer.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_and_body() {
        // Expected value from Python's hmac module, an independent
        // implementation: hmac.new(b"key", b"1700000000.{}", sha256).
        let s = signature(b"key", 1_700_000_000, b"{}");
        assert_eq!(
            s,
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
