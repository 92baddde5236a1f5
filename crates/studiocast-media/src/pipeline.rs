//! A running session pipeline: test or studio sources, the spatial engine
//! on an audio thread, encoders, one `cmafmux` + `appsink` per rendition.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use studiocast_spatial::{BinauralRenderer, ShFilters};

use crate::audio_thread::{
    audio_delay, feed_audio, AudioFeed, AudioSnapshot, AudioStatus, BusSource, VideoSnapshot,
    BLOCK, LEAD,
};
use crate::elements as el;
use crate::ingest::{Ingest, IngestSpec};
use crate::meters::MeterBank;
use crate::scene_audio::SyntheticScene;
use crate::spec::{AudioSource, PipelineSpec, VideoSource};
use crate::video_pump::{PumpStats, VideoPump};
use crate::MediaError;
use studiocast_capture::device::CaptureConfig;

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
    meters: Arc<MeterBank>,
    /// Wall clock minus capture time at the end of the last video fragment.
    video_lag: Arc<AtomicI64>,
}

fn gst_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Gst(e.to_string())
}

/// Add a chain of elements to the pipeline and link them in order.
fn add_and_link(pipeline: &gst::Pipeline, elems: &[&gst::Element]) -> Result<(), MediaError> {
    pipeline.add_many(elems.iter().copied()).map_err(gst_err)?;
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
        let video_lag = Arc::new(AtomicI64::new(0));
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
            let sink = self::appsink("video", &events, &pdt_offset_ms, &eos, Some(&video_lag));
            let mut chain: Vec<&gst::Element> = head.iter().collect();
            chain.extend([&conv, &enc, &profile, &parse, &q, &mux, sink.upcast_ref()]);
            add_and_link(&pipeline, &chain)?;
        }
        let order = spec.audio.source.order();
        if filters.order != order {
            return Err(MediaError::Spec(format!(
                "filters are order {} but the scene is order {order}",
                filters.order
            )));
        }
        let rate = spec.audio.sample_rate;
        let mut labels: Vec<String> = match spec.audio.source.channel_map() {
            Some(m) => (1..=m.channels).map(|c| format!("in {c}")).collect(),
            None => (0..(order + 1) * (order + 1))
                .map(|c| format!("bus ACN {c}"))
                .collect(),
        };
        labels.extend(["binaural L".to_string(), "binaural R".to_string()]);
        let meters = Arc::new(MeterBank::new(labels));
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
            let sink = self::appsink(&r.id, &events, &pdt_offset_ms, &eos, None);
            add_and_link(
                &pipeline,
                &[
                    src.upcast_ref(),
                    &conv,
                    &enc,
                    &parse,
                    &q,
                    &mux,
                    sink.upcast_ref(),
                ],
            )?;
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
                meters: meters.clone(),
            }),
            events,
            pdt_offset_ms,
            eos,
            status: Arc::new(AudioStatus::default()),
            ingest_spec,
            pump,
            ingest: None,
            pump_stats: Arc::new(PumpStats::default()),
            meters,
            video_lag,
        })
    }

    /// Start playing; the audio thread and the bus watcher start here.
    pub fn start(&mut self) -> Result<(), MediaError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(gst_err)?;
        // Capture time = wall clock at running time 0 + running time.
        let now_ms = crate::now_ms();
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
                    self.teardown();
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
                    self.teardown();
                    return Err(e);
                }
                Err(_) => {
                    self.teardown();
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
        s.video_lag_ms = self.video_lag.load(Ordering::Relaxed);
        s.ingest = self.ingest.as_ref().map(|i| i.snapshot());
        if self.ingest.is_some() {
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

    /// Levels of every input channel and the binaural output.
    pub fn meters(&self) -> Arc<MeterBank> {
        self.meters.clone()
    }

    /// The underlying pipeline, for diagnostics (graph dumps, statistics).
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
        if let Some(i) = self.ingest.take() {
            i.stop();
        }
    }
}

/// A pipeline dropped without [`SessionPipeline::shutdown`] (a failed start,
/// say) still stops its threads, so nothing keeps the event channel open.
impl Drop for SessionPipeline {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn appsink(
    rendition: &str,
    events: &Sender<MediaEvent>,
    pdt_offset: &Arc<AtomicI64>,
    eos: &EosTracker,
    lag: Option<&Arc<AtomicI64>>,
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
    let lag = lag.cloned();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .eos(move |_| eos.sink_done())
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let end = handle_sample(&id, &sample, &tx, offset.load(Ordering::SeqCst));
                if let (Some(lag), Some(end)) = (&lag, end) {
                    lag.store(crate::now_ms() - end, Ordering::Relaxed);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    sink
}

/// Split a cmafmux output list into the init segment (HEADER|DISCONT, sent
/// once) and the fragment (moof header + mdat buffers).
/// Returns the capture time at the fragment's end (ms since the epoch).
fn handle_sample(
    id: &str,
    sample: &gst::Sample,
    tx: &Sender<MediaEvent>,
    pdt_offset_ms: i64,
) -> Option<i64> {
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
    if data.is_empty() {
        return None;
    }
    let pdt_ms = pdt_offset_ms + pts_ms.unwrap_or(0);
    let _ = tx.send(MediaEvent::Chunk {
        rendition: id.to_string(),
        data,
        duration,
        pdt_ms,
        independent,
    });
    Some(pdt_ms + (duration * 1000.0) as i64)
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
