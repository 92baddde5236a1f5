//! Inputs that come and go (SRT encoders, cameras, SDI cards). Each runs in
//! an ingest pipeline of its own, decoded to raw frames and samples that the
//! session pipeline takes at its own pace. The session never sees the
//! source's timestamps, so a lost or restarted encoder cannot stall or
//! confuse the session's encoders: the program carries on with a slate and
//! silence while the ingest pipeline is reopened, without a technician.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use studiocast_capture::ring::{ring, RingConsumer, RingProducer};

use crate::elements as el;
use crate::machines::{LossConfig, LossDetector, Observation, Reopen, StopReason};
use crate::spec::{SrtMode, VideoSource};
use crate::MediaError;

/// Decoded frames kept for the session to pick from (enough to cover the
/// audio path's delay at 60 fps).
pub(crate) const MAX_FRAMES: usize = 16;

/// What to ingest and what to convert it to.
#[derive(Debug, Clone)]
pub struct IngestSpec {
    pub source: VideoSource,
    pub width: u32,
    pub height: u32,
    /// Embedded audio wanted: (channels, sample rate).
    pub audio: Option<(u16, u32)>,
}

impl IngestSpec {
    fn loss_timeout(&self) -> Duration {
        match &self.source {
            VideoSource::Srt(s) => Duration::from_millis(s.loss_timeout_ms as u64),
            _ => Duration::from_secs(2),
        }
    }

    /// A short name for logs and the status: `srt://…`, `/dev/video0`, …
    pub fn describe(&self) -> String {
        Self::describe_source(&self.source)
    }

    pub fn describe_source(source: &VideoSource) -> String {
        match source {
            VideoSource::Srt(s) => s.uri(),
            VideoSource::V4l2 { device } => format!("V4L2 {device}"),
            VideoSource::Decklink { device_number, .. } => format!("DeckLink {device_number}"),
            VideoSource::TestPattern { .. } => "test pattern".into(),
            VideoSource::File => "the job's input file".into(),
        }
    }
}

