//! The archival master: the untouched multichannel device audio, written
//! by its own thread so disk stalls never reach the audio thread.
//!
//! The file is a float WAV that becomes RF64 past 4 GiB. Its header is
//! refreshed and the data flushed to disk every second, so a crash (even
//! `kill -9`) loses at most about a second; the next start repairs the
//! header from the file length.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use studiocast_audiofile::pcm::{PcmWriter, SampleFormat};

/// Seconds of audio that may queue before the audio thread starts
/// dropping blocks (the disk stalls longer than this).
const QUEUE_SECONDS: usize = 5;
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the writer looks for new samples.
const POLL: Duration = Duration::from_millis(20);

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
    ring: rtrb::Producer<f32>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    channels: usize,
    /// Blocks dropped because the writer fell behind or failed.
    pub dropped: Arc<AtomicU64>,
}

impl MasterWriter {
    /// Start writing `channels` at `rate` to `path`; `block` is the most
    /// frames one [`MasterWriter::push`] carries.
    pub fn start(
        path: &Path,
        channels: u16,
        rate: u32,
        block: usize,
        state: Arc<RecordingState>,
    ) -> Result<Self, String> {
        let w = PcmWriter::create(path, channels, rate, SampleFormat::F32)
            .map_err(|e| format!("cannot create master {}: {e}", path.display()))?;
        let ch = (channels as usize).max(1);
        // Interleaved samples in flight: a few seconds, whatever the block.
        let capacity = ch * (rate as usize * QUEUE_SECONDS).max(4 * block);
        let (ring, rx) = rtrb::RingBuffer::new(capacity);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let name = path.display().to_string();
        let writer = Writer {
            w,
            rx,
            ch,
            state,
            stop: stop.clone(),
            name,
        };
        let thread = std::thread::Builder::new()
            .name("master-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| e.to_string())?;
        Ok(MasterWriter {
            ring,
            stop,
            thread: Some(thread),
            channels: ch,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queue one planar block (channel c at `[c * frames..]`). Never blocks,
    /// locks or allocates: a block that does not fit is dropped and counted.
    pub fn push(&mut self, planar: &[f32], frames: usize) {
        let ch = self.channels;
        let frames = frames.min(planar.len() / ch);
        let Ok(chunk) = self.ring.write_chunk_uninit(frames * ch) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Interleave on the way in: the file is interleaved.
        chunk.fill_from_iter((0..frames * ch).map(|i| planar[(i % ch) * frames + i / ch]));
    }
}

/// The writer thread's side.
struct Writer {
    w: PcmWriter,
    rx: rtrb::Consumer<f32>,
    ch: usize,
    state: Arc<RecordingState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    name: String,
}

impl Writer {
    fn run(mut self) {
        let mut last_sync = Instant::now();
        let mut failed = false;
        let mut planar: Vec<f32> = Vec::new();
        loop {
            let done = self.stop.load(Ordering::SeqCst);
            let n = self.rx.slots() / self.ch * self.ch;
            if n == 0 {
                if done {
                    break;
                }
                std::thread::sleep(POLL);
                continue;
            }
            let frames = n / self.ch;
            planar.resize(n, 0.0);
            if let Ok(chunk) = self.rx.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                for (i, v) in a.iter().chain(b).enumerate() {
                    planar[(i % self.ch) * frames + i / self.ch] = *v;
                }
                chunk.commit_all();
            }
            if failed {
                continue;
            }
            if self.state.stopped() {
                // Close now so the file is whole, however full the disk
                // gets afterwards.
                failed = true;
                if let Err(e) = self.w.sync() {
                    tracing::error!(file = %self.name, %e, "master sync failed");
                }
                continue;
            }
            let planes: Vec<&[f32]> = planar.chunks(frames).collect();
            if let Err(e) = self.w.write_planar(&planes) {
                self.state.fail(&format!("audio master write failed: {e}"));
                failed = true;
                continue;
            }
            if last_sync.elapsed() >= SYNC_EVERY {
                if let Err(e) = self.w.sync() {
                    self.state.fail(&format!("audio master sync failed: {e}"));
                    failed = true;
                }
                last_sync = Instant::now();
            }
        }
        match self.w.finalize() {
            Ok(frames) => tracing::info!(file = %self.name, frames, "master closed"),
            Err(e) => tracing::error!(file = %self.name, %e, "master could not be finalised"),
        }
    }
}

impl Drop for MasterWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
