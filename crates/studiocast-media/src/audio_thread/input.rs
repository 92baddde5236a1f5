//! Where the audio thread's bus comes from: the synthetic scene, or a live
//! input (an interface, or the audio embedded in the video input) taken
//! through the drift compensator and mixed into the bus by role.

use studiocast_capture::compensator::DriftCompensator;
use studiocast_capture::device::{Capture, CaptureConfig};
use studiocast_capture::drift::DriftController;
use studiocast_capture::ring::RingConsumer;

use super::{AudioFeed, AudioStatus, LEAD, TARGET_BLOCKS};
use crate::master::MasterWriter;
use crate::mixer::BusMixer;
use crate::scene_audio::SyntheticScene;
use crate::MediaError;

/// Where the ambisonic bus comes from.
pub(crate) enum BusSource {
    Synthetic(SyntheticScene),
    /// A studio interface, opened on the audio thread (cpal streams stay on
    /// the thread that made them), its channels mixed into the bus by role.
    Device {
        config: CaptureConfig,
        mixer: BusMixer,
    },
    /// The audio of the video input (SRT, SDI), from the ingest's ring.
    Embedded {
        channels: u16,
        mixer: BusMixer,
        consumer: Option<RingConsumer>,
    },
}

/// Where a live input's samples wait for the audio thread.
enum InputRing {
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

/// A live input on the audio thread: its ring, the drift compensator, the
/// planar block, the role mixer and the master recorder.
pub(crate) struct LiveInput {
    ring: InputRing,
    comp: DriftCompensator,
    raw: Vec<f32>,
    mixer: BusMixer,
    master: Option<MasterWriter>,
    channels: usize,
    block: usize,
    /// The block in `raw` is silence, not the input's.
    silent: bool,
}

/// Open the feed's live input, if it has one; a missing interface fails.
pub(crate) fn open_live(
    feed: &mut AudioFeed,
    status: &AudioStatus,
) -> Result<Option<LiveInput>, MediaError> {
    let (ring, channels, mixer) = match &mut feed.source {
        BusSource::Synthetic(_) => {
            status.set_source("synthetic".into());
            return Ok(None);
        }
        BusSource::Device { config, mixer } => {
            let cap = studiocast_capture::device::open(config)
                .map_err(|e| MediaError::Gst(e.to_string()))?;
            status.set_source(format!("{}: {}", config.host, cap.device));
            if let Ok(mut r) = status.ring.lock() {
                *r = Some(cap.stats.clone());
            }
            (InputRing::Device(cap), config.channels, mixer.clone())
        }
        BusSource::Embedded {
            channels,
            mixer,
            consumer,
        } => {
            let c = consumer
                .take()
                .ok_or_else(|| MediaError::Gst("embedded audio without an input".into()))?;
            status.set_source("embedded".into());
            if let Ok(mut r) = status.ring.lock() {
                *r = Some(c.stats());
            }
            (InputRing::Embedded(c), *channels, mixer.clone())
        }
    };
    LiveInput::new(ring, channels, mixer, feed).map(Some)
}

impl LiveInput {
    fn new(
        ring: InputRing,
        channels: u16,
        mixer: BusMixer,
        feed: &AudioFeed,
    ) -> Result<Self, MediaError> {
        let ch = channels as usize;
        let mut comp = DriftCompensator::new(ch, feed.rate, feed.block, TARGET_BLOCKS * feed.block)
            .map_err(MediaError::Gst)?;
        // Blocks are taken LEAD ahead of the clock; queue that much more
        // before starting so the level settles on target.
        comp.set_prime_extra((LEAD.as_secs_f64() * feed.rate as f64) as usize);
        let master = match &feed.master {
            Some((p, state)) => Some(
                MasterWriter::start(p, channels, feed.rate, feed.block, state.clone())
                    .map_err(MediaError::Gst)?,
            ),
            None => None,
        };
        Ok(LiveInput {
            ring,
            comp,
            raw: vec![0.0f32; ch * feed.block],
            mixer,
            master,
            channels: ch,
            block: feed.block,
            silent: false,
        })
    }

    pub(crate) fn channels(&self) -> usize {
        self.channels
    }

    /// Try to take the next block from the ring through the compensator.
    pub(crate) fn try_block(&mut self) -> bool {
        self.comp
            .process_into_buffer(self.ring.consumer(), &mut self.raw)
    }

    /// The input delivered: the master records exactly what it consumed.
    pub(crate) fn record_block(&mut self) {
        self.silent = false;
        if let Some(m) = &mut self.master {
            let (planar, n) = self.comp.last_input();
            m.push(planar, n);
        }
    }

    /// The input is quiet: this block is silence, on the program's timeline
    /// in the master too.
    pub(crate) fn silence_block(&mut self) {
        self.silent = true;
        self.raw.iter_mut().for_each(|v| *v = 0.0);
        self.ring.consumer().note_underrun(self.block);
        if let Some(m) = &mut self.master {
            m.push(&self.raw, self.block);
        }
    }

    /// A silence began: the input's clock is re-learned when it returns.
    pub(crate) fn restart(&mut self) {
        self.comp.restart();
    }

    pub(crate) fn mix(&mut self, bus: &mut [f32]) -> Result<(), MediaError> {
        self.mixer.mix(&self.raw, self.block, bus)
    }

    pub(crate) fn controller(&self) -> &DriftController {
        self.comp.controller()
    }

    /// What the meters read: the input as it arrived (before drift
    /// correction), planar with its frame count.
    pub(crate) fn metered(&self) -> (&[f32], usize) {
        if self.silent {
            (&self.raw[..], self.block)
        } else {
            self.comp.last_input()
        }
    }
}
