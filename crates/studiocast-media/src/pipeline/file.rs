//! A file job's encoder: the preset's audio renditions from stereo PCM
//! that the caller renders, and its video ladder from the input file
//! ([`super::file_video`]), as fast as the machine allows.
//!
//! The live pipeline is paced by the clock; this one has none. Each audio
//! rendition is `appsrc` (not live, timestamps from the sample count) →
//! AAC → `cmafmux` (one fragment per segment, no parts: the output is
//! VOD) → the same appsink as a live session, so the same worker and
//! packager write the lesson. Memory stays bounded end to end: `appsrc`
//! blocks [`FileEncoder::push`] while its small queue is full, the appsink
//! holds a few samples, and a lossless event queue
//! ([`crate::events::lossless_event_queue`]) holds the appsinks back to
//! the worker's pace.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use super::{add_and_link, appsink, gst_err, EosTracker, MediaKind, Poster, Taps};
use crate::elements as el;
use crate::events::EventSender;
use crate::spec::{Mix, PipelineSpec};
use crate::MediaError;

/// Bytes an `appsrc` queues before `push` blocks: about a second of
/// 48 kHz stereo f32, plenty to keep the encoder busy.
const APPSRC_BYTES: u64 = 384 << 10;

/// The AAC encoder's priming: its output starts with this many frames of
/// decoder warm-up, and cmafmux writes no edit list, so players (hls.js,
/// ffmpeg) play the sound that much late. Dropping as many frames from the
/// start of what is encoded puts every sample back at its own time
/// (measured: a beep 21 ms behind its flash without this).
const AAC_PRIMING: usize = 1024;

/// How long the encoder may make no progress before it has failed.
const STALL: Duration = Duration::from_secs(60);

/// The audio renditions of a preset, encoded from pushed PCM.
pub struct FileEncoder {
    pipeline: gst::Pipeline,
    srcs: Vec<gst_app::AppSrc>,
    /// With a picture: the audio muxers, split on the video's segment grid,
    /// and the next boundary (in segments) to ask for.
    splits: Option<(Vec<gst::Element>, u64)>,
    segment_ns: u64,
    poster: Option<Poster>,
    video_sink: Option<gst::Element>,
    mixes: Vec<Mix>,
    rate: u32,
    /// Frames pushed so far, per rendition (their timestamps).
    frames: Vec<u64>,
    /// Frames still to drop from each rendition's start (see [`AAC_PRIMING`]).
    skip: Vec<usize>,
}

