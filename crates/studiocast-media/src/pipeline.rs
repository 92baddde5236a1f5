//! A running session pipeline: test or studio sources, the spatial engine
//! on an audio thread, encoders, one `cmafmux` + `appsink` per rendition.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use studiocast_spatial::encoder::StereoDownmix;
use studiocast_spatial::{BinauralRenderer, ShFilters};

use crate::elements as el;
use crate::ingest::{Ingest, IngestSnapshot, IngestSpec};
use crate::scene_audio::SyntheticScene;
use crate::spec::{AudioSource, Mix, PipelineSpec, VideoSource};
use crate::video_pump::{PumpStats, VideoPump};
use crate::MediaError;
use studiocast_capture::compensator::DriftCompensator;
use studiocast_capture::device::{Capture, CaptureConfig};
use studiocast_capture::ring::RingConsumer;

/// Frames per audio block: one AAC frame.
const BLOCK: usize = 1024;
/// How far ahead of the clock the audio thread may run.
const LEAD: Duration = Duration::from_millis(40);
/// An input that delivers nothing for this long is replaced by silence.
const STARVED: Duration = Duration::from_millis(250);
/// Ring level the drift compensator holds, in blocks.
const TARGET_BLOCKS: usize = 3;

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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
                (now_ms() - last) as f64 / 1000.0
            },
            silent_blocks: self.silent_blocks.load(Ordering::Relaxed),
            ingest: None,
            video: None,
        }
    }
}

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
        independent: bool,
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

/// Sends [`MediaEvent::Eos`] once, when every appsink has seen EOS (from the
/// sinks' own callbacks, or the bus, whichever comes first).
#[derive(Clone)]
struct EosTracker {
    remaining: Arc<std::sync::atomic::AtomicUsize>,
    sent: Arc<AtomicBool>,
    tx: Sender<MediaEvent>,
}

impl EosTracker {
    fn sink_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.send();
        }
    }

    fn send(&self) {
        if !self.sent.swap(true, Ordering::SeqCst) {
            let _ = self.tx.send(MediaEvent::Eos);
        }
    }
}

pub struct SessionPipeline {
    pipeline: gst::Pipeline,
    video_src: Option<gst::Element>,
    stop: Arc<AtomicBool>,
    /// Tells the bus watcher to return even if no EOS or error came.
    quit: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    audio: Option<AudioFeed>,
    events: Sender<MediaEvent>,
    pdt_offset_ms: Arc<AtomicI64>,
    eos: EosTracker,
    status: Arc<AudioStatus>,
    /// A network or capture-card video input and what consumes it.
    ingest_spec: Option<IngestSpec>,
    pump: Option<(gst_app::AppSrc, gst::Buffer, u32, u32)>,
    ingest: Option<Ingest>,
    pump_stats: Arc<PumpStats>,
}

struct AudioFeed {
    /// Where to record the untouched device audio (RF64/WAV, float).
    master: Option<(std::path::PathBuf, Arc<crate::master::RecordingState>)>,
    source: BusSource,
    renderer: BinauralRenderer,
    outputs: Vec<(Mix, gst_app::AppSrc)>,
    rate: u32,
    k: usize,
}

/// Where the ambisonic bus comes from.
enum BusSource {
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

fn gst_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Gst(e.to_string())
}

fn link(elems: &[&gst::Element]) -> Result<(), MediaError> {
    gst::Element::link_many(elems).map_err(gst_err)
}

