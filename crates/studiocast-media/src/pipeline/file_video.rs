//! A file job's picture: the input decoded once, put on the preset's frame
//! grid, and encoded into every rung of the ladder with the same key
//! frames, as fast as the machine allows; plus one frame as the lesson's
//! poster.
//!
//! `filesrc → decodebin → videoconvert → videorate → tee`, then per rung
//! `videoscale → x264 (a quality preset) → cmafmux → appsink`, the live
//! session's appsink, so the same worker and packager write the lesson.
//! `videorate` starts the grid at the stream's start: frame n is at n/fps,
//! every GOP (and so every segment) starts at k × segment seconds, and the
//! audio renditions are split there too.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use super::sinks::appsink;
use super::{add_and_link, gst_err, MediaKind, Taps};
use crate::elements as el;
use crate::spec::PipelineSpec;
use crate::video_pump::raw_caps;
use crate::MediaError;

/// What a file's picture is.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// The media type (`video/x-h264`, …).
    pub codec: String,
    /// 0 when the demuxer does not say (MPEG-TS leaves it to the parser).
    pub width: u32,
    pub height: u32,
    /// Frames per second (0 when the container does not say).
    pub framerate: f64,
    pub duration: Option<Duration>,
}

/// Raw pictures queued in front of each scaler and encoder: enough to keep
/// every rung busy, and memory flat (1080p is 3 MB a frame).
const RAW_FRAMES: u32 = 3;

/// How long opening a file may take before it counts as unreadable.
const PROBE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(20);

/// Does `path` hold a picture? `None` for an audio-only file, and for one
/// GStreamer cannot read at all (the audio reader then says what is wrong
/// with it); an error for a picture no installed decoder reads (a job
/// should fail clearly, not lose the picture or wait for it).
/// WAV, RF64, BW64, Wave64, FLAC, AIFF and CAF, by their first bytes.
pub fn audio_only_container(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(16);
    let _ = std::fs::File::open(path).and_then(|f| f.take(16).read_to_end(&mut head));
    let n = head.len();
    let head = &head[..];
    let riff =
        n >= 12 && matches!(&head[..4], b"RIFF" | b"RF64" | b"BW64") && &head[8..12] == b"WAVE";
    // Wave64: the "riff" GUID.
    let w64 = head.starts_with(&[
        0x72, 0x69, 0x66, 0x66, 0x2E, 0x91, 0xCF, 0x11, 0xA5, 0xD6, 0x28, 0xDB, 0x04, 0xC1, 0x00,
        0x00,
    ]);
    let aiff = n >= 12 && &head[..4] == b"FORM" && matches!(&head[8..12], b"AIFF" | b"AIFC");
    riff || w64 || aiff || head.starts_with(b"fLaC") || head.starts_with(b"caff")
}

pub fn probe_video(path: &Path) -> Result<Option<VideoInfo>, MediaError> {
    // Containers that cannot hold a picture never reach GStreamer: its WAV
    // parser aborts the whole process (a g_assert) on a chunk of 2 GiB or
    // more, which any WAV over 4 GiB written without RF64 has after its
    // wrapped data size (sox's, for one). The project's readers take them.
    if audio_only_container(path) {
        return Ok(None);
    }
    crate::init()?;
    let pipeline = gst::Pipeline::new();
    let src = el::filesrc(path)?;
    // The demuxer's caps say the size and rate; no decoder is needed.
    let decode = el::decodebin_only(|_| false)?;
    add_and_link(&pipeline, &[&src, &decode])?;
    let found: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
    let seen = found.clone();
    let weak = pipeline.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        if let Some(caps) = pad.current_caps() {
            let video = caps
                .structure(0)
                .is_some_and(|s| s.name().starts_with("video/"));
            if let (true, Ok(mut slot)) = (video, seen.lock()) {
                slot.get_or_insert(caps);
            }
        }
        swallow(&pipeline, pad);
    });
    let result = (|| {
        pipeline.set_state(gst::State::Paused).map_err(gst_err)?;
        let bus = pipeline.bus().ok_or_else(|| gst_err("no bus"))?;
        let msg = bus.timed_pop_filtered(
            PROBE_TIMEOUT,
            &[gst::MessageType::AsyncDone, gst::MessageType::Error],
        );
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::AsyncDone(_)) => Ok(()),
            _ => Err(gst_err("unreadable")),
        }
    })();
    let duration = pipeline
        .query_duration::<gst::ClockTime>()
        .map(|d| Duration::from_nanos(d.nseconds()));
    let _ = pipeline.set_state(gst::State::Null);
    if result.is_err() {
        return Ok(None);
    }
    let Some(caps) = found.lock().ok().and_then(|c| c.clone()) else {
        return Ok(None);
    };
    let Some(s) = caps.structure(0) else {
        return Ok(None);
    };
    if !decodable(&caps) {
        return Err(MediaError::BadFile(format!(
            "{}: no decoder here for its picture ({})",
            path.display(),
            s.name()
        )));
    }
    let dim = |k: &str| s.get::<i32>(k).ok().and_then(|v| u32::try_from(v).ok());
    let fps = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.denom() > 0)
        .map_or(0.0, |f| f64::from(f.numer()) / f64::from(f.denom()));
    Ok(Some(VideoInfo {
        codec: s.name().to_string(),
        width: dim("width").unwrap_or(0),
        height: dim("height").unwrap_or(0),
        framerate: fps,
        duration,
    }))
}

