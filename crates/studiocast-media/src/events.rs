//! What leaves a session pipeline, and the bounded queue it travels in to
//! the packaging worker.
//!
//! The queue is bounded by the bytes of media it holds, so a stalled disk
//! (the worker blocked in a write) cannot grow the daemon's memory without
//! limit: once full, media chunks are dropped and counted, the alarm flag
//! is raised, and the next chunk of each rendition that did get through is
//! marked `after_gap`, so the packager can mark the gap. Control events
//! (inits, discontinuities, end of stream, errors) are few and always kept.
//!
//! A file job has no clock to keep up with and must lose nothing: its
//! queue ([`lossless_event_queue`]) makes a sender wait for room instead,
//! which holds the pipeline back (appsink, muxer, encoder, appsrc) to the
//! worker's pace with the same bound on memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What leaves the pipeline, per rendition.
#[derive(Debug)]
pub enum MediaEvent {
    Init {
        rendition: String,
        data: Vec<u8>,
    },
    Chunk {
        rendition: String,
        data: Vec<u8>,
        /// Seconds.
        duration: f64,
        /// Capture time of the first sample, ms since the Unix epoch.
        pdt_ms: i64,
        /// Starts with a sync sample (for video, a key frame).
        independent: bool,
        /// Starts a new segment (the first chunk of a CMAF fragment).
        boundary: bool,
        /// Chunks of this rendition before this one were dropped (the
        /// queue was full).
        after_gap: bool,
    },
    /// The program returns from a slate: the segments starting at or after
    /// this capture time (ms since the Unix epoch) follow a discontinuity.
    Discontinuity {
        pdt_ms: i64,
    },
    /// Every branch has drained.
    Eos,
    Error(String),
}

/// Health of the queue, for the session status and its alarm.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Bytes of media waiting now.
    pub bytes: AtomicU64,
    /// Media chunks dropped because the queue was full.
    pub dropped_chunks: AtomicU64,
    /// Set when a chunk was dropped; cleared by whoever reports the alarm.
    pub overflowed: AtomicBool,
}

struct Inner {
    events: VecDeque<MediaEvent>,
    bytes: usize,
    senders: usize,
    receiver: bool,
    /// Renditions whose next accepted chunk follows dropped ones.
    gaps: Vec<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    ready: Condvar,
    /// Signalled when the receiver takes a chunk (or goes away): a
    /// lossless sender waits on it for room.
    room: Condvar,
    lossless: bool,
    max_bytes: usize,
    stats: Arc<QueueStats>,
}

/// The pipeline's end; cheap to clone (one per appsink, pump, bus thread).
pub struct EventSender(Arc<Shared>);

/// The packaging worker's end.
pub struct EventReceiver(Arc<Shared>);

/// A queue holding at most `max_bytes` of media chunks.
pub fn event_queue(max_bytes: usize) -> (EventSender, EventReceiver, Arc<QueueStats>) {
    queue(max_bytes, false)
}

/// A queue holding at most `max_bytes` of media chunks whose senders wait
/// for room rather than drop (a chunk larger than the whole bound still
/// goes, alone, so that nothing can wait forever).
pub fn lossless_event_queue(max_bytes: usize) -> (EventSender, EventReceiver, Arc<QueueStats>) {
    queue(max_bytes, true)
}

fn queue(max_bytes: usize, lossless: bool) -> (EventSender, EventReceiver, Arc<QueueStats>) {
    let stats = Arc::new(QueueStats::default());
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            events: VecDeque::new(),
            bytes: 0,
            senders: 1,
            receiver: true,
            gaps: Vec::new(),
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
        lossless,
        max_bytes,
        stats: stats.clone(),
    });
    (EventSender(shared.clone()), EventReceiver(shared), stats)
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        if let Ok(mut g) = self.0.inner.lock() {
            g.senders += 1;
        }
        EventSender(self.0.clone())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.inner.lock() {
            g.senders = g.senders.saturating_sub(1);
        }
        self.0.ready.notify_all();
    }
}

impl EventSender {
    /// Queue an event; a media chunk that does not fit is dropped (and
    /// counted). Never blocks on the receiver. Returns false when the event
    /// was dropped or nobody listens any more.
    pub fn send(&self, mut ev: MediaEvent) -> bool {
        let Ok(mut g) = self.0.inner.lock() else {
            return false;
        };
        if !g.receiver {
            return false;
        }
        if let MediaEvent::Chunk {
            rendition,
            data,
            after_gap,
            ..
        } = &mut ev
        {
            while self.0.lossless && g.bytes > 0 && g.bytes + data.len() > self.0.max_bytes {
                g = match self.0.room.wait(g) {
                    Ok(g) => g,
                    Err(_) => return false,
                };
                if !g.receiver {
                    return false;
                }
            }
            if g.bytes + data.len() > self.0.max_bytes && !self.0.lossless {
                if !g.gaps.contains(rendition) {
                    g.gaps.push(rendition.clone());
                }
                self.0.stats.dropped_chunks.fetch_add(1, Ordering::Relaxed);
                self.0.stats.overflowed.store(true, Ordering::Relaxed);
                return false;
            }
            if let Some(i) = g.gaps.iter().position(|r| r == rendition) {
                g.gaps.swap_remove(i);
                *after_gap = true;
            }
            g.bytes += data.len();
            self.0.stats.bytes.store(g.bytes as u64, Ordering::Relaxed);
        }
        g.events.push_back(ev);
        drop(g);
        self.0.ready.notify_one();
        true
    }
}

