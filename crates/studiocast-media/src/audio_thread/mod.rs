//! The audio thread of a session: fills the AmbiX bus from the synthetic
//! scene or a live input (interface or embedded audio, through the drift
//! compensator), renders it binaurally and to stereo, meters it, and feeds
//! every audio rendition's `appsrc`. Also the input-health counters it keeps.
//!
//! The per-block path ([`AudioLoop::step`]) makes no Rust heap allocation
//! (a counting-allocator test drives it), takes no lock of ours and logs
//! nothing: scratch buffers are made when the loop opens, the output
//! buffers are recycled by a GStreamer buffer pool per rendition, the
//! master recorder is fed through a lock-free ring, and state changes
//! (silence, return) are published as counters that the session's monitor
//! logs. What the counter cannot see: GStreamer's own calls (pushing into
//! an appsrc takes its internal lock; reading the pipeline clock). When to
//! wait, play or play silence is decided by the Sans-IO [`SilencePolicy`].

mod input;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use studiocast_spatial::encoder::StereoDownmix;
use studiocast_spatial::Engine;

pub(crate) use input::{BusSource, LiveInput};

use crate::ingest::IngestSnapshot;
use crate::machines::{Decision, SilenceConfig, SilencePolicy};
use crate::meters::{MeterAccumulator, MeterBank};
use crate::spec::Mix;
use crate::MediaError;

fn gst_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Gst(e.to_string())
}

/// How far ahead of the clock the audio thread may run.
pub(crate) const LEAD: Duration = Duration::from_millis(40);
/// An input that delivers nothing for this long is replaced by silence.
pub(crate) const STARVED: Duration = Duration::from_millis(250);
/// Ring level the drift compensator holds, in blocks.
pub(crate) const TARGET_BLOCKS: usize = 3;
/// Output buffers each rendition's pool keeps (over a second at 1024).
const POOL_BUFFERS: u32 = 64;
/// The most channels the bus (order 7) or an interface (64 + 2) has.
const MAX_BUS: usize = 64;
const MAX_METERED: usize = 66;

/// Live input health. The audio thread updates it per block with atomics
/// only; the two locked fields are written once, when the source opens.
#[derive(Debug, Default)]
pub struct AudioStatus {
    pub source: std::sync::Mutex<String>,
    pub ring: std::sync::Mutex<Option<Arc<studiocast_capture::ring::RingStats>>>,
    drift_ppm_bits: AtomicU64,
    offset_ms_bits: AtomicU64,
    last_block_ms: AtomicI64,
    /// Blocks of silence inserted because the input went quiet.
    silent_blocks: AtomicU64,
    /// The input is silent now, and how many silences began so far.
    silent: AtomicBool,
    silences: AtomicU64,
    /// Output buffers made outside the pools (a pool ran dry).
    pool_misses: AtomicU64,
    block_frames: AtomicU64,
    rate: AtomicU64,
}

/// A copy of [`AudioStatus`] for the API.
#[derive(Debug, Clone, Default)]
pub struct AudioSnapshot {
    pub source: String,
    pub frames_in: u64,
    pub overruns: u64,
    pub underruns: u64,
    /// Losses upstream of the ring (xruns), and their total length.
    pub xruns: u64,
    pub xrun_ms: f64,
    pub drift_ppm: f64,
    pub av_offset_ms: f64,
    pub last_block_age_s: f64,
    pub silent_blocks: u64,
    pub silent: bool,
    pub silences: u64,
    pub pool_misses: u64,
    /// Frames per processing block (`[spatial] block`).
    pub block_frames: u64,
    /// How far the encoded video trails the wall clock at the end of each
    /// fragment (encoder and muxer latency); a rising value means the
    /// encoder cannot keep up. 0 without video.
    pub video_lag_ms: i64,
    /// Network or capture-card input, when the session has one.
    pub ingest: Option<IngestSnapshot>,
    pub video: Option<VideoSnapshot>,
}

/// Program video counters.
#[derive(Debug, Clone, Default)]
pub struct VideoSnapshot {
    pub frames_out: u64,
    pub slate_frames: u64,
    pub repeated_frames: u64,
    pub dropped_frames: u64,
    pub on_slate: bool,
}