/// Is there a decoder (or, for raw video, no need of one) for `caps`?
fn decodable(caps: &gst::Caps) -> bool {
    if caps.structure(0).is_some_and(|s| s.name() == "video/x-raw") {
        return true;
    }
    let decoders = gst::ElementFactory::factories_with_type(
        gst::ElementFactoryType::DECODER | gst::ElementFactoryType::MEDIA_VIDEO,
        gst::Rank::MARGINAL,
    );
    // The demuxer's caps may lack what a parser adds (stream-format,
    // alignment): the media type alone is tried too.
    let bare = caps
        .structure(0)
        .map(|s| gst::Caps::new_empty_simple(s.name()))
        .unwrap_or_else(gst::Caps::new_any);
    decoders
        .iter()
        .any(|f| f.can_sink_any_caps(caps) || f.can_sink_any_caps(&bare))
}

/// Post an error for the file from `element`: whoever watches the bus
/// ends the job with it.
fn fail(element: &gst::Element, why: &str) {
    let msg = gst::message::Error::builder(gst::StreamError::Decode, why)
        .src(element)
        .build();
    let _ = element.post_message(msg);
}

/// Send `decode`'s first stream whose media type starts with `kind` to
/// `entry` and drop the others; when every stream is out and none got
/// there, post `missing` as the file's error (else the pipeline would wait
/// for that stream for ever).
pub(super) fn route_first(
    pipeline: &gst::Pipeline,
    decode: &gst::Element,
    entry: gst::Pad,
    kind: &'static str,
    missing: &'static str,
) {
    let linked = entry.clone();
    decode.connect_no_more_pads(move |d| {
        if !linked.is_linked() {
            fail(d, missing);
        }
    });
    let weak = pipeline.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let wanted = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with(kind)))
            .unwrap_or(false);
        if !(wanted && !entry.is_linked() && pad.link(&entry).is_ok()) {
            swallow(&pipeline, pad);
        }
    });
}

/// Link a decoded stream nobody needs to a sink that drops it (an unlinked
/// pad would stop the whole pipeline with not-linked).
fn swallow(pipeline: &gst::Pipeline, pad: &gst::Pad) {
    let Ok(sink) = el::fakesink() else { return };
    if pipeline.add(&sink).is_err() {
        return;
    }
    let _ = sink.sync_state_with_parent();
    if let Some(sinkpad) = sink.static_pad("sink") {
        let _ = pad.link(&sinkpad);
    }
}

/// The poster: one JPEG frame, taken `at` into the stream.
#[derive(Clone, Default)]
pub struct Poster(Arc<Mutex<Option<Vec<u8>>>>);

impl Poster {
    /// The JPEG, once the frame has gone through.
    pub fn jpeg(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|j| j.clone())
    }
}

