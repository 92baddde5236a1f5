//! The running half of the pipeline typestate: threads, ingest and bus
//! watcher up; stops on EOS or teardown, and tears itself down when dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;

use super::sinks::watch_bus;
use super::{gst_err, BuiltPipeline, PumpParts, Shared};
use crate::audio_thread::{audio_delay, feed_audio, AudioSnapshot, BusSource, VideoSnapshot, LEAD};
use crate::events::MediaEvent;
use crate::ingest::Ingest;
use crate::meters::MeterBank;
use crate::video_pump::VideoPump;
use crate::MediaError;

/// How long an audio source may take to open before the start fails.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A started pipeline: every thread it runs is joined by
/// [`RunningPipeline::shutdown`] or on drop.
pub struct RunningPipeline {
    pipeline: gst::Pipeline,
    video_src: Option<gst::Element>,
    stop: Arc<AtomicBool>,
    /// Tells the bus watcher to return even if no EOS or error came.
    quit: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    ingest: Option<Ingest>,
    shared: Shared,
}

impl BuiltPipeline {
    /// Start playing: bus watcher, ingest and pump, audio thread. Threads
    /// run inside `span` (the session's), so their logs say whose they are.
    /// On failure everything started so far is stopped again.
    pub fn start(self, span: tracing::Span) -> Result<RunningPipeline, MediaError> {
        let BuiltPipeline {
            pipeline,
            video_src,
            events,
            pdt_offset_ms,
            eos,
            ingest,
            mut audio,
            audio_muxers,
            segment,
            video_origin,
            shared,
        } = self;
        let mut run = RunningPipeline {
            pipeline,
            video_src,
            stop: Arc::new(AtomicBool::new(false)),
            quit: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            ingest: None,
            shared,
        };
        run.pipeline
            .set_state(gst::State::Playing)
            .map_err(gst_err)?;
        // Capture time = wall clock at running time 0 + running time.
        let running = run
            .pipeline
            .current_running_time()
            .map_or(0, |t| t.mseconds() as i64);
        pdt_offset_ms.store(crate::now_ms() - running, Ordering::SeqCst);
        let bus = run
            .pipeline
            .bus()
            .ok_or_else(|| gst_err("pipeline has no bus"))?;
        let (tx, quit) = (events.clone(), run.quit.clone());
        run.spawn("bus-watch", &span, move || watch_bus(bus, tx, quit, eos))?;
        if !audio_muxers.is_empty() {
            let (stop, pipeline) = (run.stop.clone(), run.pipeline.clone());
            run.spawn("segment-splits", &span, move || {
                request_splits(&pipeline, &audio_muxers, segment, &video_origin, &stop)
            })?;
        }
        if let Some((spec, parts)) = ingest {
            let (ingest, consumer) = Ingest::start(spec)?;
            if let BusSource::Embedded { consumer: c, .. } = &mut audio.source {
                *c = consumer;
            }
            let PumpParts {
                appsrc,
                slate,
                framerate,
                gop,
            } = parts;
            let pump = VideoPump {
                appsrc,
                frames: ingest.frames(),
                slate,
                framerate,
                gop,
                delay: audio_delay(audio.rate, audio.block),
                loss: ingest.loss_timeout(),
                lead: LEAD,
                events: events.clone(),
                pdt_offset_ms: pdt_offset_ms.clone(),
                stats: run.shared.pump_stats.clone(),
            };
            run.ingest = Some(ingest);
            let (stop, pipeline) = (run.stop.clone(), run.pipeline.clone());
            run.spawn("video-pump", &span, move || pump.run(&pipeline, &stop))?;
        }
        let (stop, pipeline) = (run.stop.clone(), run.pipeline.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let status = run.shared.status.clone();
        run.spawn("audio", &span, move || {
            if let Err(e) = feed_audio(audio, &pipeline, &stop, ready_tx, status) {
                events.send(MediaEvent::Error(e.to_string()));
            }
        })?;
        // A missing interface must fail the start, not the session later.
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(())) => Ok(run),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // The audio thread is stuck in the device's open: it cannot
                // be joined. It is told to stop and left to finish on its
                // own (it exits as soon as the open returns), so the start
                // fails now instead of hanging with it.
                run.stop.store(true, Ordering::SeqCst);
                drop(run.threads.pop());
                Err(gst_err(format!(
                    "the audio source did not open within {} s",
                    OPEN_TIMEOUT.as_secs()
                )))
            }
        }
        // On every error path `run` drops here, which tears it down.
    }
}