impl FileEncoder {
    /// Build and start the encoder for `spec`'s audio renditions (and, with
    /// `video`, its ladder from that file, with a poster taken that far
    /// in); chunks go to `events` stamped with capture times from
    /// `epoch_ms` (the lesson's PROGRAM-DATE-TIME starts there).
    pub fn start(
        spec: &PipelineSpec,
        events: &EventSender,
        epoch_ms: i64,
        video: Option<(&Path, Duration)>,
    ) -> Result<FileEncoder, MediaError> {
        crate::init()?;
        if spec.audio.renditions.is_empty() {
            return Err(MediaError::Spec("the preset has no audio rendition".into()));
        }
        let pipeline = gst::Pipeline::new();
        let pdt_offset = Arc::new(AtomicI64::new(epoch_ms));
        let video = video.filter(|_| spec.video.is_some());
        let rungs = match (&spec.video, video) {
            (Some(v), Some(_)) => v.renditions.len(),
            _ => 0,
        };
        let eos = EosTracker::new(spec.audio.renditions.len() + rungs, events.clone());
        let video_origin = Arc::new(AtomicU64::new(0));
        let taps = Taps {
            pipeline: &pipeline,
            events,
            pdt_offset: &pdt_offset,
            eos: &eos,
            video_origin: &video_origin,
        };
        let rate = spec.audio.sample_rate;
        let segment = gst::ClockTime::from_seconds(u64::from(spec.segment_seconds.max(1)));
        // With a picture, audio fragments are cut where the video's are
        // (split requests from `push`): whole AAC frames make 1.984 s, and
        // the renditions would drift apart by 16 ms a segment. The muxer's
        // own fragment end is kept out of the way.
        let fragment = match video {
            Some(_) => segment * 2,
            None => segment,
        };
        let (poster, video_sink) = match video {
            Some((input, at)) => {
                let (p, s) = super::file_video::branch(spec, &taps, input, at)?;
                (Some(p), Some(s))
            }
            None => (None, None),
        };
        let mut srcs = Vec::new();
        let mut muxers = Vec::new();
        for r in &spec.audio.renditions {
            let src = el::audio_appsrc(rate, r.mix.channels());
            src.set_is_live(false);
            src.set_max_bytes(APPSRC_BYTES);
            src.set_block(true);
            let sink = appsink(&r.id, MediaKind::Audio, &taps, None);
            sink.set_property("async", false);
            let mux = el::cmafmux(fragment, None, false, gst::ClockTime::ZERO)?;
            let mut chain: Vec<gst::Element> = vec![src.clone().upcast()];
            chain.extend(el::audio_encode_chain(r.mix, r.bitrate_kbps)?);
            chain.extend([el::queue()?, mux.clone(), sink.upcast()]);
            add_and_link(&pipeline, &chain.iter().collect::<Vec<_>>())?;
            srcs.push(src);
            muxers.push(mux);
        }
        unblock_on_error(&pipeline, &srcs);
        pipeline.set_state(gst::State::Playing).map_err(gst_err)?;
        Ok(FileEncoder {
            pipeline,
            splits: poster.is_some().then_some((muxers, 1)),
            segment_ns: segment.nseconds(),
            poster,
            video_sink,
            mixes: spec.audio.renditions.iter().map(|r| r.mix).collect(),
            frames: vec![0; srcs.len()],
            // Opus carries its pre-skip in its header, which players honour.
            skip: spec
                .audio
                .renditions
                .iter()
                .map(|r| match r.mix {
                    Mix::Ambisonic => 0,
                    _ => AAC_PRIMING,
                })
                .collect(),
            srcs,
            rate,
        })
    }

