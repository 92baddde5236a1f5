//! A session pipeline: test or studio sources, the spatial engine on an
//! audio thread, encoders, one `cmafmux` + `appsink` per rendition.
//!
//! A typestate: [`SessionPipeline::build`] makes a [`BuiltPipeline`]
//! (elements linked, nothing running, every part owned outright);
//! [`BuiltPipeline::start`] consumes it and returns a [`RunningPipeline`]
//! (threads and inputs up) or tears everything down and says why.

mod file;
mod file_audio;
mod file_video;
mod running;
mod sinks;
mod video;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use studiocast_capture::device::CaptureConfig;
use studiocast_spatial::{
    BinauralRenderer, Engine, HrtfSet, ParametricOptions, ParametricRenderer, ShFilters,
};

pub use file::FileEncoder;
pub use file_audio::GstAudioSource;
pub use file_video::{audio_only_container, probe_video, Poster, VideoInfo};
pub use running::RunningPipeline;

use crate::audio_thread::{AudioFeed, AudioStatus, BusSource, Output};
use crate::elements as el;
use crate::events::EventSender;
use crate::ingest::IngestSpec;
use crate::meters::MeterBank;
use crate::scene_audio::SyntheticScene;
use crate::spec::{AudioSource, PipelineSpec, Renderer};
use crate::video_pump::PumpStats;
use crate::MediaError;
use sinks::{appsink, EosTracker};
pub(crate) use video::PumpParts;

/// Frames per audio block: the default of `[spatial] block`.
pub const DEFAULT_BLOCK: usize = 1024;
/// The processing blocks a session accepts.
pub const BLOCK_RANGE: std::ops::RangeInclusive<usize> = 64..=4096;

/// How a session pipeline is built beyond its preset.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Frames per audio processing block (the spatial renderer's block,
    /// the drift compensator's, and the unit of the capture delay, which is
    /// three blocks).
    pub block: usize,
    /// The HRTF set itself, for a preset with the parametric renderer
    /// (which interpolates it); the filters are then first-order MagLS.
    pub hrirs: Option<Arc<HrtfSet>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            block: DEFAULT_BLOCK,
            hrirs: None,
        }
    }
}

/// The entry point: `SessionPipeline::build` makes a [`BuiltPipeline`].
pub struct SessionPipeline;

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
    /// The audio renditions' muxers: told where the segments start.
    audio_muxers: Vec<gst::Element>,
    segment: gst::ClockTime,
    video_origin: Arc<AtomicU64>,
    shared: Shared,
}

/// What a rendition's appsink carries (chunk flags mean different things).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Video,
    Audio,
}

/// Where every branch's output goes: the pipeline, the event queue, the
/// capture-time offset, the end-of-stream tracker.
pub(crate) struct Taps<'a> {
    pub(crate) pipeline: &'a gst::Pipeline,
    pub(crate) events: &'a EventSender,
    pub(crate) pdt_offset: &'a Arc<AtomicI64>,
    pub(crate) eos: &'a EosTracker,
    /// Running time (ns) the video's key-frame grid starts from, which the
    /// audio splits follow: 0 for an ingest (its pump forces key frames at
    /// k × segment) and audio-only; for a test pattern, where its first
    /// fragment starts ([`ORIGIN_UNKNOWN`] until then).
    pub(crate) video_origin: &'a Arc<AtomicU64>,
}

/// `video_origin` before the first video fragment.
pub(crate) const ORIGIN_UNKNOWN: u64 = u64::MAX;

