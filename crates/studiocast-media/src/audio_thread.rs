//! The audio thread of a session: fills the AmbiX bus from the synthetic
//! scene or a live input (interface or embedded audio, through the drift
//! compensator), renders it binaurally and to stereo, meters it, and feeds
//! every audio rendition's `appsrc`. Also the input-health counters it keeps.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use studiocast_capture::compensator::DriftCompensator;
use studiocast_capture::device::{Capture, CaptureConfig};
use studiocast_capture::ring::RingConsumer;
use studiocast_spatial::encoder::StereoDownmix;
use studiocast_spatial::BinauralRenderer;

use crate::ingest::IngestSnapshot;
use crate::meters::{MeterAccumulator, MeterBank};
use crate::scene_audio::SyntheticScene;
use crate::spec::Mix;
use crate::MediaError;

fn gst_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Gst(e.to_string())
}

/// Frames per audio block: one AAC frame.
pub(crate) const BLOCK: usize = 1024;
/// How far ahead of the clock the audio thread may run.
pub(crate) const LEAD: Duration = Duration::from_millis(40);
/// An input that delivers nothing for this long is replaced by silence.
pub(crate) const STARVED: Duration = Duration::from_millis(250);
/// Ring level the drift compensator holds, in blocks.
pub(crate) const TARGET_BLOCKS: usize = 3;

/// Live input health. The audio thread updates it per block with atomics
/// only; the two locked fields are written once, when the source opens.
#[derive(Debug, Default)]
pub struct AudioStatus {
    pub source: std::sync::Mutex<String>,
    pub ring: std::sync::Mutex<Option<Arc<studiocast_capture::ring::RingStats>>>,
    drift_ppm_bits: std::sync::atomic::AtomicU64,
    offset_ms_bits: std::sync::atomic::AtomicU64,
    last_block_ms: AtomicI64,
    /// Blocks of silence inserted because the input went quiet.
    silent_blocks: std::sync::atomic::AtomicU64,
}

/// A copy of [`AudioStatus`] for the API.
#[derive(Debug, Clone, Default)]
pub struct AudioSnapshot {
    pub source: String,
    pub frames_in: u64,
    pub overruns: u64,
    pub underruns: u64,
    pub drift_ppm: f64,
    pub av_offset_ms: f64,
    pub last_block_age_s: f64,
    pub silent_blocks: u64,
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
        let rd = |f: fn(&studiocast_capture::ring::RingStats) -> &std::sync::atomic::AtomicU64| {
            ring.as_ref().map_or(0, |r| f(r).load(Ordering::Relaxed))
        };
        let last = self.last_block_ms.load(Ordering::Relaxed);
        AudioSnapshot {
            source: self.source.lock().map(|s| s.clone()).unwrap_or_default(),
            frames_in: rd(|r| &r.frames_in),
            overruns: rd(|r| &r.overruns),
            underruns: rd(|r| &r.underruns),
            drift_ppm: f64::from_bits(self.drift_ppm_bits.load(Ordering::Relaxed)),
            av_offset_ms: f64::from_bits(self.offset_ms_bits.load(Ordering::Relaxed)),
            last_block_age_s: if last == 0 {
                f64::INFINITY
            } else {
                (crate::now_ms() - last) as f64 / 1000.0
            },
            silent_blocks: self.silent_blocks.load(Ordering::Relaxed),
            video_lag_ms: 0,
            ingest: None,
            video: None,
        }
    }
}

pub(crate) struct AudioFeed {
    /// Where to record the untouched device audio (RF64/WAV, float).
    pub(crate) master: Option<(std::path::PathBuf, Arc<crate::master::RecordingState>)>,
    pub(crate) source: BusSource,
    pub(crate) renderer: BinauralRenderer,
    pub(crate) outputs: Vec<(Mix, gst_app::AppSrc)>,
    pub(crate) rate: u32,
    pub(crate) k: usize,
    pub(crate) meters: Arc<MeterBank>,
}

/// Where the ambisonic bus comes from.
pub(crate) enum BusSource {
    Synthetic(SyntheticScene),
    /// A studio interface, opened on the audio thread (cpal streams stay on
    /// the thread that made them), its channels mixed into the bus by role.
    Device {
        config: CaptureConfig,
        mixer: crate::mixer::BusMixer,
    },
    /// The audio of the video input (SRT, SDI), from the ingest's ring.
    Embedded {
        channels: u16,
        mixer: crate::mixer::BusMixer,
        consumer: Option<RingConsumer>,
    },
}

/// Where a live input's samples wait for the audio thread.
pub(crate) enum InputRing {
    /// Keeps the cpal stream alive.
    Device(Capture),
    Embedded(RingConsumer),
}

