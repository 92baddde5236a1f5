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
use crate::scene_audio::SyntheticScene;
use crate::spec::{AudioSource, Mix, PipelineSpec, VideoSource};
use crate::MediaError;
use studiocast_capture::compensator::DriftCompensator;
use studiocast_capture::device::CaptureConfig;

/// Frames per audio block: one AAC frame.
const BLOCK: usize = 1024;
/// How far ahead of the clock the audio thread may run.
const LEAD: Duration = Duration::from_millis(40);

/// Live input health. The audio thread updates it per block with atomics
/// only; the two locked fields are written once, when the source opens.
#[derive(Debug, Default)]
pub struct AudioStatus {
    pub source: std::sync::Mutex<String>,
    pub ring: std::sync::Mutex<Option<Arc<studiocast_capture::ring::RingStats>>>,
    drift_ppm_bits: std::sync::atomic::AtomicU64,
    offset_ms_bits: std::sync::atomic::AtomicU64,
    last_block_ms: AtomicI64,
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
}

struct AudioFeed {
    /// Where to record the untouched device audio (RF64/WAV, float).
    master: Option<std::path::PathBuf>,
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
        if let Some(v) = &spec.video {
            let VideoSource::TestPattern { pattern } = &v.source;
            let src = el::videotestsrc(pattern)?;
            let raw = el::capsfilter(
                gst::Caps::builder("video/x-raw")
                    .field("width", v.width as i32)
                    .field("height", v.height as i32)
                    .field("framerate", gst::Fraction::new(v.framerate as i32, 1))
                    .build(),
            )?;
            let clock = el::clockoverlay()?;
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
            pipeline
                .add_many([
                    &src,
                    &raw,
                    &clock,
                    &conv,
                    &enc,
                    &profile,
                    &parse,
                    &q,
                    &mux,
                    sink.upcast_ref(),
                ])
                .map_err(gst_err)?;
            link(&[
                &src,
                &raw,
                &clock,
                &conv,
                &enc,
                &profile,
                &parse,
                &q,
                &mux,
                sink.upcast_ref(),
            ])?;
            video_src = Some(src);
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
                Err(_) => return Err(gst_err("the audio source did not start within 10 s")),
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

    /// Record the untouched multichannel input to `path` (device sources).
    /// Call before [`SessionPipeline::start`].
    pub fn set_master(&mut self, path: std::path::PathBuf) {
        if let Some(f) = self.audio.as_mut() {
            f.master = Some(path);
        }
    }

    /// Live input health.
    pub fn audio_status(&self) -> AudioSnapshot {
        self.status.snapshot()
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
    }
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

/// The audio thread: fill the AmbiX bus (synthetic scene paced by the
/// pipeline clock, or a studio interface through the drift compensator),
/// render it, push it to every audio rendition. Stops with EOS on every
/// appsrc. Reports on `ready` once its source is open.
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
    // Device input: open here; the stream lives on this thread.
    let mut device = match &feed.source {
        BusSource::Device { config, mixer } => match studiocast_capture::device::open(config) {
            Ok(cap) => {
                if let Ok(mut s) = status.source.lock() {
                    *s = format!("{}: {}", config.host, cap.device);
                }
                if let Ok(mut r) = status.ring.lock() {
                    *r = Some(cap.stats.clone());
                }
                let mut comp =
                    DriftCompensator::new(config.channels as usize, feed.rate, BLOCK, 3 * BLOCK)
                        .map_err(MediaError::Gst)?;
                // Blocks are taken LEAD ahead of the clock; queue that much
                // more before starting so the level settles on target.
                comp.set_prime_extra((LEAD.as_secs_f64() * feed.rate as f64) as usize);
                let master = match &feed.master {
                    Some(p) => Some(
                        crate::master::MasterWriter::start(p, config.channels, feed.rate)
                            .map_err(MediaError::Gst)?,
                    ),
                    None => None,
                };
                let raw = vec![0.0f32; config.channels as usize * BLOCK];
                Some((cap, comp, raw, mixer.clone(), master))
            }
            Err(e) => {
                let _ = ready.send(Err(MediaError::Gst(e.to_string())));
                return Ok(());
            }
        },
        BusSource::Synthetic(_) => {
            if let Ok(mut s) = status.source.lock() {
                *s = "synthetic".into();
            }
            None
        }
    };
    let _ = ready.send(Ok(()));
    let mut base: Option<gst::ClockTime> = None;
    while !stop.load(Ordering::SeqCst) {
        let pts = match &mut device {
            None => {
                let pts = gst::ClockTime::from_nseconds(frames * 1_000_000_000 / feed.rate as u64);
                // Pace like a capture device: never run more than LEAD ahead.
                loop {
                    let now = pipeline
                        .current_running_time()
                        .unwrap_or(gst::ClockTime::ZERO);
                    if now.nseconds() + LEAD.as_nanos() as u64 >= pts.nseconds()
                        || stop.load(Ordering::SeqCst)
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                if let BusSource::Synthetic(scene) = &mut feed.source {
                    scene.render(&mut bus)?;
                }
                pts
            }
            Some((cap, comp, raw, mixer, master)) => {
                // Once running, take a block when the pipeline clock reaches
                // it, like the synthetic source: the ring level then shows
                // only the interface's drift, which the compensator absorbs.
                if let Some(b) = base {
                    let due = b + gst::ClockTime::from_nseconds(
                        frames * 1_000_000_000 / feed.rate as u64,
                    );
                    let now = pipeline
                        .current_running_time()
                        .unwrap_or(gst::ClockTime::ZERO);
                    if now.nseconds() + (LEAD.as_nanos() as u64) < due.nseconds() {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                }
                if !comp.process_into_buffer(&mut cap.consumer, raw) {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if let Some(m) = master {
                    let (planar, n) = comp.last_input();
                    m.push(planar, n);
                }
                mixer.mix(raw, BLOCK, &mut bus)?;
                let ctl = comp.controller();
                status
                    .drift_ppm_bits
                    .store(ctl.estimated_drift_ppm().to_bits(), Ordering::Relaxed);
                status
                    .offset_ms_bits
                    .store((ctl.error_s() * 1e3).to_bits(), Ordering::Relaxed);
                let b = *base.get_or_insert_with(|| {
                    pipeline
                        .current_running_time()
                        .unwrap_or(gst::ClockTime::ZERO)
                });
                b + gst::ClockTime::from_nseconds(frames * 1_000_000_000 / feed.rate as u64)
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