/// Build the picture's branch into `taps.pipeline`; returns the poster
/// slot, filled when the pipeline passes `poster_at`, and the first rung's
/// sink (its position is the job's progress).
pub(super) fn branch(
    spec: &PipelineSpec,
    taps: &Taps,
    input: &Path,
    poster_at: Duration,
) -> Result<(Poster, gst::Element), MediaError> {
    let v = spec
        .video
        .as_ref()
        .ok_or_else(|| MediaError::Spec("the preset has no video ladder".into()))?;
    let fps = v.framerate.max(1);
    let src = el::filesrc(input)?;
    let decode = el::decodebin_only(|kind| kind != "audio")?;
    add_and_link(taps.pipeline, &[&src, &decode])?;
    let head = el::queue_frames(RAW_FRAMES)?;
    let tee = el::tee()?;
    let grid = el::capsfilter(
        gst::Caps::builder("video/x-raw")
            .field("framerate", gst::Fraction::new(fps as i32, 1))
            .build(),
    )?;
    add_and_link(
        taps.pipeline,
        &[&head, &el::videoconvert()?, &el::videorate()?, &grid, &tee],
    )?;
    // The first decoded picture goes to the ladder; everything else (the
    // audio, a second angle) is dropped.
    let entry = head
        .static_pad("sink")
        .ok_or_else(|| gst_err("queue without sink"))?;
    route_first(
        taps.pipeline,
        &decode,
        entry,
        "video/",
        "the file's picture could not be decoded",
    );
    let segment = gst::ClockTime::from_seconds(u64::from(spec.segment_seconds.max(1)));
    let mut first = None;
    for r in &v.renditions {
        let profile = el::capsfilter(
            gst::Caps::builder("video/x-h264")
                .field("profile", r.profile.as_str())
                .build(),
        )?;
        let sink = appsink(&r.id, MediaKind::Video, taps, None);
        // Nothing in a file job keeps time: a sink waiting to preroll would
        // only let one branch hold the others (and the audio) in PAUSED.
        sink.set_property("async", false);
        first.get_or_insert_with(|| sink.clone().upcast::<gst::Element>());
        let rung = [
            el::queue_frames(RAW_FRAMES)?,
            el::videoscale()?,
            el::videoconvert()?,
            el::capsfilter(raw_caps(r.width, r.height, fps))?,
            el::x264enc_vod(r.bitrate_kbps, spec.gop_frames())?,
            profile,
            el::h264parse()?,
            el::queue()?,
            el::cmafmux(segment, None, false, gst::ClockTime::ZERO)?,
            sink.upcast(),
        ];
        let refs: Vec<&gst::Element> = rung.iter().collect();
        add_and_link(taps.pipeline, &refs)?;
        tee.link(&rung[0]).map_err(gst_err)?;
    }
    let first = first.ok_or_else(|| MediaError::Spec("the video ladder has no rung".into()))?;
    let poster = poster_branch(taps.pipeline, &tee, v.program_size(), fps, poster_at)?;
    Ok((poster, first))
}

/// `tee → queue → (one frame) → scale → JPEG → appsink`. Every frame but
/// the chosen one is dropped before the scaler, so the poster costs one
/// JPEG encode.
fn poster_branch(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    (width, height): (u32, u32),
    fps: u32,
    at: Duration,
) -> Result<Poster, MediaError> {
    let queue = el::queue_frames(1)?;
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(1)
        .build();
    // Its one frame comes late: a sink that waited for it to preroll
    // would hold the whole pipeline in PAUSED (it did, 60 s in).
    sink.set_property("async", false);
    let chain = [
        queue.clone(),
        el::videoscale()?,
        el::videoconvert()?,
        el::capsfilter(raw_caps(width, height, fps))?,
        el::jpegenc(85)?,
        sink.clone().upcast(),
    ];
    let refs: Vec<&gst::Element> = chain.iter().collect();
    add_and_link(pipeline, &refs)?;
    tee.link(&queue).map_err(gst_err)?;
    let at = gst::ClockTime::from_nseconds(at.as_nanos() as u64);
    let taken = std::sync::atomic::AtomicBool::new(false);
    if let Some(pad) = queue.static_pad("sink") {
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let due = info.buffer().and_then(|b| b.pts()).is_some_and(|p| p >= at);
            if due && !taken.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return gst::PadProbeReturn::Ok;
            }
            // Consumed here. (Returning Drop made GStreamer 1.22 unref the
            // frame a second time: a CRITICAL per frame.)
            drop(info.data.take());
            gst::PadProbeReturn::Handled
        });
    }
    let poster = Poster::default();
    let slot = poster.0.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    if let Ok(mut j) = slot.lock() {
                        j.get_or_insert_with(|| map.to_vec());
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(poster)
}