impl InputRing {
    fn consumer(&mut self) -> &mut RingConsumer {
        match self {
            InputRing::Device(c) => &mut c.consumer,
            InputRing::Embedded(r) => r,
        }
    }
}

/// How long a live input's samples wait in the ring before the program
/// plays them; video from the same input is held back as long.
pub(crate) fn audio_delay(rate: u32) -> Duration {
    Duration::from_secs_f64((TARGET_BLOCKS * BLOCK) as f64 / rate.max(1) as f64)
}

/// A live input on the audio thread: its ring, the drift compensator, the
/// planar block, the role mixer and the master recorder.
pub(crate) struct LiveInput {
    ring: InputRing,
    comp: DriftCompensator,
    raw: Vec<f32>,
    mixer: crate::mixer::BusMixer,
    master: Option<crate::master::MasterWriter>,
    /// Input starved since (running time, ns).
    starved_since: Option<u64>,
    silent: bool,
}

impl LiveInput {
    fn new(
        ring: InputRing,
        channels: u16,
        mixer: &crate::mixer::BusMixer,
        feed: &AudioFeed,
    ) -> Result<Self, MediaError> {
        let mut comp =
            DriftCompensator::new(channels as usize, feed.rate, BLOCK, TARGET_BLOCKS * BLOCK)
                .map_err(MediaError::Gst)?;
        // Blocks are taken LEAD ahead of the clock; queue that much more
        // before starting so the level settles on target.
        comp.set_prime_extra((LEAD.as_secs_f64() * feed.rate as f64) as usize);
        let master = match &feed.master {
            Some((p, state)) => Some(
                crate::master::MasterWriter::start(p, channels, feed.rate, state.clone())
                    .map_err(MediaError::Gst)?,
            ),
            None => None,
        };
        Ok(LiveInput {
            ring,
            comp,
            raw: vec![0.0f32; channels as usize * BLOCK],
            mixer: mixer.clone(),
            master,
            starved_since: None,
            silent: false,
        })
    }
}

