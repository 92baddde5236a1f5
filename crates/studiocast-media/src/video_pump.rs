//! Program video from an ingest: one frame per output tick on the session's
//! clock, the freshest decoded frame when the source is up, a slate when it
//! is not. The encoder downstream sees one continuous, evenly timed stream
//! whatever the source does. A return from the slate happens on a segment
//! boundary and is announced as a discontinuity. The decisions are the
//! Sans-IO [`SlateMachine`]'s; this thread paces it and moves frames.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use crate::elements as el;
use crate::events::{EventSender, MediaEvent};
use crate::ingest::{mono_ns, FrameQueue, MAX_FRAMES as MAX_QUEUED};
use crate::machines::{Show, SlateConfig, SlateMachine};
use crate::MediaError;

/// Counters for the session status.
#[derive(Debug, Default)]
pub struct PumpStats {
    pub frames_out: AtomicU64,
    pub slate_frames: AtomicU64,
    /// Ticks that found no newer frame and repeated the last one.
    pub repeated: AtomicU64,
    /// Decoded frames that were never shown (source faster than output).
    pub dropped: AtomicU64,
    pub on_slate: AtomicBool,
}

pub(crate) struct VideoPump {
    pub appsrc: gst_app::AppSrc,
    pub frames: FrameQueue,
    pub slate: gst::Buffer,
    pub framerate: u32,
    /// Frames per segment: switches back from the slate wait for a boundary.
    pub gop: u32,
    /// How far behind arrival frames are shown, to line up with the audio
    /// path's delay.
    pub delay: Duration,
    pub loss: Duration,
    pub lead: Duration,
    pub events: EventSender,
    pub pdt_offset_ms: Arc<AtomicI64>,
    pub stats: Arc<PumpStats>,
}