impl AudioStatus {
    pub fn snapshot(&self) -> AudioSnapshot {
        let ring = self.ring.lock().ok().and_then(|r| r.clone());
        let rd = |f: fn(&studiocast_capture::ring::RingStats) -> &AtomicU64| {
            ring.as_ref().map_or(0, |r| f(r).load(Ordering::Relaxed))
        };
        let last = self.last_block_ms.load(Ordering::Relaxed);
        AudioSnapshot {
            source: self.source.lock().map(|s| s.clone()).unwrap_or_default(),
            frames_in: rd(|r| &r.frames_in),
            overruns: rd(|r| &r.overruns),
            underruns: rd(|r| &r.underruns),
            xruns: rd(|r| &r.xruns),
            xrun_ms: rd(|r| &r.xrun_frames) as f64 * 1e3
                / self.rate.load(Ordering::Relaxed).max(1) as f64,
            drift_ppm: f64::from_bits(self.drift_ppm_bits.load(Ordering::Relaxed)),
            av_offset_ms: f64::from_bits(self.offset_ms_bits.load(Ordering::Relaxed)),
            last_block_age_s: crate::age_s(last),
            silent_blocks: self.silent_blocks.load(Ordering::Relaxed),
            silent: self.silent.load(Ordering::Relaxed),
            silences: self.silences.load(Ordering::Relaxed),
            pool_misses: self.pool_misses.load(Ordering::Relaxed),
            block_frames: self.block_frames.load(Ordering::Relaxed),
            video_lag_ms: 0,
            ingest: None,
            video: None,
        }
    }

    fn set_source(&self, text: String) {
        if let Ok(mut s) = self.source.lock() {
            *s = text;
        }
    }
}

/// One audio rendition's way out.
pub(crate) struct Output {
    pub(crate) mix: Mix,
    pub(crate) src: gst_app::AppSrc,
    pub(crate) pool: gst::BufferPool,
}

impl Output {
    /// An appsrc fed from a pool of `block`-frame F32 buffers (stereo, or
    /// four channels for the ambisonic rendition).
    pub(crate) fn new(mix: Mix, src: gst_app::AppSrc, block: usize) -> Result<Self, MediaError> {
        let pool = gst::BufferPool::new();
        let mut config = pool.config();
        let bytes = block * 4 * mix.channels();
        config.set_params(src.caps().as_ref(), bytes as u32, 4, POOL_BUFFERS);
        pool.set_config(config).map_err(gst_err)?;
        pool.set_active(true).map_err(gst_err)?;
        Ok(Output { mix, src, pool })
    }
}

pub(crate) struct AudioFeed {
    /// Where to record the untouched device audio (RF64/WAV, float).
    pub(crate) master: Option<(std::path::PathBuf, Arc<crate::master::RecordingState>)>,
    pub(crate) source: BusSource,
    pub(crate) renderer: Engine,
    pub(crate) outputs: Vec<Output>,
    pub(crate) rate: u32,
    pub(crate) k: usize,
    pub(crate) block: usize,
    pub(crate) meters: Arc<MeterBank>,
}

/// How long a live input's samples wait in the ring before the program
/// plays them; video from the same input is held back as long.
pub(crate) fn audio_delay(rate: u32, block: usize) -> Duration {
    Duration::from_secs_f64((TARGET_BLOCKS * block) as f64 / rate.max(1) as f64)
}

/// What one call of [`AudioLoop::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The next block is not due yet.
    NotDue,
    /// Due, but the input has not delivered it yet: poll again soon.
    Waiting,
    /// A block went to every rendition.
    Pushed,
    /// The pipeline no longer takes buffers.
    Closed,
}

/// The audio thread's state between blocks: everything the per-block path
/// touches is made here, once.
pub(crate) struct AudioLoop {
    feed: AudioFeed,
    input: Option<LiveInput>,
    policy: SilencePolicy,
    bus: Vec<f32>,
    l: Vec<f32>,
    r: Vec<f32>,
    sl: Vec<f32>,
    sr: Vec<f32>,
    downmix: StereoDownmix,
    meter: MeterAccumulator,
    /// Metered input channels (interface channels, or the bus).
    inputs: usize,
    frames: u64,
    status: Arc<AudioStatus>,
}