/// The audio thread: fill the AmbiX bus (synthetic scene paced by the
/// pipeline clock, or a live input through the drift compensator), render
/// it, push it to every audio rendition. A live input that goes quiet is
/// replaced by silence on schedule, so the stream never stalls. Stops with
/// EOS on every appsrc. Reports on `ready` once its source is open.
pub(crate) fn feed_audio(
    mut feed: AudioFeed,
    pipeline: &gst::Pipeline,
    stop: &AtomicBool,
    ready: std::sync::mpsc::SyncSender<Result<(), MediaError>>,
    status: &AudioStatus,
) -> Result<(), MediaError> {
    let k = feed.k;
    let mut bus = vec![0.0f32; k * BLOCK];
    let (mut l, mut r) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
    let (mut sl, mut sr) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
    let downmix = StereoDownmix::default();
    let mut frames: u64 = 0;
    let block_ns = BLOCK as u64 * 1_000_000_000 / feed.rate as u64;
    let set_source = |text: String| {
        if let Ok(mut s) = status.source.lock() {
            *s = text;
        }
    };
    // Device input: open here; the stream lives on this thread.
    let opened = match &mut feed.source {
        BusSource::Device { config, mixer } => match studiocast_capture::device::open(config) {
            Ok(cap) => {
                set_source(format!("{}: {}", config.host, cap.device));
                if let Ok(mut r) = status.ring.lock() {
                    *r = Some(cap.stats.clone());
                }
                let (ch, m) = (config.channels, mixer.clone());
                LiveInput::new(InputRing::Device(cap), ch, &m, &feed).map(Some)
            }
            Err(e) => Err(MediaError::Gst(e.to_string())),
        },
        BusSource::Embedded {
            channels,
            mixer,
            consumer,
        } => match consumer.take() {
            Some(c) => {
                set_source("embedded".into());
                if let Ok(mut r) = status.ring.lock() {
                    *r = Some(c.stats());
                }
                let (ch, m) = (*channels, mixer.clone());
                LiveInput::new(InputRing::Embedded(c), ch, &m, &feed).map(Some)
            }
            None => Err(gst_err("embedded audio without an input")),
        },
        BusSource::Synthetic(_) => {
            set_source("synthetic".into());
            Ok(None)
        }
    };
    let mut input = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    let running = || {
        pipeline
            .current_running_time()
            .unwrap_or(gst::ClockTime::ZERO)
    };
    let start = running();
    let lead = LEAD.as_nanos() as u64;
    let inputs = input.as_ref().map_or(k, |i| i.raw.len() / BLOCK);
    let mut meter = MeterAccumulator::new(inputs + 2, feed.rate as usize / 10);
    let mut base: Option<gst::ClockTime> = None;
    while !stop.load(Ordering::SeqCst) {
        // u128: frames × 10⁹ outgrows u64 after two days at 96 kHz.
        let offset = gst::ClockTime::from_nseconds(
            (frames as u128 * 1_000_000_000 / feed.rate.max(1) as u128) as u64,
        );
        let pts = match &mut input {
            None => {
                let pts = offset;
                // Pace like a capture device: never run more than LEAD ahead.
                while running().nseconds() + lead < pts.nseconds() && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if let BusSource::Synthetic(scene) = &mut feed.source {
                    scene.render(&mut bus)?;
                }
                pts
            }
            Some(inp) => {
                // Once running, take a block when the pipeline clock reaches
                // it, like the synthetic source: the ring level then shows
                // only the interface's drift, which the compensator absorbs.
                let due = base.unwrap_or(start) + offset;
                let now = running();
                if base.is_some() && now.nseconds() + lead < due.nseconds() {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if inp
                    .comp
                    .process_into_buffer(inp.ring.consumer(), &mut inp.raw)
                {
                    inp.starved_since = None;
                    if inp.silent {
                        inp.silent = false;
                        tracing::info!("audio input back");
                    }
                    if let Some(m) = &mut inp.master {
                        let (planar, n) = inp.comp.last_input();
                        m.push(planar, n);
                    }
                } else {
                    // Nothing yet. Wait while the block is not due, and for
                    // a short stall; then play silence on schedule.
                    let since = *inp.starved_since.get_or_insert(now.nseconds());
                    // A source that has not delivered yet gets longer to open.
                    let patience = if base.is_some() { STARVED } else { STARVED * 4 };
                    if now.nseconds() + lead < due.nseconds()
                        || now.nseconds().saturating_sub(since) < patience.as_nanos() as u64
                    {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    if !inp.silent {
                        inp.silent = true;
                        inp.comp.restart();
                        tracing::warn!("audio input silent; playing silence until it returns");
                    }
                    inp.raw.iter_mut().for_each(|v| *v = 0.0);
                    inp.ring.consumer().note_underrun(BLOCK);
                    status.silent_blocks.fetch_add(1, Ordering::Relaxed);
                    if let Some(m) = &mut inp.master {
                        // Keep the master on the program's timeline.
                        m.push(&inp.raw, BLOCK);
                    }
                }
                inp.mixer.mix(&inp.raw, BLOCK, &mut bus)?;
                let ctl = inp.comp.controller();
                status
                    .drift_ppm_bits
                    .store(ctl.estimated_drift_ppm().to_bits(), Ordering::Relaxed);
                status
                    .offset_ms_bits
                    .store((ctl.error_s() * 1e3).to_bits(), Ordering::Relaxed);
                *base.get_or_insert(now) + offset
            }
        };
        let ins: Vec<&[f32]> = (0..k).map(|c| &bus[c * BLOCK..(c + 1) * BLOCK]).collect();
        feed.renderer.process_into_buffer(&ins, &mut l, &mut r)?;
        downmix.process(&ins, &mut sl, &mut sr)?;
        // Inputs are metered as they arrived, before drift correction.
        let (metered, n) = match &input {
            Some(i) if !i.silent => i.comp.last_input(),
            Some(i) => (&i.raw[..], BLOCK),
            None => (&bus[..], BLOCK),
        };
        let mut planes: [&[f32]; 66] = [&[]; 66];
        for (c, p) in planes.iter_mut().enumerate().take(inputs) {
            *p = metered.get(c * n..(c + 1) * n).unwrap_or(&[]);
        }
        meter.add(0, &planes[..inputs]);
        meter.add(inputs, &[&l, &r]);
        meter.advance(BLOCK, &feed.meters);
        for (mix, src) in &feed.outputs {
            let (a, b) = match mix {
                Mix::Binaural => (&l, &r),
                Mix::Stereo => (&sl, &sr),
            };
            let mut bytes = Vec::with_capacity(BLOCK * 8);
            for (x, y) in a.iter().zip(b.iter()) {
                bytes.extend_from_slice(&x.to_le_bytes());
                bytes.extend_from_slice(&y.to_le_bytes());
            }
            let mut buf = gst::Buffer::from_mut_slice(bytes);
            {
                let b = buf
                    .get_mut()
                    .ok_or_else(|| gst_err("buffer not writable"))?;
                b.set_pts(pts);
                b.set_duration(gst::ClockTime::from_nseconds(block_ns));
            }
            if src.push_buffer(buf).is_err() {
                return Ok(());
            }
        }
        frames += BLOCK as u64;
        status
            .last_block_ms
            .store(crate::now_ms(), Ordering::Relaxed);
    }
    for (_, src) in &feed.outputs {
        let _ = src.end_of_stream();
    }
    Ok(())
}