/// Input health, updated by the ingest threads with atomics.
#[derive(Debug, Default)]
pub struct IngestHealth {
    pub connected: AtomicBool,
    /// Wall clock of the last decoded frame or sample block, ms since the
    /// Unix epoch (0: never).
    pub last_packet_ms: AtomicI64,
    /// The same on the monotonic clock ([`mono_ns`]), for loss detection:
    /// a wall-clock step must not fake or hide a loss.
    pub last_packet_mono: AtomicU64,
    /// Times the source came back after being lost.
    pub reconnects: AtomicU64,
    /// Times the source was lost.
    pub losses: AtomicU64,
    pub frames_in: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// A copy of [`IngestHealth`] for the API.
#[derive(Debug, Clone, Default)]
pub struct IngestSnapshot {
    pub source: String,
    pub connected: bool,
    pub last_packet_age_s: f64,
    pub reconnects: u64,
    pub losses: u64,
    pub frames_in: u64,
    pub last_error: Option<String>,
}

/// Monotonic nanoseconds on the same clock GStreamer pipelines use.
pub(crate) fn mono_ns() -> u64 {
    gst::SystemClock::obtain().time().nseconds()
}

/// Decoded frames in arrival order, stamped with [`mono_ns`].
pub type FrameQueue = Arc<Mutex<VecDeque<(u64, gst::Buffer)>>>;

pub struct Ingest {
    spec: IngestSpec,
    frames: FrameQueue,
    health: Arc<IngestHealth>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Why an input cannot start, naming the device.
fn unavailable(spec: &IngestSpec, reason: impl std::fmt::Display) -> MediaError {
    MediaError::InputUnavailable {
        input: spec.describe(),
        reason: reason.to_string(),
    }
}

/// Where Blackmagic's driver installs the library the DeckLink plugin loads.
pub fn decklink_driver_present() -> bool {
    [
        "/usr/lib/libDeckLinkAPI.so",
        "/usr/lib/x86_64-linux-gnu/libDeckLinkAPI.so",
        "/usr/lib/aarch64-linux-gnu/libDeckLinkAPI.so",
        "/usr/local/lib/libDeckLinkAPI.so",
        "/usr/lib64/libDeckLinkAPI.so",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

/// Refuse a hardware input that is not there, before building anything.
pub fn check_present(source: &VideoSource) -> Result<(), String> {
    match source {
        VideoSource::V4l2 { device } => {
            use std::os::unix::fs::FileTypeExt;
            match std::fs::metadata(device) {
                Ok(m) if m.file_type().is_char_device() => Ok(()),
                Ok(_) => Err(format!("{device} is not a video device")),
                Err(_) => Err(format!(
                    "{device} is not present (camera unplugged or its driver not loaded)"
                )),
            }
        }
        VideoSource::Decklink { .. } if !decklink_driver_present() => Err(
            "Blackmagic Desktop Video driver (libDeckLinkAPI.so) is not installed, or no card is present".into(),
        ),
        VideoSource::File => Err(
            "this preset takes its picture from a transcoding job's input file; submit a job with it instead".into(),
        ),
        _ => Ok(()),
    }
}

impl Ingest {
    /// Open the input and keep it open until the ingest is dropped. Fails when the
    /// device is absent or the first open fails (port taken, driver missing);
    /// an SRT listener with no encoder yet connected starts fine.
    /// Returns the ingest and, when embedded audio is wanted, the consumer
    /// end of its sample ring.
    pub fn start(spec: IngestSpec) -> Result<(Self, Option<RingConsumer>), MediaError> {
        crate::init()?;
        check_present(&spec.source).map_err(|r| unavailable(&spec, r))?;
        let frames: FrameQueue = Arc::new(Mutex::new(VecDeque::new()));
        let health = Arc::new(IngestHealth::default());
        let (producer, consumer) = match spec.audio {
            Some((ch, rate)) => {
                let (p, c, _) = ring(ch as usize, rate as usize * 2);
                (Some(Arc::new(Mutex::new(p))), Some(c))
            }
            None => (None, None),
        };
        let sinks = Sinks {
            frames: frames.clone(),
            audio: producer,
            health: health.clone(),
        };
        // The first open runs here so that a missing device fails the start.
        let first = open(&spec, &sinks).map_err(|e| unavailable(&spec, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let spec = spec.clone();
            let stop = stop.clone();
            let keep = first.clone();
            std::thread::Builder::new()
                .name("ingest".into())
                .spawn(move || supervise(spec, sinks, first, &stop))
                .map_err(|e| {
                    // Release the port or device the first open holds.
                    let _ = keep.set_state(gst::State::Null);
                    MediaError::Gst(e.to_string())
                })?
        };
        Ok((
            Ingest {
                spec,
                frames,
                health,
                stop,
                thread: Some(thread),
            },
            consumer,
        ))
    }

    pub fn loss_timeout(&self) -> Duration {
        self.spec.loss_timeout()
    }

    pub fn frames(&self) -> FrameQueue {
        self.frames.clone()
    }

    pub fn snapshot(&self) -> IngestSnapshot {
        snapshot(&self.spec.describe(), &self.health)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn snapshot(source: &str, h: &IngestHealth) -> IngestSnapshot {
    let last = h.last_packet_ms.load(Ordering::Relaxed);
    IngestSnapshot {
        source: source.to_string(),
        connected: h.connected.load(Ordering::Relaxed),
        last_packet_age_s: crate::age_s(last),
        reconnects: h.reconnects.load(Ordering::Relaxed),
        losses: h.losses.load(Ordering::Relaxed),
        frames_in: h.frames_in.load(Ordering::Relaxed),
        last_error: h.last_error.lock().ok().and_then(|e| e.clone()),
    }
}

/// Where decoded media goes; survives every reopen.
#[derive(Clone)]
struct Sinks {
    frames: FrameQueue,
    audio: Option<Arc<Mutex<RingProducer>>>,
    health: Arc<IngestHealth>,
}

impl Sinks {
    /// A frame or sample block arrived: the source is up.
    fn packet(&self) {
        let h = &self.health;
        h.last_packet_ms.store(crate::now_ms(), Ordering::Relaxed);
        h.last_packet_mono.store(mono_ns(), Ordering::Relaxed);
        if !h.connected.swap(true, Ordering::SeqCst) {
            if h.losses.load(Ordering::SeqCst) > 0 {
                h.reconnects.fetch_add(1, Ordering::SeqCst);
            }
            if let Ok(mut e) = h.last_error.lock() {
                *e = None;
            }
            tracing::info!("input signal present");
        }
    }
}

fn gst_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Build and start one ingest pipeline; errors name what failed.
fn open(spec: &IngestSpec, sinks: &Sinks) -> Result<gst::Pipeline, String> {
    let pipeline = gst::Pipeline::new();
    let e = |r: Result<gst::Element, MediaError>| r.map_err(|e| e.to_string());
    match &spec.source {
        VideoSource::Srt(s) => {
            let src = e(el::srtsrc(
                &s.uri(),
                s.latency_ms,
                s.passphrase.as_deref(),
                s.stream_id.as_deref(),
            ))?;
            let dec = e(el::decodebin())?;
            pipeline.add_many([&src, &dec]).map_err(gst_err)?;
            src.link(&dec).map_err(gst_err)?;
            attach_decoder(&pipeline, &dec, spec, sinks);
        }
        VideoSource::V4l2 { device } => {
            let src = e(el::v4l2src(device))?;
            let dec = e(el::decodebin())?;
            pipeline.add_many([&src, &dec]).map_err(gst_err)?;
            src.link(&dec).map_err(gst_err)?;
            attach_decoder(&pipeline, &dec, spec, sinks);
        }
        VideoSource::Decklink {
            device_number,
            mode,
        } => {
            let src = e(el::decklinkvideosrc(*device_number, mode))?;
            pipeline.add(&src).map_err(gst_err)?;
            let pad = src
                .static_pad("src")
                .ok_or("decklinkvideosrc has no src pad")?;
            video_branch(&pipeline, &pad, spec, sinks)?;
            if let Some((ch, _)) = spec.audio {
                let a = e(el::decklinkaudiosrc(*device_number, ch))?;
                pipeline.add(&a).map_err(gst_err)?;
                let pad = a
                    .static_pad("src")
                    .ok_or("decklinkaudiosrc has no src pad")?;
                audio_branch(&pipeline, &pad, spec, sinks)?;
            }
        }
        VideoSource::TestPattern { .. } => return Err("a test pattern needs no ingest".into()),
        VideoSource::File => return Err("a file is a transcoding job's, not a session's".into()),
    }
    if let Err(err) = pipeline.set_state(gst::State::Playing) {
        let detail = pipeline
            .bus()
            .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
            .and_then(|m| match m.view() {
                gst::MessageView::Error(x) => Some(x.error().to_string()),
                _ => None,
            });
        let _ = pipeline.set_state(gst::State::Null);
        return Err(detail.unwrap_or_else(|| format!("the input did not open ({err})")));
    }
    Ok(pipeline)
}

/// Link decodebin's first video and first audio pads as they appear.
fn attach_decoder(pipeline: &gst::Pipeline, dec: &gst::Element, spec: &IngestSpec, sinks: &Sinks) {
    let weak = pipeline.downgrade();
    let spec = spec.clone();
    let sinks = sinks.clone();
    let linked = Arc::new(Mutex::new((false, false)));
    dec.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let name = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let Ok(mut done) = linked.lock() else { return };
        let r = if name.starts_with("video/") && !done.0 {
            done.0 = true;
            video_branch(&pipeline, pad, &spec, &sinks)
        } else if name.starts_with("audio/") && !done.1 && spec.audio.is_some() {
            done.1 = true;
            audio_branch(&pipeline, pad, &spec, &sinks)
        } else {
            Ok(())
        };
        if let Err(e) = r {
            tracing::warn!(%e, caps = %name, "cannot use an input stream");
        }
    });
}

fn add_chain(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    elems: &[gst::Element],
) -> Result<(), String> {
    pipeline.add_many(elems).map_err(gst_err)?;
    gst::Element::link_many(elems).map_err(gst_err)?;
    for x in elems {
        x.sync_state_with_parent().map_err(gst_err)?;
    }
    let sink = elems[0].static_pad("sink").ok_or("no sink pad")?;
    pad.link(&sink).map_err(gst_err)?;
    Ok(())
}

fn video_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    spec: &IngestSpec,
    sinks: &Sinks,
) -> Result<(), String> {
    let e = |r: Result<gst::Element, MediaError>| r.map_err(|e| e.to_string());
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", spec.width as i32)
        .field("height", spec.height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    // Frames are released at their timestamps (sync), so that video and
    // audio leave the ingest as the encoder timed them.
    let sink = gst_app::AppSink::builder()
        .caps(&caps)
        .sync(true)
        .max_buffers(4)
        .drop(true)
        .build();
    let frames = sinks.frames.clone();
    let s2 = sinks.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(b) = sample.buffer_owned() {
                    s2.packet();
                    s2.health.frames_in.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut q) = frames.lock() {
                        q.push_back((mono_ns(), b));
                        while q.len() > MAX_FRAMES {
                            q.pop_front();
                        }
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    add_chain(
        pipeline,
        pad,
        &[
            e(el::queue())?,
            e(el::deinterlace())?,
            e(el::videoconvert())?,
            e(el::videoscale())?,
            sink.upcast(),
        ],
    )
}

fn audio_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    spec: &IngestSpec,
    sinks: &Sinks,
) -> Result<(), String> {
    let e = |r: Result<gst::Element, MediaError>| r.map_err(|e| e.to_string());
    let Some((channels, rate)) = spec.audio else {
        return Ok(());
    };
    let Some(producer) = sinks.audio.clone() else {
        return Ok(());
    };
    let mut caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", rate as i32)
        .field("channels", channels as i32);
    caps = match channels {
        1 => caps.field("channel-mask", gst::Bitmask::new(0x4)),
        2 => caps.field("channel-mask", gst::Bitmask::new(0x3)),
        // Studio channels are not loudspeaker feeds: keep them unpositioned.
        _ => caps.field("channel-mask", gst::Bitmask::new(0)),
    };
    let sink = gst_app::AppSink::builder()
        .caps(&caps.build())
        .sync(true)
        .build();
    let s2 = sinks.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buf) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(map) = buf.map_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let bytes = map.as_slice();
                let mut tmp = [0.0f32; 1024];
                if let Ok(mut p) = producer.lock() {
                    // Whole frames per push, in stack-sized pieces.
                    let step = (tmp.len() / channels as usize) * channels as usize * 4;
                    for piece in bytes.chunks(step) {
                        let n = piece.len() / 4;
                        for (d, c) in tmp[..n].iter_mut().zip(piece.chunks_exact(4)) {
                            *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        }
                        p.push_interleaved(&tmp[..n]);
                    }
                }
                s2.packet();
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    add_chain(
        pipeline,
        pad,
        &[
            e(el::queue())?,
            e(el::audioconvert())?,
            e(el::audioresample())?,
            sink.upcast(),
        ],
    )
}

/// Keep the input open: reopen it after end of stream, an error, or a
/// silence longer than the loss timeout, as the [`LossDetector`] decides.
fn supervise(spec: IngestSpec, sinks: Sinks, first: gst::Pipeline, stop: &AtomicBool) {
    let span = tracing::info_span!("ingest", input = %spec.describe());
    let _g = span.enter();
    let cfg = LossConfig {
        timeout_ns: spec.loss_timeout().as_nanos() as u64,
        retry_ns: 1_000_000_000,
        mode: match &spec.source {
            VideoSource::Srt(s) if s.mode == SrtMode::Listener => Reopen::Listener,
            _ => Reopen::Caller,
        },
    };
    let mut current = Some(first);
    while !stop.load(Ordering::SeqCst) {
        let pipeline = match current.take() {
            Some(p) => p,
            None => match open(&spec, &sinks) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(%e, "reopen failed");
                    set_error(&sinks.health, &e);
                    sleep_unless(stop, Duration::from_nanos(cfg.retry_ns));
                    continue;
                }
            },
        };
        let mut detector = LossDetector::new(cfg, mono_ns());
        let why = watch(&pipeline, &sinks.health, &mut detector, stop);
        let t = Instant::now();
        let _ = pipeline.set_state(gst::State::Null);
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "ingest closed");
        // Only now: a frame still arriving during the close would otherwise
        // flip the flag back and count a reconnect that never happened.
        if sinks.health.connected.swap(false, Ordering::SeqCst) {
            sinks.health.losses.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(reason = %why, "input lost; slate until it returns");
        }
        if let Ok(mut q) = sinks.frames.lock() {
            q.clear();
        }
        if why != StopReason::Stopping {
            set_error(&sinks.health, &why.to_string());
        }
        match detector.pause_before_reopen(mono_ns(), &why) {
            None => return,
            Some(0) => {}
            Some(ns) => sleep_unless(stop, Duration::from_nanos(ns)),
        }
    }
}

fn set_error(h: &IngestHealth, e: &str) {
    if let Ok(mut x) = h.last_error.lock() {
        *x = Some(e.to_string());
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run until the input ends, fails, goes quiet, or we are told to stop:
/// feed the detector what the bus and the streaming threads saw.
fn watch(
    pipeline: &gst::Pipeline,
    h: &IngestHealth,
    detector: &mut LossDetector,
    stop: &AtomicBool,
) -> StopReason {
    let Some(bus) = pipeline.bus() else {
        return StopReason::Failed("pipeline has no bus".into());
    };
    let opened = mono_ns();
    loop {
        let seen = if stop.load(Ordering::SeqCst) {
            Observation::Stop
        } else {
            match bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
                Some(msg) => match msg.view() {
                    gst::MessageView::Eos(_) => Observation::Eos,
                    gst::MessageView::Error(e) => Observation::Error(e.error().to_string()),
                    _ => Observation::Nothing,
                },
                None => Observation::Nothing,
            }
        };
        // Packets of this opening only (the stamp survives reopenings).
        let last = h.last_packet_mono.load(Ordering::Relaxed);
        if last >= opened {
            detector.packet(last);
        }
        if let Some(why) = detector.tick(mono_ns(), &seen) {
            return why;
        }
    }
}
