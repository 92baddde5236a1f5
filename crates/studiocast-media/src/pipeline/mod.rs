//! A session pipeline: test or studio sources, the spatial engine on an
//! audio thread, encoders, one `cmafmux` + `appsink` per rendition.
//!
//! A typestate: [`SessionPipeline::build`] makes a [`BuiltPipeline`]
//! (elements linked, nothing running, every part owned outright);
//! [`BuiltPipeline::start`] consumes it and returns a [`RunningPipeline`]
//! (threads and inputs up) or tears everything down and says why.

mod running;
mod sinks;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use studiocast_capture::device::CaptureConfig;
use studiocast_spatial::{BinauralRenderer, ShFilters};

pub use running::RunningPipeline;

use crate::audio_thread::{AudioFeed, AudioStatus, BusSource, Output};
use crate::elements as el;
use crate::events::EventSender;
use crate::ingest::IngestSpec;
use crate::meters::MeterBank;
use crate::scene_audio::SyntheticScene;
use crate::spec::{AudioSource, PipelineSpec, VideoSource};
use crate::video_pump::PumpStats;
use crate::MediaError;
use sinks::{appsink, EosTracker};

/// Frames per audio block: the default of `[spatial] block`.
pub const DEFAULT_BLOCK: usize = 1024;
/// The processing blocks a session accepts.
pub const BLOCK_RANGE: std::ops::RangeInclusive<usize> = 64..=4096;

/// What the video muxer allows the encoder beyond its reported latency.
const ENCODER_SLACK: gst::ClockTime = gst::ClockTime::from_mseconds(200);

/// How a session pipeline is built beyond its preset.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Frames per audio processing block (the spatial renderer's block,
    /// the drift compensator's, and the unit of the capture delay, which is
    /// three blocks).
    pub block: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            block: DEFAULT_BLOCK,
        }
    }
}

/// The entry point: `SessionPipeline::build` makes a [`BuiltPipeline`].
pub struct SessionPipeline;

/// What the video pump needs once the ingest is open.
pub(crate) struct PumpParts {
    pub(crate) appsrc: gst_app::AppSrc,
    pub(crate) slate: gst::Buffer,
    pub(crate) framerate: u32,
    pub(crate) gop: u32,
}

/// Counters and meters shared by every stage of a pipeline's life.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) status: Arc<AudioStatus>,
    pub(crate) pump_stats: Arc<PumpStats>,
    pub(crate) meters: Arc<MeterBank>,
    /// Wall clock minus capture time at the end of the last video fragment.
    pub(crate) video_lag: Arc<AtomicI64>,
}

/// A linked pipeline that has not started: nothing runs, nothing is open.
pub struct BuiltPipeline {
    pipeline: gst::Pipeline,
    video_src: Option<gst::Element>,
    events: EventSender,
    pdt_offset_ms: Arc<AtomicI64>,
    eos: EosTracker,
    ingest: Option<(IngestSpec, PumpParts)>,
    audio: AudioFeed,
    shared: Shared,
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
        opts: &BuildOptions,
        events: EventSender,
    ) -> Result<BuiltPipeline, MediaError> {
        crate::init()?;
        spec.validate()?;
        if !BLOCK_RANGE.contains(&opts.block) {
            return Err(MediaError::Spec(format!(
                "processing block {} is outside {}..={}",
                opts.block,
                BLOCK_RANGE.start(),
                BLOCK_RANGE.end()
            )));
        }
        let order = spec.audio.source.order();
        if filters.order != order {
            return Err(MediaError::Spec(format!(
                "filters are order {} but the scene is order {order}",
                filters.order
            )));
        }
        let pipeline = gst::Pipeline::new();
        let pdt_offset_ms = Arc::new(AtomicI64::new(0));
        let sinks = spec.audio.renditions.len() + usize::from(spec.video.is_some());
        let eos = EosTracker::new(sinks, events.clone());
        let video_lag = Arc::new(AtomicI64::new(0));
        let (video_src, ingest) = match &spec.video {
            Some(_) => video_branch(spec, &pipeline, &events, &pdt_offset_ms, &eos, &video_lag)?,
            None => (None, None),
        };
        let meters = Arc::new(MeterBank::new(meter_labels(spec)));
        let mut outputs = Vec::new();
        let fragment = gst::ClockTime::from_seconds(spec.segment_seconds as u64);
        for r in &spec.audio.renditions {
            let src = el::audio_appsrc(spec.audio.sample_rate);
            let sink = appsink(&r.id, &events, &pdt_offset_ms, &eos, None);
            add_and_link(
                &pipeline,
                &[
                    src.upcast_ref(),
                    &el::audioconvert()?,
                    &el::avenc_aac(r.bitrate_kbps)?,
                    &el::aacparse()?,
                    &el::queue()?,
                    &el::cmafmux(fragment, false, gst::ClockTime::ZERO)?,
                    sink.upcast_ref(),
                ],
            )?;
            outputs.push(Output::new(r.mix, src, opts.block)?);
        }
        let audio = AudioFeed {
            master: None,
            source: bus_source(&spec.audio.source, spec.audio.sample_rate, opts.block)?,
            renderer: BinauralRenderer::new(filters, opts.block)?,
            outputs,
            rate: spec.audio.sample_rate,
            k: (order + 1) * (order + 1),
            block: opts.block,
            meters: meters.clone(),
        };
        Ok(BuiltPipeline {
            pipeline,
            video_src,
            events,
            pdt_offset_ms,
            eos,
            ingest,
            audio,
            shared: Shared {
                status: Arc::new(AudioStatus::default()),
                pump_stats: Arc::new(PumpStats::default()),
                meters,
                video_lag,
            },
        })
    }
}