/// Raw I420 caps of the program video.
pub fn raw_caps(width: u32, height: u32, framerate: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(framerate as i32, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

/// Render the "source lost" card once.
pub fn make_slate(width: u32, height: u32, text: &str) -> Result<gst::Buffer, MediaError> {
    let err = |e: &dyn std::fmt::Display| MediaError::Gst(format!("slate: {e}"));
    let p = gst::Pipeline::new();
    let src = el::videotestsrc("solid-color")?;
    src.set_property("is-live", false);
    src.set_property("num-buffers", 1i32);
    src.set_property("foreground-color", 0xff20_2830u32);
    let text = el::textoverlay(text)?;
    let conv = el::videoconvert()?;
    let caps = el::capsfilter(raw_caps(width, height, 30))?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    p.add_many([&src, &text, &conv, &caps, sink.upcast_ref()])
        .map_err(|e| err(&e))?;
    gst::Element::link_many([&src, &text, &conv, &caps, sink.upcast_ref()]).map_err(|e| err(&e))?;
    p.set_state(gst::State::Playing).map_err(|e| err(&e))?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
    let _ = p.set_state(gst::State::Null);
    sample
        .and_then(|s| s.buffer_owned())
        .ok_or_else(|| err(&"no frame"))
}

impl VideoPump {
    /// Runs until `stop`, then ends the stream.
    pub fn run(self, pipeline: &gst::Pipeline, stop: &AtomicBool) {
        let fps = self.framerate.max(1) as u64;
        let frame_ns = 1_000_000_000 / fps;
        let mut machine = SlateMachine::new(SlateConfig {
            gop: self.gop.max(1) as u64,
            delay_ns: self.delay.as_nanos() as u64,
            loss_ns: self.loss.as_nanos() as u64,
        });
        // Start on the next frame due: frames stamped in the past would
        // arrive late at the muxer.
        let mut n: u64 = pipeline
            .current_running_time()
            .map_or(0, |t| t.nseconds().div_ceil(frame_ns));
        self.stats.on_slate.store(true, Ordering::SeqCst);
        let mut last: Option<gst::Buffer> = None;
        while !stop.load(Ordering::SeqCst) {
            // Exact per frame (no accumulated rounding), so that every
            // GOP boundary lands on the muxer's fragment boundary.
            let due = n * 1_000_000_000 / fps;
            let now_rt = pipeline.current_running_time().map_or(0, |t| t.nseconds());
            if now_rt + (self.lead.as_nanos() as u64) < due {
                std::thread::sleep(Duration::from_millis(3));
                continue;
            }
            let (tick, picked) = self.decide(&mut machine, n, mono_ns());
            self.report(&tick, due);
            let frame = match (tick.show, picked) {
                (Show::Frame(_), Some(b)) => {
                    last = Some(b.clone());
                    b
                }
                (Show::Repeat, _) => last.clone().unwrap_or_else(|| self.slate.clone()),
                _ => self.slate.clone(),
            };
            if tick.key_frame {
                self.force_key_unit(due);
            }
            // A shallow copy: new timestamps, shared memory.
            let mut out = frame.copy();
            {
                let b = out.make_mut();
                b.set_pts(gst::ClockTime::from_nseconds(due));
                b.set_dts(gst::ClockTime::NONE);
                b.set_duration(gst::ClockTime::from_nseconds(
                    (n + 1) * 1_000_000_000 / fps - due,
                ));
                b.unset_flags(gst::BufferFlags::DISCONT);
            }
            if self.appsrc.push_buffer(out).is_err() {
                return;
            }
            self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
        let _ = self.appsrc.end_of_stream();
    }

    /// One look at the queue: the machine's decision and, when it picks a
    /// queued frame, that frame.
    fn decide(
        &self,
        machine: &mut SlateMachine,
        n: u64,
        now: u64,
    ) -> (crate::machines::Tick, Option<gst::Buffer>) {
        let Ok(q) = self.frames.lock() else {
            return (machine.tick(n, now, &[]), None);
        };
        let mut stamps = [0u64; MAX_QUEUED];
        let len = q.len().min(MAX_QUEUED);
        for (s, (t, _)) in stamps.iter_mut().zip(q.iter().skip(q.len() - len)) {
            *s = *t;
        }
        let tick = machine.tick(n, now, &stamps[..len]);
        let picked = match tick.show {
            Show::Frame(at) => q.iter().find(|(t, _)| *t == at).map(|(_, b)| b.clone()),
            _ => None,
        };
        (tick, picked)
    }

    /// Counters, the log, and the discontinuity event for the packager.
    fn report(&self, tick: &crate::machines::Tick, due: u64) {
        let s = &self.stats;
        match tick.show {
            Show::Slate => {
                s.slate_frames.fetch_add(1, Ordering::Relaxed);
            }
            Show::Repeat => {
                s.repeated.fetch_add(1, Ordering::Relaxed);
            }
            Show::Frame(_) => {}
        }
        s.dropped.fetch_add(tick.dropped, Ordering::Relaxed);
        if tick.lost {
            s.on_slate.store(true, Ordering::SeqCst);
            tracing::warn!("program video: slate");
        }
        if tick.show != Show::Slate && s.on_slate.swap(false, Ordering::SeqCst) {
            tracing::info!("program video: input on the air");
        }
        if tick.discontinuity {
            let at = self
                .pdt_offset_ms
                .load(Ordering::SeqCst)
                .saturating_add((due / 1_000_000) as i64);
            self.events.send(MediaEvent::Discontinuity { pdt_ms: at });
        }
    }

    /// Segments start on the GOP grid whatever the encoder saw before: the
    /// pump alone asks for their key frames (the muxer does not).
    fn force_key_unit(&self, pts: u64) {
        let ev = gst::event::CustomDownstream::new(
            gst::Structure::builder("GstForceKeyUnit")
                .field("timestamp", pts)
                .field("stream-time", pts)
                .field("running-time", pts)
                .field("all-headers", true)
                .field("count", 0u32)
                .build(),
        );
        let _ = self.appsrc.send_event(ev);
    }
}
