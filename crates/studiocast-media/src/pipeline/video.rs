//! The video branch: one picture (a test pattern with a burnt-in clock, or
//! the frames an ingest delivers, paced by the pump), a tee, and per rung
//! of the ladder a scaler, an x264 encode, cmafmux and an appsink. Every
//! rung gets the same key frames, so segment and part boundaries are the
//! same in every rendition.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use super::sinks::appsink;
use super::{add_and_link, clock, gst_err, MediaKind, Taps};
use crate::elements as el;
use crate::ingest::IngestSpec;
use crate::spec::{AudioSource, PipelineSpec, VideoSource};
use crate::MediaError;

/// What the video muxers allow the encoders beyond the latency they
/// report (x264 reports none in zero-latency mode, yet takes tens of ms a
/// frame): a muxer that gives up before the next GOP's key frame arrives
/// cuts the fragment on a timeout.
const ENCODER_SLACK: gst::ClockTime = gst::ClockTime::from_mseconds(200);

/// What the video pump needs once the ingest is open.
pub(crate) struct PumpParts {
    pub(crate) appsrc: gst_app::AppSrc,
    pub(crate) slate: gst::Buffer,
    pub(crate) framerate: u32,
    pub(crate) gop: u32,
}

pub(super) type VideoHead = (Option<gst::Element>, Option<(IngestSpec, PumpParts)>);

/// Build the branch; returns the test source (to send EOS to) or the
/// ingest to open and the pump's parts.
pub(super) fn branch(
    spec: &PipelineSpec,
    taps: &Taps,
    lag: &Arc<AtomicI64>,
) -> Result<VideoHead, MediaError> {
    let Some(v) = &spec.video else {
        return Ok((None, None));
    };
    let (width, height) = v.program_size();
    let (head, out): (Vec<gst::Element>, VideoHead) = match &v.source {
        VideoSource::TestPattern { pattern } => {
            let src = el::videotestsrc(pattern)?;
            let raw = el::capsfilter(crate::video_pump::raw_caps(width, height, v.framerate))?;
            (
                vec![src.clone(), raw, el::clockoverlay()?],
                (Some(src), None),
            )
        }
        other => ingest_head(spec, other, width, height)?,
    };
    // One requester of key frames: x264's own GOP for a test pattern; the
    // pump's forced key units (on the segment grid, and after a slate) for
    // an ingest, with x264's GOP far out of their way (two requesters made
    // x264 re-type forced IDRs as I frames and warn every segment).
    let keyint = match &v.source {
        VideoSource::TestPattern { .. } => spec.gop_frames(),
        _ => spec.gop_frames().saturating_mul(10),
    };
    // In chunk mode cmafmux ends a fragment only after a chunk that ends
    // at or past the fragment duration; six 1/3 s chunks end a nanosecond
    // short of 2 s (integer ns), which pushed every fragment to the next
    // key frame, 4 s. Half a part short keeps the key frame at 2 s the
    // fragment's first.
    let segment = gst::ClockTime::from_seconds(spec.segment_seconds as u64);
    let fragment = match spec.part_duration() {
        Some(p) => segment.saturating_sub(clock(p / 2)),
        None => segment,
    };
    let tee = el::tee()?;
    let mut chain: Vec<&gst::Element> = head.iter().collect();
    chain.push(&tee);
    add_and_link(taps.pipeline, &chain)?;
    for (i, r) in v.renditions.iter().enumerate() {
        let scaled = el::capsfilter(crate::video_pump::raw_caps(r.width, r.height, v.framerate))?;
        let profile = el::capsfilter(
            gst::Caps::builder("video/x-h264")
                .field("profile", r.profile.as_str())
                .build(),
        )?;
        // The first rung's lag stands for the encoders' load.
        let sink = appsink(&r.id, MediaKind::Video, taps, (i == 0).then_some(lag));
        let rung = [
            el::queue()?,
            el::videoscale()?,
            el::videoconvert()?,
            scaled,
            el::x264enc(r.bitrate_kbps, keyint)?,
            profile,
            el::h264parse()?,
            el::queue()?,
            el::cmafmux(
                fragment,
                spec.part_duration().map(clock),
                false,
                ENCODER_SLACK,
            )?,
            sink.upcast(),
        ];
        let refs: Vec<&gst::Element> = rung.iter().collect();
        add_and_link(taps.pipeline, &refs)?;
        tee.link(&rung[0]).map_err(gst_err)?;
    }
    Ok(out)
}

/// The head for a network or capture-card input: an appsrc the pump feeds,
/// the slate it shows while the input is away, and the ingest to open.
fn ingest_head(
    spec: &PipelineSpec,
    source: &VideoSource,
    width: u32,
    height: u32,
) -> Result<(Vec<gst::Element>, VideoHead), MediaError> {
    let framerate = spec.video.as_ref().map_or(30, |v| v.framerate);
    crate::ingest::check_present(source).map_err(|reason| MediaError::InputUnavailable {
        input: IngestSpec::describe_source(source),
        reason,
    })?;
    let src = gst_app::AppSrc::builder()
        .caps(&crate::video_pump::raw_caps(width, height, framerate))
        .format(gst::Format::Time)
        .is_live(true)
        .max_bytes(64 << 20)
        .build();
    let slate = crate::video_pump::make_slate(width, height, "Signal lost · back shortly")?;
    let audio = match &spec.audio.source {
        AudioSource::Embedded { channels, .. } => Some((*channels, spec.audio.sample_rate)),
        _ => None,
    };
    let ingest = IngestSpec {
        source: source.clone(),
        width,
        height,
        audio,
    };
    let parts = PumpParts {
        appsrc: src.clone(),
        slate,
        framerate,
        gop: spec.gop_frames(),
    };
    Ok((vec![src.upcast()], (None, Some((ingest, parts)))))
}
