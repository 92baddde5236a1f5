//! The capture ring: a lock-free single-producer single-consumer queue of
//! interleaved frames between the device callback and the session's audio
//! thread. The producer side never allocates, locks or logs; overruns (ring
//! full, frames dropped) and underruns (ring empty, silence inserted) are
//! counted with atomics for the session status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters shared by both ends and the status API.
#[derive(Debug, Default)]
pub struct RingStats {
    /// Frames dropped because the ring was full.
    pub overrun_frames: AtomicU64,
    /// Callbacks that dropped frames.
    pub overruns: AtomicU64,
    /// Frames replaced by silence because the ring was empty.
    pub underrun_frames: AtomicU64,
    pub underruns: AtomicU64,
    /// Frames delivered by the device so far.
    pub frames_in: AtomicU64,
    /// Losses upstream of the ring (an xrun in the device or its server)
    /// and the frames of silence that took their place.
    pub xruns: AtomicU64,
    pub xrun_frames: AtomicU64,
}

pub struct RingProducer {
    inner: rtrb::Producer<f32>,
    channels: usize,
    stats: Arc<RingStats>,
}

pub struct RingConsumer {
    inner: rtrb::Consumer<f32>,
    channels: usize,
    stats: Arc<RingStats>,
}

/// A ring holding `capacity_frames` frames of `channels` channels.
pub fn ring(
    channels: usize,
    capacity_frames: usize,
) -> (RingProducer, RingConsumer, Arc<RingStats>) {
    let channels = channels.max(1);
    let (p, c) = rtrb::RingBuffer::new(channels * capacity_frames.max(1));
    let stats = Arc::new(RingStats::default());
    (
        RingProducer {
            inner: p,
            channels,
            stats: stats.clone(),
        },
        RingConsumer {
            inner: c,
            channels,
            stats: stats.clone(),
        },
        stats,
    )
}

impl RingProducer {
    /// Count time the device lost before the ring (an xrun), found from
    /// the capture timestamps. Real-time safe.
    pub fn note_xrun(&self, frames: usize) {
        self.stats.xruns.fetch_add(1, Ordering::Relaxed);
        self.stats
            .xrun_frames
            .fetch_add(frames as u64, Ordering::Relaxed);
    }

    /// Push interleaved frames; whole frames that do not fit are dropped and
    /// counted. Real-time safe.
    pub fn push_interleaved(&mut self, data: &[f32]) {
        let frames = data.len() / self.channels;
        let room = self.inner.slots() / self.channels;
        let n = frames.min(room);
        if n > 0 {
            if let Ok(chunk) = self.inner.write_chunk_uninit(n * self.channels) {
                chunk.fill_from_iter(data[..n * self.channels].iter().copied());
            }
        }
        self.stats
            .frames_in
            .fetch_add(frames as u64, Ordering::Relaxed);
        if n < frames {
            self.stats.overruns.fetch_add(1, Ordering::Relaxed);
            self.stats
                .overrun_frames
                .fetch_add((frames - n) as u64, Ordering::Relaxed);
        }
    }
}

impl RingConsumer {
    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn stats(&self) -> Arc<RingStats> {
        self.stats.clone()
    }

    /// Count silence the consumer inserted on its own (input starved).
    pub fn note_underrun(&self, frames: usize) {
        self.stats.underruns.fetch_add(1, Ordering::Relaxed);
        self.stats
            .underrun_frames
            .fetch_add(frames as u64, Ordering::Relaxed);
    }

    /// Frames waiting in the ring.
    pub fn fill_frames(&self) -> usize {
        self.inner.slots() / self.channels
    }

    /// Pop `frames` frames into a planar buffer (channel c at
    /// `out[c * frames..]`). Missing frames become silence and count as an
    /// underrun. Returns the frames that came from the device.
    pub fn pop_planar(&mut self, frames: usize, out: &mut [f32]) -> usize {
        let ch = self.channels;
        let n = frames.min(self.fill_frames());
        if n > 0 {
            if let Ok(chunk) = self.inner.read_chunk(n * ch) {
                let (a, b) = chunk.as_slices();
                for (i, v) in a.iter().chain(b.iter()).enumerate() {
                    let (f, c) = (i / ch, i % ch);
                    if c * frames + f < out.len() {
                        out[c * frames + f] = *v;
                    }
                }
                chunk.commit_all();
            }
        }
        if n < frames {
            for c in 0..ch {
                let end = ((c + 1) * frames).min(out.len());
                let start = (c * frames + n).min(end);
                out[start..end].iter_mut().for_each(|v| *v = 0.0);
            }
            self.stats.underruns.fetch_add(1, Ordering::Relaxed);
            self.stats
                .underrun_frames
                .fetch_add((frames - n) as u64, Ordering::Relaxed);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_their_channels_across_wrap_around() {
        let (mut p, mut c, stats) = ring(3, 10);
        let mut out = vec![0.0f32; 3 * 4];
        for round in 0..20 {
            let base = round as f32 * 100.0;
            let data: Vec<f32> = (0..4)
                .flat_map(|f| (0..3).map(move |ch| base + f as f32 * 10.0 + ch as f32))
                .collect();
            p.push_interleaved(&data);
            assert_eq!(c.fill_frames(), 4);
            assert_eq!(c.pop_planar(4, &mut out), 4);
            for ch in 0..3 {
                for f in 0..4 {
                    assert_eq!(out[ch * 4 + f], base + f as f32 * 10.0 + ch as f32);
                }
            }
        }
        assert_eq!(stats.overruns.load(Ordering::Relaxed), 0);
        assert_eq!(stats.underruns.load(Ordering::Relaxed), 0);
        assert_eq!(stats.frames_in.load(Ordering::Relaxed), 80);
    }

    #[test]
    fn overruns_and_underruns_are_counted() {
        let (mut p, mut c, stats) = ring(2, 4);
        p.push_interleaved(&[1.0; 2 * 6]);
        assert_eq!(stats.overrun_frames.load(Ordering::Relaxed), 2);
        assert_eq!(c.fill_frames(), 4);
        let mut out = vec![9.0f32; 2 * 6];
        assert_eq!(c.pop_planar(6, &mut out), 4);
        assert_eq!(&out[0..6], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(&out[6..12], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(stats.underrun_frames.load(Ordering::Relaxed), 2);
        assert_eq!(stats.underruns.load(Ordering::Relaxed), 1);
    }
}
