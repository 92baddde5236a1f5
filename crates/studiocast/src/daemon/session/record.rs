//! The session's record, written off the actor: a save is a write, an
//! fsync and a folder fsync, which a slow or stalled disk can hold for
//! seconds, and the actor must keep answering meanwhile. Saves coalesce
//! (the record holds the latest state), run in order on the blocking pool,
//! and report failures back so the session raises an alarm.

use std::sync::Arc;
use std::time::Duration;

use studiocast_server::SessionInfo;
use tokio::sync::{mpsc, watch};

use super::super::store::SessionStore;

pub struct RecordWriter {
    latest: watch::Sender<(u64, Option<SessionInfo>)>,
    written: watch::Receiver<u64>,
    version: u64,
}

impl RecordWriter {
    /// Start the writer; failures come out of `errors`.
    pub fn spawn(store: Arc<dyn SessionStore>, errors: mpsc::UnboundedSender<String>) -> Self {
        let (latest, mut rx) = watch::channel((0u64, None::<SessionInfo>));
        let (done, written) = watch::channel(0u64);
        tokio::spawn(async move {
            // Ends when the session drops its writer (after the last save).
            while rx.changed().await.is_ok() {
                let (version, info) = rx.borrow_and_update().clone();
                let Some(info) = info else { continue };
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.save(&info)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let _ = errors.send(e.to_string());
                    }
                    Err(e) => {
                        let _ = errors.send(format!("the record writer failed: {e}"));
                    }
                }
                let _ = done.send(version);
            }
        });
        RecordWriter {
            latest,
            written,
            version: 0,
        }
    }

    /// Queue `info` to be saved; never waits.
    pub fn save(&mut self, info: &SessionInfo) {
        self.version += 1;
        self.latest.send_replace((self.version, Some(info.clone())));
    }

    /// Wait (at most `limit`) until the last queued state is written or
    /// has failed: the end of a session, before it reports it is over.
    pub async fn flush(&mut self, limit: Duration) -> bool {
        let want = self.version;
        tokio::time::timeout(limit, self.written.wait_for(|v| *v >= want))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