fn clock(d: std::time::Duration) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(d.as_nanos() as u64)
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
        check(spec, filters, opts)?;
        let order = spec.audio.source.order();
        let pipeline = gst::Pipeline::new();
        let pdt_offset_ms = Arc::new(AtomicI64::new(0));
        let rungs = spec.video.as_ref().map_or(0, |v| v.renditions.len());
        let eos = EosTracker::new(spec.audio.renditions.len() + rungs, events.clone());
        let video_lag = Arc::new(AtomicI64::new(0));
        // Audio-only: the grid starts at running time 0.
        let video_origin = Arc::new(AtomicU64::new(if spec.video.is_some() {
            ORIGIN_UNKNOWN
        } else {
            0
        }));
        let taps = Taps {
            pipeline: &pipeline,
            events: &events,
            pdt_offset: &pdt_offset_ms,
            eos: &eos,
            video_origin: &video_origin,
        };
        let (video_src, ingest) = match &spec.video {
            Some(_) => video::branch(spec, &taps, &video_lag)?,
            None => (None, None),
        };
        // An ingest's pump forces key frames on the absolute grid (k ×
        // segment from running time 0), whenever its first frame came; a
        // test pattern's GOP counts from its first frame, which the first
        // video fragment tells.
        if ingest.is_some() {
            video_origin.store(0, std::sync::atomic::Ordering::SeqCst);
        }
        let meters = Arc::new(MeterBank::new(meter_labels(spec)).with_roles(meter_roles(spec)));
        let seg = spec.segment_seconds as u64;
        let (outputs, audio_muxers) = audio_branches(spec, &taps, opts.block)?;
        let audio = AudioFeed {
            master: None,
            source: bus_source(&spec.audio.source, spec.audio.sample_rate, opts.block)?,
            renderer: engine(spec, filters, opts)?,
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
            audio_muxers,
            segment: gst::ClockTime::from_seconds(seg),
            video_origin,
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

/// The inputs' roles by the channel map, then the binaural pair's.
fn meter_roles(spec: &PipelineSpec) -> Vec<Option<String>> {
    let mut roles = spec.audio.source.channel_roles();
    roles.extend([Some("binaural L".into()), Some("binaural R".into())]);
    roles
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

/// The preset's binaural renderer.
fn engine(
    spec: &PipelineSpec,
    filters: &ShFilters,
    opts: &BuildOptions,
) -> Result<Engine, MediaError> {
    Ok(match spec.audio.renderer {
        Renderer::Linear => Engine::Linear(Box::new(BinauralRenderer::new(filters, opts.block)?)),
        Renderer::Parametric => {
            let h = opts.hrirs.as_deref().ok_or_else(|| {
                MediaError::Spec("the parametric renderer needs the HRTF set itself".into())
            })?;
            let p = ParametricRenderer::new(h, filters, &ParametricOptions::default())?;
            Engine::Parametric(Box::new(p))
        }
    })
}

/// What `build` refuses before it makes anything.
fn check(spec: &PipelineSpec, filters: &ShFilters, opts: &BuildOptions) -> Result<(), MediaError> {
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
    Ok(())
}

/// How late the encoded audio may reach its muxer before the muxer gives
/// up waiting and drains what it has. A single-pad muxer drains as soon as
/// a chunk is complete, so this slack delays nothing; it keeps the muxer
/// from draining a short chunk on a timeout when the encoder runs late
/// under CPU contention. Such a chunk moves every later chunk's nominal end
/// against the segment boundaries, and cmafmux (gst-plugin-fmp4 0.14.5)
/// swallows a split that falls between a chunk's nominal end and the end of
/// the frame holding it, then never starts another fragment (see
/// [`PipelineSpec::audio_chunk`], which makes that gap 1 µs).
pub(crate) const AUDIO_MUX_SLACK: gst::ClockTime = gst::ClockTime::from_seconds(2);

/// One appsrc → AAC (or Opus) → cmafmux → appsink branch per audio rendition: the
/// audio thread's outputs, and the muxers the split requests go to.
fn audio_branches(
    spec: &PipelineSpec,
    taps: &Taps,
    block: usize,
) -> Result<(Vec<Output>, Vec<gst::Element>), MediaError> {
    let mut outputs = Vec::new();
    let mut muxers = Vec::new();
    let seg = spec.segment_seconds as u64;
    for r in &spec.audio.renditions {
        let chunk = spec.audio_chunk(r.mix).map(clock);
        let src = el::audio_appsrc(spec.audio.sample_rate, r.mix.channels());
        let sink = appsink(&r.id, MediaKind::Audio, taps, None);
        // Audio fragments are cut where the video's are (split requests at
        // every segment boundary, see `running`), not every 2 s of audio: a
        // fragment of whole AAC frames is 1.984 s, and the renditions would
        // drift apart by 16 ms a segment. The scheduled fragment end is kept
        // out of the way.
        let mux = el::cmafmux(
            gst::ClockTime::from_seconds(seg * 2),
            chunk,
            false,
            AUDIO_MUX_SLACK,
        )?;
        let mut chain: Vec<gst::Element> = vec![src.clone().upcast()];
        chain.extend(el::audio_encode_chain(r.mix, r.bitrate_kbps)?);
        chain.extend([el::queue()?, mux.clone(), sink.upcast()]);
        add_and_link(taps.pipeline, &chain.iter().collect::<Vec<_>>())?;
        muxers.push(mux);
        outputs.push(Output::new(r.mix, src, block)?);
    }
    Ok((outputs, muxers))
}