/// Keep every audio muxer a few segment boundaries ahead of the clock:
/// each is asked to start a fragment at every segment boundary of the
/// video's grid (its first fragment's running time plus multiples of the
/// segment duration, where its key frames are), so segment N of every
/// rendition covers the same time, within one AAC frame. A test pattern's
/// GOP starts with its first frame, a few tens of ms after running time 0;
/// an ingest's pump forces key frames on the grid from 0; audio-only
/// streams use 0.
fn request_splits(
    pipeline: &gst::Pipeline,
    muxers: &[gst::Element],
    segment: gst::ClockTime,
    origin: &AtomicU64,
    stop: &AtomicBool,
) {
    const AHEAD: u64 = 3;
    let seg = segment.nseconds().max(1);
    let mut next = 1u64;
    while !stop.load(Ordering::SeqCst) {
        let o = origin.load(Ordering::SeqCst);
        if o == super::ORIGIN_UNKNOWN {
            // The first audio fragment starts where it may; the grid is
            // known before the first boundary (2 s away).
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let now = pipeline.current_running_time().map_or(0, |t| t.nseconds());
        let current = now.saturating_sub(o) / seg;
        // Past boundaries are no use (a muxer ignores them); catch up.
        next = next.max(current + 1);
        while next <= current + AHEAD {
            let at = gst::ClockTime::from_nseconds(o.saturating_add(next.saturating_mul(seg)));
            for m in muxers {
                crate::elements::cmafmux_split_at(m, at);
            }
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl RunningPipeline {
    fn spawn(
        &mut self,
        name: &str,
        span: &tracing::Span,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), MediaError> {
        let span = span.clone();
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || span.in_scope(f))
            .map_err(gst_err)?;
        self.threads.push(t);
        Ok(())
    }

    /// Ask every source to finish: the muxers flush their last fragments
    /// and an [`MediaEvent::Eos`] follows.
    pub fn request_eos(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(v) = &self.video_src {
            if !v.send_event(gst::event::Eos::new()) {
                tracing::warn!("video source refused EOS; sending it to the pipeline");
                self.pipeline.send_event(gst::event::Eos::new());
            }
        }
    }

    /// Live input health.
    pub fn status(&self) -> AudioSnapshot {
        let mut s = self.shared.status.snapshot();
        s.video_lag_ms = self.shared.video_lag.load(Ordering::Relaxed);
        s.ingest = self.ingest.as_ref().map(|i| i.snapshot());
        if self.ingest.is_some() {
            let p = &self.shared.pump_stats;
            s.video = Some(VideoSnapshot {
                frames_out: p.frames_out.load(Ordering::Relaxed),
                slate_frames: p.slate_frames.load(Ordering::Relaxed),
                repeated_frames: p.repeated.load(Ordering::Relaxed),
                dropped_frames: p.dropped.load(Ordering::Relaxed),
                on_slate: p.on_slate.load(Ordering::Relaxed),
            });
        }
        s
    }

    /// Levels of every input channel and the binaural output.
    pub fn meters(&self) -> Arc<MeterBank> {
        self.shared.meters.clone()
    }

    /// The underlying pipeline, for diagnostics (graph dumps, statistics,
    /// fault injection in tests).
    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Tear down (after EOS, or to abort).
    pub fn shutdown(mut self) {
        self.teardown();
    }

    /// Stop every thread and the pipelines; safe to call twice.
    fn teardown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.quit.store(true, Ordering::SeqCst);
        let _ = self.pipeline.set_state(gst::State::Null);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.ingest = None;
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        self.teardown();
    }
}