impl AudioLoop {
    /// Open the source (a device stream lives on the calling thread) and
    /// make every buffer the loop needs.
    pub(crate) fn open(mut feed: AudioFeed, status: Arc<AudioStatus>) -> Result<Self, MediaError> {
        let input = input::open_live(&mut feed, &status)?;
        let (k, block) = (feed.k, feed.block);
        if k > MAX_BUS {
            return Err(MediaError::Spec(format!("{k} bus channels")));
        }
        let inputs = input.as_ref().map_or(k, |i| i.channels());
        status.block_frames.store(block as u64, Ordering::Relaxed);
        status.rate.store(u64::from(feed.rate), Ordering::Relaxed);
        let meter = MeterAccumulator::new(inputs + 2, feed.rate as usize / 10);
        Ok(AudioLoop {
            policy: SilencePolicy::new(SilenceConfig {
                lead_ns: LEAD.as_nanos() as u64,
                patience_ns: STARVED.as_nanos() as u64,
            }),
            bus: vec![0.0; k * block],
            l: vec![0.0; block],
            r: vec![0.0; block],
            sl: vec![0.0; block],
            sr: vec![0.0; block],
            downmix: StereoDownmix::default(),
            meter,
            inputs: inputs.min(MAX_METERED - 2),
            frames: 0,
            input,
            feed,
            status,
        })
    }

    /// Running time of the block starting at frame `frames`, from block 0.
    fn offset_ns(&self, frames: u64) -> u64 {
        // u128: frames × 10⁹ outgrows u64 after two days at 96 kHz.
        (frames as u128 * 1_000_000_000 / self.feed.rate.max(1) as u128) as u64
    }

    /// One attempt at the next block, at pipeline running time `now` (ns).
    pub(crate) fn step(&mut self, now: u64) -> Result<Step, MediaError> {
        let offset = self.offset_ns(self.frames);
        let pts = match self.input.is_some() {
            false => {
                // Paced like a capture device: never more than LEAD ahead.
                if now + (LEAD.as_nanos() as u64) < offset {
                    return Ok(Step::NotDue);
                }
                if let BusSource::Synthetic(scene) = &mut self.feed.source {
                    scene.render(&mut self.bus)?;
                }
                offset
            }
            true => {
                if !self.policy.is_due(now, self.policy.due(offset)) {
                    return Ok(Step::NotDue);
                }
                match self.take_input(now, offset)? {
                    Some(pts) => pts,
                    None => return Ok(Step::Waiting),
                }
            }
        };
        self.render_and_meter()?;
        if !self.push(pts)? {
            return Ok(Step::Closed);
        }
        self.frames += self.feed.block as u64;
        self.status
            .last_block_ms
            .store(crate::now_ms(), Ordering::Relaxed);
        Ok(Step::Pushed)
    }

    /// Fill the bus from the live input, or with silence when the policy
    /// says so. Returns the block's timestamp, or `None` to wait.
    fn take_input(&mut self, now: u64, offset: u64) -> Result<Option<u64>, MediaError> {
        let due = self.policy.due(offset);
        let Some(inp) = self.input.as_mut() else {
            return Ok(None);
        };
        let delivered = inp.try_block();
        match self.policy.tick(now, due, delivered) {
            Decision::Wait => return Ok(None),
            Decision::Play { resumed } => {
                if resumed {
                    self.status.silent.store(false, Ordering::Relaxed);
                }
                inp.record_block();
            }
            Decision::Silence { began } => {
                if began {
                    inp.restart();
                    self.status.silent.store(true, Ordering::Relaxed);
                    self.status.silences.fetch_add(1, Ordering::Relaxed);
                }
                inp.silence_block();
                self.status.silent_blocks.fetch_add(1, Ordering::Relaxed);
            }
        }
        inp.mix(&mut self.bus)?;
        let ctl = inp.controller();
        self.status
            .drift_ppm_bits
            .store(ctl.estimated_drift_ppm().to_bits(), Ordering::Relaxed);
        self.status
            .offset_ms_bits
            .store((ctl.error_s() * 1e3).to_bits(), Ordering::Relaxed);
        Ok(self.policy.due(offset))
    }