impl EventReceiver {
    fn take(&self, g: &mut Inner) -> Option<MediaEvent> {
        let ev = g.events.pop_front()?;
        if let MediaEvent::Chunk { data, .. } = &ev {
            g.bytes = g.bytes.saturating_sub(data.len());
            self.0.stats.bytes.store(g.bytes as u64, Ordering::Relaxed);
            if self.0.lossless {
                self.0.room.notify_all();
            }
        }
        Some(ev)
    }

    /// The next event; `None` once every sender is gone and the queue is
    /// empty.
    pub fn recv(&self) -> Option<MediaEvent> {
        let mut g = self.0.inner.lock().ok()?;
        loop {
            if let Some(ev) = self.take(&mut g) {
                return Some(ev);
            }
            if g.senders == 0 {
                return None;
            }
            g = self.0.ready.wait(g).ok()?;
        }
    }

    /// As [`EventReceiver::recv`], giving up after `timeout`
    /// (`Err(true)`: timed out; `Err(false)`: every sender is gone).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<MediaEvent, bool> {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.0.inner.lock().map_err(|_| false)?;
        loop {
            if let Some(ev) = self.take(&mut g) {
                return Ok(ev);
            }
            if g.senders == 0 {
                return Err(false);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(true);
            }
            g = self.0.ready.wait_timeout(g, left).map_err(|_| false)?.0;
        }
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.inner.lock() {
            g.receiver = false;
            g.events.clear();
            g.bytes = 0;
        }
        self.0.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(r: &str, n: usize) -> MediaEvent {
        MediaEvent::Chunk {
            rendition: r.into(),
            data: vec![0; n],
            duration: 2.0,
            pdt_ms: 0,
            independent: true,
            boundary: true,
            after_gap: false,
        }
    }

    #[test]
    fn a_lossless_queue_holds_the_sender_back_and_drops_nothing() {
        let (tx, rx, stats) = lossless_event_queue(1000);
        assert!(tx.send(chunk("audio", 600)));
        let sender = std::thread::spawn(move || {
            // Waits for room: the first chunk must be taken first.
            let sent = tx.send(chunk("audio", 600));
            (sent, tx)
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!sender.is_finished(), "the sender did not wait for room");
        assert_eq!(stats.bytes.load(Ordering::Relaxed), 600);
        assert!(matches!(rx.recv(), Some(MediaEvent::Chunk { .. })));
        let (sent, tx) = sender.join().unwrap();
        assert!(sent);
        assert!(matches!(
            rx.recv(),
            Some(MediaEvent::Chunk {
                after_gap: false,
                ..
            })
        ));
        assert_eq!(stats.dropped_chunks.load(Ordering::Relaxed), 0);
        // A chunk beyond the whole bound still goes, alone.
        assert!(tx.send(chunk("audio", 5000)));
        // A waiting sender is released (refused) when the receiver goes.
        let tx2 = tx.clone();
        let waiting = std::thread::spawn(move || tx2.send(chunk("audio", 10)));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert!(!waiting.join().unwrap());
    }

    #[test]
    fn a_stalled_receiver_bounds_memory_and_marks_the_gap() {
        let (tx, rx, stats) = event_queue(1000);
        assert!(tx.send(chunk("video", 600)));
        // Does not fit: dropped, counted, flagged; control events still go.
        assert!(!tx.send(chunk("video", 600)));
        assert!(tx.send(MediaEvent::Eos));
        assert_eq!(stats.dropped_chunks.load(Ordering::Relaxed), 1);
        assert!(stats.overflowed.load(Ordering::Relaxed));
        assert_eq!(stats.bytes.load(Ordering::Relaxed), 600);
        assert!(matches!(
            rx.recv(),
            Some(MediaEvent::Chunk {
                after_gap: false,
                ..
            })
        ));
        assert!(matches!(rx.recv(), Some(MediaEvent::Eos)));
        // The next chunk of that rendition says it follows a gap; other
        // renditions' chunks do not.
        assert!(tx.send(chunk("audio", 10)));
        assert!(tx.send(chunk("video", 10)));
        assert!(tx.send(chunk("video", 10)));
        let gaps: Vec<bool> = (0..3)
            .map(|_| match rx.recv() {
                Some(MediaEvent::Chunk { after_gap, .. }) => after_gap,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(gaps, vec![false, true, false]);
    }

    #[test]
    fn the_receiver_ends_when_every_sender_is_gone() {
        let (tx, rx, _) = event_queue(1000);
        let tx2 = tx.clone();
        drop(tx);
        assert!(tx2.send(MediaEvent::Eos));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(tx2);
        });
        assert!(matches!(rx.recv(), Some(MediaEvent::Eos)));
        assert!(rx.recv().is_none());
        t.join().unwrap();
        assert!(!rx.recv_timeout(Duration::from_millis(10)).unwrap_err());
    }
}