impl SessionPipeline {
    /// Build (but do not start) the pipeline for `spec`, rendering binaural
    /// audio with `filters`. CMAF output goes to `events`.
    pub fn build(
        spec: &PipelineSpec,
        filters: &ShFilters,
        events: Sender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        crate::init()?;
        spec.validate()?;
        let pipeline = gst::Pipeline::new();
        let pdt_offset_ms = Arc::new(AtomicI64::new(0));
        let sinks = spec.audio.renditions.len() + usize::from(spec.video.is_some());
        let eos = EosTracker {
            remaining: Arc::new(std::sync::atomic::AtomicUsize::new(sinks)),
            sent: Arc::new(AtomicBool::new(false)),
            tx: events.clone(),
        };
        let fragment = gst::ClockTime::from_seconds(spec.segment_seconds as u64);
        let mut video_src = None;
        let mut ingest_spec = None;
        let mut pump = None;
        if let Some(v) = &spec.video {
            // The head of the video branch: a test pattern with a burnt-in
            // clock, or the frames an ingest delivers, paced by a pump.
            let head: Vec<gst::Element> = match &v.source {
                VideoSource::TestPattern { pattern } => {
                    let src = el::videotestsrc(pattern)?;
                    let raw = el::capsfilter(
                        gst::Caps::builder("video/x-raw")
                            .field("width", v.width as i32)
                            .field("height", v.height as i32)
                            .field("framerate", gst::Fraction::new(v.framerate as i32, 1))
                            .build(),
                    )?;
                    video_src = Some(src.clone());
                    vec![src, raw, el::clockoverlay()?]
                }
                other => {
                    crate::ingest::check_present(other).map_err(|reason| {
                        MediaError::InputUnavailable {
                            input: IngestSpec::describe_source(other),
                            reason,
                        }
                    })?;
                    let caps = crate::video_pump::raw_caps(v.width, v.height, v.framerate);
                    let src = gst_app::AppSrc::builder()
                        .caps(&caps)
                        .format(gst::Format::Time)
                        .is_live(true)
                        .max_bytes(64 << 20)
                        // Slack for the encoder, so the muxer does not
                        // cut fragments on timeout before a GOP is whole.
                        .min_latency(200_000_000)
                        .build();
                    let slate = crate::video_pump::make_slate(
                        v.width,
                        v.height,
                        "Signal lost · back shortly",
                    )?;
                    let audio = match &spec.audio.source {
                        AudioSource::Embedded { channels, .. } => {
                            Some((*channels, spec.audio.sample_rate))
                        }
                        _ => None,
                    };
                    ingest_spec = Some(IngestSpec {
                        source: other.clone(),
                        width: v.width,
                        height: v.height,
                        audio,
                    });
                    pump = Some((src.clone(), slate, v.framerate, spec.gop_frames()));
                    vec![src.upcast()]
                }
            };
            let conv = el::videoconvert()?;
            let enc = el::x264enc(v.bitrate_kbps, spec.gop_frames())?;
            let profile = el::capsfilter(
                gst::Caps::builder("video/x-h264")
                    .field("profile", "high")
                    .build(),
            )?;
            let parse = el::h264parse()?;
            let q = el::queue()?;
            let mux = el::cmafmux(fragment)?;
            let sink = self::appsink("video", &events, &pdt_offset_ms, &eos);
            let mut chain: Vec<&gst::Element> = head.iter().collect();
            chain.extend([&conv, &enc, &profile, &parse, &q, &mux, sink.upcast_ref()]);
            pipeline.add_many(chain.iter().copied()).map_err(gst_err)?;
            link(&chain)?;
        }
        let order = spec.audio.source.order();
        if filters.order != order {
            return Err(MediaError::Spec(format!(
                "filters are order {} but the scene is order {order}",
                filters.order
            )));
        }
        let rate = spec.audio.sample_rate;
        let mut outputs = Vec::new();
        for r in &spec.audio.renditions {
            let caps = gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("layout", "interleaved")
                .field("rate", rate as i32)
                .field("channels", 2i32)
                .field("channel-mask", gst::Bitmask::new(0x3))
                .build();
            let src = gst_app::AppSrc::builder()
                .caps(&caps)
                .format(gst::Format::Time)
                .is_live(true)
                .max_bytes(4 << 20)
                .build();
            let conv = el::audioconvert()?;
            let enc = el::avenc_aac(r.bitrate_kbps)?;
            let parse = el::aacparse()?;
            let q = el::queue()?;
            let mux = el::cmafmux(fragment)?;
            let sink = self::appsink(&r.id, &events, &pdt_offset_ms, &eos);
            pipeline
                .add_many([
                    src.upcast_ref(),
                    &conv,
                    &enc,
                    &parse,
                    &q,
                    &mux,
                    sink.upcast_ref(),
                ])
                .map_err(gst_err)?;
            link(&[
                src.upcast_ref(),
                &conv,
                &enc,
                &parse,
                &q,
                &mux,
                sink.upcast_ref(),
            ])?;
            outputs.push((r.mix, src));
        }
        Ok(SessionPipeline {
            pipeline,
            video_src,
            stop: Arc::new(AtomicBool::new(false)),
            quit: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            audio: Some(AudioFeed {
                master: None,
                source: match &spec.audio.source {
                    AudioSource::SyntheticScene { .. } => {
                        BusSource::Synthetic(SyntheticScene::new(order, rate, BLOCK)?)
                    }
                    AudioSource::Device {
                        host,
                        device,
                        channels,
                        ..
                    } => BusSource::Device {
                        config: CaptureConfig {
                            host: host.clone(),
                            device: device.clone(),
                            channels: *channels,
                            rate,
                            ring_frames: rate as usize * 2,
                        },
                        mixer: crate::mixer::BusMixer::from_source(&spec.audio.source)?,
                    },
                    AudioSource::Embedded { channels, .. } => BusSource::Embedded {
                        channels: *channels,
                        mixer: crate::mixer::BusMixer::from_source(&spec.audio.source)?,
                        consumer: None,
                    },
                },
                renderer: BinauralRenderer::new(filters, BLOCK)?,
                outputs,
                rate,
                k: (order + 1) * (order + 1),
            }),
            events,
            pdt_offset_ms,
            eos,
            status: Arc::new(AudioStatus::default()),
            ingest_spec,
            pump,
            ingest: None,
            pump_stats: Arc::new(PumpStats::default()),
        })
    }

