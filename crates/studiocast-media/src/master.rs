//! The archival master: the untouched multichannel device audio, written
//! by its own thread so disk stalls never reach the audio thread.
//!
//! The file is a float WAV that becomes RF64 past 4 GiB. Its header is
//! refreshed and the data flushed to disk every second, so a crash (even
//! `kill -9`) loses at most about a second; the next start repairs the
//! header from the file length.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use studiocast_audiofile::pcm::{PcmWriter, SampleFormat};

/// Blocks that may queue before the audio thread starts dropping them
/// (about 5 s at 1024 frames and 48 kHz).
const QUEUE_BLOCKS: usize = 256;
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Shared by everything that records a session (audio master, program
/// video): a request to stop, and why recording ended early.
#[derive(Debug, Default)]
pub struct RecordingState {
    stop: std::sync::atomic::AtomicBool,
    alarm: std::sync::Mutex<Option<String>>,
}

impl RecordingState {
    /// Stop recording now (disk nearly full, write failed); the live
    /// stream goes on. The first reason is kept.
    pub fn stop(&self, reason: &str) {
        if let Ok(mut a) = self.alarm.lock() {
            if a.is_none() {
                tracing::error!(%reason, "recording stopped; the live stream continues");
                *a = Some(reason.to_string());
            }
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// One recording failed on its own (a write error): it stops itself
    /// and raises the alarm; the others carry on.
    pub fn fail(&self, reason: &str) {
        if let Ok(mut a) = self.alarm.lock() {
            tracing::error!(%reason, "a recording failed; the live stream continues");
            if a.is_none() {
                *a = Some(reason.to_string());
            }
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn alarm(&self) -> Option<String> {
        self.alarm.lock().ok().and_then(|a| a.clone())
    }
}

pub struct MasterWriter {
    tx: Option<SyncSender<Vec<f32>>>,
    thread: Option<JoinHandle<()>>,
    channels: usize,
    /// Blocks dropped because the writer fell behind or failed.
    pub dropped: Arc<AtomicU64>,
}

impl MasterWriter {
    pub fn start(
        path: &Path,
        channels: u16,
        rate: u32,
        state: Arc<RecordingState>,
    ) -> Result<Self, String> {
        let mut w = PcmWriter::create(path, channels, rate, SampleFormat::F32)
            .map_err(|e| format!("cannot create master {}: {e}", path.display()))?;
        let (tx, rx) = sync_channel::<Vec<f32>>(QUEUE_BLOCKS);
        let ch = channels as usize;
        let name = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("master-writer".into())
            .spawn(move || {
                let mut last_sync = Instant::now();
                let mut failed = false;
                while let Ok(block) = rx.recv() {
                    if failed {
                        continue;
                    }
                    if state.stopped() {
                        // Close now so the file is whole, however full the
                        // disk gets afterwards.
                        failed = true;
                        if let Err(e) = w.sync() {
                            tracing::error!(file = %name, %e, "master sync failed");
                        }
                        continue;
                    }
                    let n = block.len() / ch.max(1);
                    let planes: Vec<&[f32]> = (0..ch).map(|c| &block[c * n..(c + 1) * n]).collect();
                    if let Err(e) = w.write_planar(&planes) {
                        state.fail(&format!("audio master write failed: {e}"));
                        failed = true;
                        continue;
                    }
                    if last_sync.elapsed() >= SYNC_EVERY {
                        if let Err(e) = w.sync() {
                            state.fail(&format!("audio master sync failed: {e}"));
                            failed = true;
                        }
                        last_sync = Instant::now();
                    }
                }
                match w.finalize() {
                    Ok(frames) => tracing::info!(file = %name, frames, "master closed"),
                    Err(e) => tracing::error!(file = %name, %e, "master could not be finalised"),
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(MasterWriter {
            tx: Some(tx),
            thread: Some(thread),
            channels: ch,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queue one planar block (channel c at `[c * frames..]`). Never blocks.
    pub fn push(&self, planar: &[f32], frames: usize) {
        let Some(tx) = &self.tx else { return };
        let block = planar[..(self.channels * frames).min(planar.len())].to_vec();
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(block) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for MasterWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
