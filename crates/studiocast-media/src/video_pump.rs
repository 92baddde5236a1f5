//! Program video from an ingest: one frame per output tick on the session's
//! clock, the freshest decoded frame when the source is up, a slate when it
//! is not. The encoder downstream sees one continuous, evenly timed stream
//! whatever the source does. A return from the slate happens on a segment
//! boundary and is announced as a discontinuity.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use crate::elements as el;
use crate::ingest::{mono_ns, FrameQueue};
use crate::pipeline::MediaEvent;
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
    pub events: Sender<MediaEvent>,
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
        let frame_ns = 1_000_000_000u64 / self.framerate.max(1) as u64;
        let delay = self.delay.as_nanos() as u64;
        let loss = self.loss.as_nanos() as u64;
        // Start on the next frame due: frames stamped in the past would
        // arrive late at the muxer.
        let mut n: u64 = pipeline
            .current_running_time()
            .map_or(0, |t| t.nseconds().div_ceil(frame_ns));
        let gop = self.gop.max(1) as u64;
        self.stats.on_slate.store(true, Ordering::SeqCst);
        let mut live = false;
        let mut ever_live = false;
        let mut last: Option<gst::Buffer> = None;
        let mut last_arrival = 0u64;
        while !stop.load(Ordering::SeqCst) {
            // Exact per frame (no accumulated rounding), so that every
            // GOP boundary lands on the muxer's fragment boundary.
            let fps = self.framerate.max(1) as u64;
            let due = n * 1_000_000_000 / fps;
            let now_rt = pipeline.current_running_time().map_or(0, |t| t.nseconds());
            if now_rt + (self.lead.as_nanos() as u64) < due {
                std::thread::sleep(Duration::from_millis(3));
                continue;
            }
            let now = mono_ns();
            // One look at the queue per tick: the frame to show, the newest
            // arrival, and the frames passed over since the last one shown.
            let (pick, newest, skipped) = match self.frames.lock() {
                Ok(q) => {
                    let newest = q.back().map(|(t, _)| *t);
                    let pick = q
                        .iter()
                        .rev()
                        .find(|(t, _)| *t + delay <= now)
                        .map(|(t, b)| (*t, b.clone()));
                    let skipped = match pick {
                        Some((t, _)) if last_arrival != 0 => q
                            .iter()
                            .filter(|(x, _)| *x > last_arrival && *x < t)
                            .count(),
                        _ => 0,
                    };
                    (pick, newest, skipped)
                }
                Err(_) => (None, None, 0),
            };
            let fresh = newest.is_some_and(|t| now.saturating_sub(t) < loss);
            if live && !fresh {
                live = false;
                self.stats.on_slate.store(true, Ordering::SeqCst);
                tracing::warn!("program video: slate");
            } else if !live && fresh && pick.is_some() {
                // The first signal of the session cuts in at once; a
                // return waits for a segment boundary so the discontinuity
                // falls between segments.
                if !ever_live {
                    live = true;
                } else if n.is_multiple_of(gop) {
                    live = true;
                    let at = self.pdt_offset_ms.load(Ordering::SeqCst) + (due / 1_000_000) as i64;
                    let _ = self.events.send(MediaEvent::Discontinuity { pdt_ms: at });
                    tracing::info!("program video: source back");
                }
                if live {
                    ever_live = true;
                    self.stats.on_slate.store(false, Ordering::SeqCst);
                }
            }
            let frame = if live {
                match pick {
                    Some((t, b)) if t != last_arrival => {
                        self.stats
                            .dropped
                            .fetch_add(skipped as u64, Ordering::Relaxed);
                        last_arrival = t;
                        last = Some(b.clone());
                        b
                    }
                    _ => {
                        self.stats.repeated.fetch_add(1, Ordering::Relaxed);
                        last.clone().unwrap_or_else(|| self.slate.clone())
                    }
                }
            } else {
                self.stats.slate_frames.fetch_add(1, Ordering::Relaxed);
                self.slate.clone()
            };
            // Segments start on the GOP grid whatever the encoder saw
            // before: ask for the keyframe explicitly.
            if n.is_multiple_of(gop) {
                let pts = due;
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
}