    /// Start playing; the audio thread and the bus watcher start here.
    pub fn start(&mut self) -> Result<(), MediaError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(gst_err)?;
        // Capture time = wall clock at running time 0 + running time.
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let running = self
            .pipeline
            .current_running_time()
            .map_or(0, |t| t.mseconds() as i64);
        self.pdt_offset_ms.store(now_ms - running, Ordering::SeqCst);
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| gst_err("pipeline has no bus"))?;
        let tx = self.events.clone();
        let quit = self.quit.clone();
        let eos = self.eos.clone();
        self.threads
            .push(std::thread::spawn(move || watch_bus(bus, tx, quit, eos)));
        if let Some(spec) = self.ingest_spec.clone() {
            let (ingest, consumer) = match Ingest::start(spec) {
                Ok(x) => x,
                Err(e) => {
                    self.quit.store(true, Ordering::SeqCst);
                    let _ = self.pipeline.set_state(gst::State::Null);
                    return Err(e);
                }
            };
            if let Some(AudioFeed {
                source: BusSource::Embedded { consumer: c, .. },
                ..
            }) = self.audio.as_mut()
            {
                *c = consumer;
            }
            if let Some((appsrc, slate, framerate, gop)) = self.pump.take() {
                let pump = VideoPump {
                    appsrc,
                    frames: ingest.frames(),
                    slate,
                    framerate,
                    gop,
                    delay: audio_delay(self.audio.as_ref().map_or(48_000, |f| f.rate)),
                    loss: ingest.loss_timeout(),
                    lead: LEAD,
                    events: self.events.clone(),
                    pdt_offset_ms: self.pdt_offset_ms.clone(),
                    stats: self.pump_stats.clone(),
                };
                let stop = self.stop.clone();
                let pipeline = self.pipeline.clone();
                self.threads.push(
                    std::thread::Builder::new()
                        .name("video-pump".into())
                        .spawn(move || pump.run(&pipeline, &stop))
                        .map_err(gst_err)?,
                );
            }
            self.ingest = Some(ingest);
        }
        if let Some(feed) = self.audio.take() {
            let stop = self.stop.clone();
            let pipeline = self.pipeline.clone();
            let tx = self.events.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
            let status = self.status.clone();
            self.threads.push(std::thread::spawn(move || {
                if let Err(e) = feed_audio(feed, &pipeline, &stop, ready_tx, &status) {
                    let _ = tx.send(MediaEvent::Error(e.to_string()));
                }
            }));
            // A missing interface must fail the start, not the session later.
            match ready_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.stop.store(true, Ordering::SeqCst);
                    let _ = self.pipeline.set_state(gst::State::Null);
                    return Err(e);
                }
                Err(_) => {
                    self.stop.store(true, Ordering::SeqCst);
                    let _ = self.pipeline.set_state(gst::State::Null);
                    return Err(gst_err("the audio source did not start within 10 s"));
                }
            }
        }
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

    /// Record the untouched multichannel input to `path` (live sources),
    /// until `state` says stop. Call before [`SessionPipeline::start`].
    pub fn set_master(
        &mut self,
        path: std::path::PathBuf,
        state: Arc<crate::master::RecordingState>,
    ) {
        if let Some(f) = self.audio.as_mut() {
            f.master = Some((path, state));
        }
    }

    /// Live input health.
    pub fn audio_status(&self) -> AudioSnapshot {
        let mut s = self.status.snapshot();
        s.ingest = self.ingest.as_ref().map(|i| i.snapshot());
        if self.ingest_spec.is_some() {
            let p = &self.pump_stats;
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

    /// The underlying pipeline, for diagnostics (graph dumps, statistics).
    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Tear down (after EOS, or to abort).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.quit.store(true, Ordering::SeqCst);
        let _ = self.pipeline.set_state(gst::State::Null);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(i) = self.ingest.take() {
            i.stop();
        }
    }
}

