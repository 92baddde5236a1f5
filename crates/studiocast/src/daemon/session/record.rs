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
    /// The last version written, and its error if it failed.
    written: watch::Receiver<(u64, Option<String>)>,
    version: u64,
}

impl RecordWriter {
    /// Start the writer; failures come out of `errors`.
    pub fn spawn(store: Arc<dyn SessionStore>, errors: mpsc::UnboundedSender<String>) -> Self {
        let (latest, mut rx) = watch::channel((0u64, None::<SessionInfo>));
        let (done, written) = watch::channel((0u64, None::<String>));
        tokio::spawn(async move {
            // Ends when the session drops its writer (after the last save).
            while rx.changed().await.is_ok() {
                let (version, info) = rx.borrow_and_update().clone();
                let Some(info) = info else { continue };
                let store = store.clone();
                let error = match tokio::task::spawn_blocking(move || store.save(&info)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("the record writer failed: {e}")),
                };
                if let Some(e) = &error {
                    let _ = errors.send(e.clone());
                }
                let _ = done.send((version, error));
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

    /// Wait (at most `limit`) until the last queued state is written:
    /// the end of a session, before it reports it is over. `Err` says why
    /// it is not on disk.
    pub async fn flush(&mut self, limit: Duration) -> Result<(), String> {
        let want = self.version;
        match tokio::time::timeout(limit, self.written.wait_for(|(v, _)| *v >= want)).await {
            Ok(Ok(w)) => match &w.1 {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            },
            Ok(Err(_)) => Err("the record writer stopped".into()),
            Err(_) => Err(format!("not written within {} s", limit.as_secs())),
        }
    }
}