    /// Which mix each rendition (by index) carries.
    pub fn mixes(&self) -> &[Mix] {
        &self.mixes
    }

    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Push interleaved frames (of the rendition's channel count) to
    /// rendition `index`; blocks while the encoder is behind.
    pub fn push(&mut self, index: usize, interleaved: &[f32]) -> Result<(), MediaError> {
        let ch = self.mixes.get(index).map_or(2, |m| m.channels());
        let interleaved = match self.skip.get_mut(index) {
            Some(skip) if *skip > 0 => {
                let gone = (*skip).min(interleaved.len() / ch);
                *skip -= gone;
                &interleaved[gone * ch..]
            }
            _ => interleaved,
        };
        let n = (interleaved.len() / ch) as u64;
        if n == 0 {
            return Ok(());
        }
        let rate = u64::from(self.rate);
        let at = |frames: u64| {
            gst::ClockTime::SECOND
                .mul_div_floor(frames, rate)
                .unwrap_or(gst::ClockTime::ZERO)
        };
        if index == 0 {
            let before = self.frames.first().copied().unwrap_or(0);
            self.request_splits(at(before + n).nseconds());
        }
        let (Some(src), Some(done)) = (self.srcs.get(index), self.frames.get_mut(index)) else {
            return Err(MediaError::Spec(format!("no audio rendition {index}")));
        };
        let bytes: Vec<u8> = interleaved[..(n as usize) * ch]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(at(*done));
            b.set_duration(at(*done + n) - at(*done));
        }
        *done += n;
        src.push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| self.failure(&format!("the encoder refused audio: {e:?}")))
    }

    /// Ask every audio muxer to cut at each video segment boundary up to
    /// `until_ns` (the end of the audio about to be pushed): the request
    /// reaches the muxer before the audio does.
    fn request_splits(&mut self, until_ns: u64) {
        let seg = self.segment_ns.max(1);
        let Some((muxers, next)) = &mut self.splits else {
            return;
        };
        while next.saturating_mul(seg) <= until_ns {
            let at = gst::ClockTime::from_nseconds(next.saturating_mul(seg));
            for m in muxers.iter() {
                el::cmafmux_split_at(m, at);
            }
            *next += 1;
        }
    }

    /// End every rendition and wait until the pipeline has drained (the
    /// events end with [`crate::MediaEvent::Eos`]) or failed.
    pub fn finish(self) -> Result<(), MediaError> {
        self.finish_with(|_| true)
    }

    /// [`FileEncoder::finish`], telling `tick` twice a second how far the
    /// video has got; `tick` returning false cancels. A pipeline that makes
    /// no progress for a minute has failed.
    pub fn finish_with(
        self,
        mut tick: impl FnMut(Option<Duration>) -> bool,
    ) -> Result<(), MediaError> {
        for src in &self.srcs {
            let _ = src.end_of_stream();
        }
        let bus = self.pipeline.bus().ok_or_else(|| gst_err("no bus"))?;
        let (mut last, mut since) = (None, std::time::Instant::now());
        let mut checked = std::time::Instant::now();
        let result = loop {
            let msg = bus.timed_pop(gst::ClockTime::from_mseconds(500));
            match msg.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Eos(_)) => break Ok(()),
                Some(gst::MessageView::Error(e)) => break Err(classify(e)),
                _ => {}
            }
            // Twice a second, however busy the bus (tags, state changes).
            if checked.elapsed() < Duration::from_millis(500) {
                continue;
            }
            checked = std::time::Instant::now();
            let at = self.video_position();
            if at != last {
                (last, since) = (at, std::time::Instant::now());
            } else if since.elapsed() > STALL {
                break Err(gst_err("the encoder made no progress for 60 s"));
            }
            if !tick(at) {
                break Err(gst_err("cancelled"));
            }
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }

    /// How far the video ladder's first rung has been encoded.
    pub fn video_position(&self) -> Option<Duration> {
        self.video_sink
            .as_ref()
            .and_then(|s| s.query_position::<gst::ClockTime>())
            .map(|t| Duration::from_nanos(t.nseconds()))
    }

    /// The poster frame (JPEG), when the input had a picture that reached
    /// the poster's time.
    pub fn poster(&self) -> Option<Poster> {
        self.poster.clone()
    }

    /// The pipeline's error, if it has posted one, else `fallback`.
    fn failure(&self, fallback: &str) -> MediaError {
        let error = self.pipeline.bus().and_then(|bus| {
            bus.pop_filtered(&[gst::MessageType::Error])
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(classify(e)),
                    _ => None,
                })
        });
        error.unwrap_or_else(|| gst_err(fallback))
    }
}

/// A demuxer's or decoder's complaint is about the file (no retry helps);
/// anything else is ours.
fn classify(e: &gst::message::Error) -> MediaError {
    let err = e.error();
    if err.is::<gst::StreamError>() {
        MediaError::BadFile(format!("the input file: {err}"))
    } else {
        gst_err(err)
    }
}

/// An error anywhere stops the pipeline, from a thread of its own, so a
/// `push` blocked on a full `appsrc` returns (flushing) instead of waiting
/// for ever for a branch that died. The message stays on the bus.
fn unblock_on_error(pipeline: &gst::Pipeline, srcs: &[gst_app::AppSrc]) {
    let Some(bus) = pipeline.bus() else { return };
    let srcs: Vec<gst_app::AppSrc> = srcs.to_vec();
    bus.set_sync_handler(move |_, msg| {
        if let gst::MessageView::Error(_) = msg.view() {
            let srcs = srcs.clone();
            std::thread::spawn(move || {
                for s in srcs {
                    let _ = s.set_state(gst::State::Null);
                }
            });
        }
        gst::BusSyncReply::Pass
    });
}

impl Drop for FileEncoder {
    fn drop(&mut self) {
        // A cancelled or failed job: stop at once, nothing more comes out.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