impl BuiltPipeline {
    /// Record the untouched multichannel input to `path` (live sources),
    /// until `state` says stop.
    pub fn set_master(
        &mut self,
        path: std::path::PathBuf,
        state: Arc<crate::master::RecordingState>,
    ) {
        self.audio.master = Some((path, state));
    }

    /// Levels of every input channel and the binaural output.
    pub fn meters(&self) -> Arc<MeterBank> {
        self.shared.meters.clone()
    }
}

fn meter_labels(spec: &PipelineSpec) -> Vec<String> {
    let order = spec.audio.source.order();
    let mut labels: Vec<String> = match spec.audio.source.channel_map() {
        Some(m) => (1..=m.channels).map(|c| format!("in {c}")).collect(),
        None => (0..(order + 1) * (order + 1))
            .map(|c| format!("bus ACN {c}"))
            .collect(),
    };
    labels.extend(["binaural L".to_string(), "binaural R".to_string()]);
    labels
}

fn bus_source(src: &AudioSource, rate: u32, block: usize) -> Result<BusSource, MediaError> {
    Ok(match src {
        AudioSource::SyntheticScene { order } => {
            BusSource::Synthetic(SyntheticScene::new(*order, rate, block)?)
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
            mixer: crate::mixer::BusMixer::from_source(src)?,
        },
        AudioSource::Embedded { channels, .. } => BusSource::Embedded {
            channels: *channels,
            mixer: crate::mixer::BusMixer::from_source(src)?,
            consumer: None,
        },
    })
}

type VideoHead = (Option<gst::Element>, Option<(IngestSpec, PumpParts)>);

/// The video branch: its head (a test pattern with a burnt-in clock, or an
/// appsrc the pump feeds from an ingest), x264, cmafmux, appsink.
fn video_branch(
    spec: &PipelineSpec,
    pipeline: &gst::Pipeline,
    events: &EventSender,
    pdt_offset_ms: &Arc<AtomicI64>,
    eos: &EosTracker,
    lag: &Arc<AtomicI64>,
) -> Result<VideoHead, MediaError> {
    let Some(v) = &spec.video else {
        return Ok((None, None));
    };
    let (head, out): (Vec<gst::Element>, VideoHead) = match &v.source {
        VideoSource::TestPattern { pattern } => {
            let src = el::videotestsrc(pattern)?;
            let raw = el::capsfilter(crate::video_pump::raw_caps(v.width, v.height, v.framerate))?;
            (
                vec![src.clone(), raw, el::clockoverlay()?],
                (Some(src), None),
            )
        }
        other => {
            crate::ingest::check_present(other).map_err(|reason| MediaError::InputUnavailable {
                input: IngestSpec::describe_source(other),
                reason,
            })?;
            let src = gst_app::AppSrc::builder()
                .caps(&crate::video_pump::raw_caps(v.width, v.height, v.framerate))
                .format(gst::Format::Time)
                .is_live(true)
                .max_bytes(64 << 20)
                .build();
            let slate =
                crate::video_pump::make_slate(v.width, v.height, "Signal lost · back shortly")?;
            let audio = match &spec.audio.source {
                AudioSource::Embedded { channels, .. } => Some((*channels, spec.audio.sample_rate)),
                _ => None,
            };
            let ingest = IngestSpec {
                source: other.clone(),
                width: v.width,
                height: v.height,
                audio,
            };
            let parts = PumpParts {
                appsrc: src.clone(),
                slate,
                framerate: v.framerate,
                gop: spec.gop_frames(),
            };
            (vec![src.upcast()], (None, Some((ingest, parts))))
        }
    };
    let sink = appsink("video", events, pdt_offset_ms, eos, Some(lag));
    let profile = el::capsfilter(
        gst::Caps::builder("video/x-h264")
            .field("profile", "high")
            .build(),
    )?;
    // One requester of key frames: x264's own GOP for a test pattern; the
    // pump's forced key units (on the segment grid, and after a slate) for
    // an ingest, with x264's GOP far out of their way (two requesters made
    // x264 re-type forced IDRs as I frames and warn every segment).
    let keyint = match &v.source {
        VideoSource::TestPattern { .. } => spec.gop_frames(),
        _ => spec.gop_frames().saturating_mul(10),
    };
    let tail = [
        el::videoconvert()?,
        el::x264enc(v.bitrate_kbps, keyint)?,
        profile,
        el::h264parse()?,
        el::queue()?,
        // The muxer never asks for key frames (see `keyint` above).
        el::cmafmux(
            gst::ClockTime::from_seconds(spec.segment_seconds as u64),
            false,
            ENCODER_SLACK,
        )?,
    ];
    let mut chain: Vec<&gst::Element> = head.iter().collect();
    chain.extend(tail.iter());
    chain.push(sink.upcast_ref());
    add_and_link(pipeline, &chain)?;
    Ok(out)
}