    fn render_and_meter(&mut self) -> Result<(), MediaError> {
        let (k, block) = (self.feed.k, self.feed.block);
        let mut ins: [&[f32]; MAX_BUS] = [&[]; MAX_BUS];
        for (c, s) in ins.iter_mut().enumerate().take(k) {
            *s = &self.bus[c * block..(c + 1) * block];
        }
        self.feed
            .renderer
            .process(&ins[..k], &mut self.l, &mut self.r)?;
        self.downmix
            .process(&ins[..k], &mut self.sl, &mut self.sr)?;
        // Inputs are metered as they arrived, before drift correction.
        let (metered, n) = match &self.input {
            Some(i) => i.metered(),
            None => (&self.bus[..], block),
        };
        let mut planes: [&[f32]; MAX_METERED] = [&[]; MAX_METERED];
        for (c, p) in planes.iter_mut().enumerate().take(self.inputs) {
            *p = metered.get(c * n..(c + 1) * n).unwrap_or(&[]);
        }
        self.meter.add(0, &planes[..self.inputs]);
        self.meter.add(self.inputs, &[&self.l, &self.r]);
        self.meter.advance(block, &self.feed.meters);
        Ok(())
    }

    /// Interleave the block into a pooled buffer per rendition and push it.
    /// `false` once the pipeline refuses buffers (it is stopping).
    fn push(&mut self, pts: u64) -> Result<bool, MediaError> {
        let block = self.feed.block;
        let duration = self.offset_ns(self.frames + block as u64) - self.offset_ns(self.frames);
        let params =
            gst::BufferPoolAcquireParams::with_flags(gst::BufferPoolAcquireFlags::DONTWAIT);
        for out in &self.feed.outputs {
            let bytes = block * 4 * out.mix.channels();
            let mut buf = match out.pool.acquire_buffer(Some(&params)) {
                Ok(b) => b,
                Err(_) => {
                    // Downstream holds every pooled buffer: make one, and
                    // count it (it shows a stall, not a normal state).
                    self.status.pool_misses.fetch_add(1, Ordering::Relaxed);
                    gst::Buffer::with_size(bytes).map_err(gst_err)?
                }
            };
            {
                let bm = buf
                    .get_mut()
                    .ok_or_else(|| gst_err("buffer not writable"))?;
                bm.set_pts(gst::ClockTime::from_nseconds(pts));
                bm.set_duration(gst::ClockTime::from_nseconds(duration));
                let mut map = bm.map_writable().map_err(gst_err)?;
                let planes: [&[f32]; 4] = match out.mix {
                    Mix::Binaural => [&self.l, &self.r, &[], &[]],
                    Mix::Stereo => [&self.sl, &self.sr, &[], &[]],
                    // First order of the AmbiX bus: ACN 0–3 are W, Y, Z, X
                    // at any bus order.
                    Mix::Ambisonic => [
                        &self.bus[..block],
                        &self.bus[block..2 * block],
                        &self.bus[2 * block..3 * block],
                        &self.bus[3 * block..4 * block],
                    ],
                };
                interleave(&planes[..out.mix.channels()], &mut map);
            }
            if out.src.push_buffer(buf).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// End every rendition's stream.
    pub(crate) fn finish(&self) {
        for out in &self.feed.outputs {
            let _ = out.src.end_of_stream();
        }
    }
}

/// Planar F32 blocks into interleaved little-endian bytes.
fn interleave(planes: &[&[f32]], out: &mut [u8]) {
    let stride = 4 * planes.len();
    for (c, plane) in planes.iter().enumerate() {
        for (dst, x) in out.chunks_exact_mut(stride).zip(plane.iter()) {
            dst[4 * c..4 * c + 4].copy_from_slice(&x.to_le_bytes());
        }
    }
}

/// The audio thread: open the source, report on `ready`, then push blocks
/// on the pipeline clock until `stop`, and end the streams.
pub(crate) fn feed_audio(
    feed: AudioFeed,
    pipeline: &gst::Pipeline,
    stop: &AtomicBool,
    ready: std::sync::mpsc::SyncSender<Result<(), MediaError>>,
    status: Arc<AudioStatus>,
) -> Result<(), MediaError> {
    let mut lp = match AudioLoop::open(feed, status) {
        Ok(lp) => lp,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    let running = || pipeline.current_running_time().map_or(0, |t| t.nseconds());
    while !stop.load(Ordering::SeqCst) {
        match lp.step(running())? {
            Step::Pushed => {}
            Step::NotDue => std::thread::sleep(Duration::from_millis(2)),
            Step::Waiting => std::thread::sleep(Duration::from_millis(2)),
            Step::Closed => return Ok(()),
        }
    }
    lp.finish();
    Ok(())
}
