//! The seam between a session's actor and the media it runs: a
//! [`MediaBackend`] prepares a pipeline (filters designed, elements built,
//! nothing open), a [`Prepared`] starts, a [`Running`] is watched and
//! stopped. [`GstBackend`] is the real one; the actor's tests use a fake
//! that needs no GStreamer, so the supervision logic is tested fast and
//! deterministically.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use studiocast_media::master::RecordingState;
use studiocast_media::meters::MeterBank;
use studiocast_media::{AudioSnapshot, BuildOptions, EventSender, PipelineSpec, SessionPipeline};

use crate::config::SpatialConfig;
use crate::filters::FilterRequest;
use studiocast_media::spec::Renderer;
use studiocast_spatial::{HrtfSet, ShFilters};

/// Blocking calls: the actor runs them off the async runtime.
pub trait MediaBackend: Send + Sync + 'static {
    /// Design the filters and build the pipeline for `spec`; its media goes
    /// to `events`. Nothing is opened yet.
    fn prepare(
        &self,
        spec: &PipelineSpec,
        events: EventSender,
    ) -> Result<Box<dyn Prepared>, String>;
}

pub trait Prepared: Send {
    /// Record the untouched input to `path` until `state` says stop.
    fn set_master(&mut self, path: PathBuf, state: Arc<RecordingState>);
    /// Open the inputs and play; threads log inside `span`.
    fn start(self: Box<Self>, span: tracing::Span) -> Result<Box<dyn Running>, String>;
}

pub trait Running: Send {
    /// Drain: EOS on every source; the worker then sees the end.
    fn request_eos(&self);
    fn status(&self) -> AudioSnapshot;
    fn meters(&self) -> Option<Arc<MeterBank>>;
    /// The GStreamer pipeline, for diagnostics and fault injection.
    fn pipeline(&self) -> Option<gstreamer::Pipeline>;
    /// Stop every thread (after EOS, or to abort).
    fn shutdown(self: Box<Self>);
}

/// Test hook: `STUDIOCAST_FAULT_HANG_START=<pipeline>:<seconds>` makes the
/// start of that pipeline hang (as a device open that never returns does).
/// Read once at start; nothing else reads it.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub hang_start: Option<(String, Duration)>,
    /// `STUDIOCAST_FAULT_FREEZE_LIVE=<pipeline>:<seconds>`: that long after
    /// its start, the session's live views stop changing (a wedged encoder
    /// as the origin sees it: the disk and the session go on). Sources
    /// never stall the stream here (slate, silence), so this is how a test
    /// reaches the origin's 503 for a blocking reload that cannot be met.
    pub freeze_live: Option<(String, Duration)>,
}

/// `name:seconds`.
fn pipeline_and_delay(var: &str) -> Option<(String, Duration)> {
    let v = std::env::var(var).ok()?;
    let (name, secs) = v.split_once(':')?;
    Some((
        name.to_string(),
        Duration::from_secs_f64(secs.parse().ok()?),
    ))
}

impl Faults {
    pub fn from_env() -> Self {
        let hang_start = pipeline_and_delay("STUDIOCAST_FAULT_HANG_START");
        if let Some((name, d)) = &hang_start {
            tracing::warn!(pipeline = %name, seconds = d.as_secs_f64(), "fault injection: starts of this pipeline hang");
        }
        let freeze_live = pipeline_and_delay("STUDIOCAST_FAULT_FREEZE_LIVE");
        if let Some((name, d)) = &freeze_live {
            tracing::warn!(pipeline = %name, seconds = d.as_secs_f64(), "fault injection: the live views of this pipeline freeze");
        }
        Faults {
            hang_start,
            freeze_live,
        }
    }
}

/// The real backend: GStreamer pipelines with filters designed in an
/// isolated process (see [`crate::filters::filters_isolated`]).
pub struct GstBackend {
    pub spatial: SpatialConfig,
    pub faults: Faults,
}

impl MediaBackend for GstBackend {
    fn prepare(
        &self,
        spec: &PipelineSpec,
        events: EventSender,
    ) -> Result<Box<dyn Prepared>, String> {
        if let Some((name, d)) = &self.faults.hang_start {
            if *name == spec.name {
                std::thread::sleep(*d);
            }
        }
        let (filters, hrirs) = session_filters(&self.spatial, spec)
            .map_err(|e| format!("cannot prepare the binaural renderer: {e:#}"))?;
        let opts = BuildOptions {
            block: self.spatial.block,
            hrirs,
        };
        let built = SessionPipeline::build(spec, &filters, &opts, events)
            .map_err(|e| format!("cannot build pipeline '{}': {e}", spec.name))?;
        Ok(Box::new(GstPrepared(built)))
    }
}

/// The filters (and, for the parametric renderer, the HRTF set) a
/// session's preset asks for.
fn session_filters(
    spatial: &SpatialConfig,
    spec: &PipelineSpec,
) -> anyhow::Result<(ShFilters, Option<Arc<HrtfSet>>)> {
    let rate = spec.audio.sample_rate;
    if spec.audio.renderer == Renderer::Parametric {
        if spatial.headphone_eq.is_some() || spatial.max_re {
            anyhow::bail!(
                "the preset's parametric renderer takes neither [spatial] headphone_eq nor max_re \
                 (its correction towards the HRTF would undo either where the field is direct); unset them or use the \
                 linear renderer"
            );
        }
        let (f, h) = crate::filters::parametric_isolated(&spatial.hrtf, rate)?;
        return Ok((f, Some(Arc::new(h))));
    }
    let req = FilterRequest::for_session(spatial, spec.audio.source.order(), rate)?;
    Ok((crate::filters::filters_isolated(&req)?, None))
}

struct GstPrepared(studiocast_media::BuiltPipeline);

impl Prepared for GstPrepared {
    fn set_master(&mut self, path: PathBuf, state: Arc<RecordingState>) {
        self.0.set_master(path, state);
    }

    fn start(self: Box<Self>, span: tracing::Span) -> Result<Box<dyn Running>, String> {
        let running = self
            .0
            .start(span)
            .map_err(|e| format!("cannot start pipeline: {e}"))?;
        Ok(Box::new(GstRunning(running)))
    }
}

struct GstRunning(studiocast_media::RunningPipeline);

impl Running for GstRunning {
    fn request_eos(&self) {
        self.0.request_eos();
    }
    fn status(&self) -> AudioSnapshot {
        self.0.status()
    }
    fn meters(&self) -> Option<Arc<MeterBank>> {
        Some(self.0.meters())
    }
    fn pipeline(&self) -> Option<gstreamer::Pipeline> {
        Some(self.0.pipeline().clone())
    }
    fn shutdown(self: Box<Self>) {
        self.0.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parametric preset with a headphone EQ or max-rE configured is
    /// refused with both keys named, before any file is read.
    #[test]
    fn parametric_refuses_filter_only_options() {
        let spec = PipelineSpec::parse(
            "name = \"p\"\n[audio]\nrenderer = \"parametric\"\n\
             source = { kind = \"synthetic-scene\", order = 1 }\n\
             [[audio.rendition]]\nid = \"b\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n",
        )
        .unwrap();
        for eq in [true, false] {
            let spatial = SpatialConfig {
                hrtf: "/nonexistent.sofa".into(),
                headphone_eq: eq.then(|| "/nonexistent.wav".into()),
                max_re: !eq,
                ..SpatialConfig::default()
            };
            let e = format!("{:#}", session_filters(&spatial, &spec).err().unwrap());
            assert!(e.contains("headphone_eq") && e.contains("max_re"), "{e}");
        }
    }
}