/// How long a live input's samples wait in the ring before the program
/// plays them; video from the same input is held back as long.
fn audio_delay(rate: u32) -> Duration {
    Duration::from_secs_f64((TARGET_BLOCKS * BLOCK) as f64 / rate.max(1) as f64)
}

fn appsink(
    rendition: &str,
    events: &Sender<MediaEvent>,
    pdt_offset: &Arc<AtomicI64>,
    eos: &EosTracker,
) -> gst_app::AppSink {
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .buffer_list(true)
        .max_buffers(64)
        .build();
    let tx = events.clone();
    let id = rendition.to_string();
    let offset = pdt_offset.clone();
    let eos = eos.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .eos(move |_| eos.sink_done())
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                handle_sample(&id, &sample, &tx, offset.load(Ordering::SeqCst));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    sink
}

/// Split a cmafmux output list into the init segment (HEADER|DISCONT, sent
/// once) and the fragment (moof header + mdat buffers).
fn handle_sample(id: &str, sample: &gst::Sample, tx: &Sender<MediaEvent>, pdt_offset_ms: i64) {
    let mut buffers: Vec<gst::Buffer> = Vec::new();
    if let Some(list) = sample.buffer_list() {
        buffers.extend(list.iter_owned());
    } else if let Some(b) = sample.buffer_owned() {
        buffers.push(b);
    }
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
    let mut data = Vec::new();
    let mut duration = 0.0;
    let mut pts_ms = None;
    let mut independent = false;
    for b in buffers {
        let f = b.flags();
        let Ok(map) = b.map_readable() else { continue };
        if f.contains(gst::BufferFlags::HEADER) && f.contains(gst::BufferFlags::DISCONT) {
            let _ = tx.send(MediaEvent::Init {
                rendition: id.to_string(),
                data: map.to_vec(),
            });
            continue;
        }
        if f.contains(gst::BufferFlags::HEADER) {
            independent = !f.contains(gst::BufferFlags::DELTA_UNIT);
            duration = b.duration().map_or(0.0, |d| d.nseconds() as f64 / 1e9);
            let running = match (&segment, b.pts()) {
                (Some(seg), Some(p)) => seg.to_running_time(p).or(Some(p)),
                (None, p) => p,
                _ => None,
            };
            pts_ms = running.map(|t| t.mseconds() as i64);
        }
        data.extend_from_slice(&map);
    }
    if !data.is_empty() {
        let _ = tx.send(MediaEvent::Chunk {
            rendition: id.to_string(),
            data,
            duration,
            pdt_ms: pdt_offset_ms + pts_ms.unwrap_or(0),
            independent,
        });
    }
}

fn watch_bus(bus: gst::Bus, tx: Sender<MediaEvent>, quit: Arc<AtomicBool>, eos: EosTracker) {
    loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            if quit.load(Ordering::SeqCst) {
                return;
            }
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                eos.send();
                return;
            }
            gst::MessageView::Error(e) => {
                let src = e
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let detail = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                let _ = tx.send(MediaEvent::Error(format!("{src}: {}{detail}", e.error())));
                return;
            }
            _ => {}
        }
    }
}

/// A live input on the audio thread: its ring, the drift compensator, the
/// planar block, the role mixer and the master recorder.
struct LiveInput {
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
fn feed_audio(
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
    let mut base: Option<gst::ClockTime> = None;
    while !stop.load(Ordering::SeqCst) {
        let offset = gst::ClockTime::from_nseconds(frames * 1_000_000_000 / feed.rate as u64);
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
                        || now.nseconds() - since < patience.as_nanos() as u64
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
        status.last_block_ms.store(now_ms(), Ordering::Relaxed);
    }
    for (_, src) in &feed.outputs {
        let _ = src.end_of_stream();
    }
    Ok(())
}
