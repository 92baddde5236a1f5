//! The demo preset runs on real GStreamer and produces CMAF for every
//! rendition, then drains on EOS.

use std::time::{Duration, Instant};

use gstreamer as gst;

use studiocast_media::{event_queue, BuildOptions, MediaEvent, PipelineSpec, SessionPipeline};
use studiocast_spatial::{design, DecoderMethod, DesignOptions, HrtfSet, DEFAULT_SOFA};

/// Two live 720p encoders at once starve a 2-core machine; run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn demo_spec() -> PipelineSpec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../pipelines/demo.toml"
    ))
    .unwrap();
    PipelineSpec::parse(&text).unwrap()
}

#[test]
fn demo_pipeline_produces_cmaf_for_every_rendition() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_demo_once();
}

#[test]
fn two_sessions_in_one_process() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_demo_once();
    run_demo_once();
}

fn run_demo_once() {
    let spec = demo_spec();
    let hrtf = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
    let filters = design(&hrtf, &DesignOptions::new(DecoderMethod::Ls, 3)).unwrap();
    let (tx, rx, _) = event_queue(64 << 20);
    let p = SessionPipeline::build(&spec, &filters, &BuildOptions::default(), tx)
        .unwrap()
        .start(tracing::Span::none())
        .unwrap();
    let mut inits = Vec::new();
    let mut chunks: Vec<Chunk> = Vec::new();
    let t0 = Instant::now();
    let mut eos = false;
    let mut asked = false;
    while t0.elapsed() < Duration::from_secs(40) {
        if !asked && t0.elapsed() > Duration::from_secs(9) {
            p.request_eos();
            asked = true;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(MediaEvent::Init { rendition, data }) => {
                assert!(data.windows(4).any(|w| w == b"moov"), "init has a moov box");
                inits.push(rendition);
            }
            Ok(MediaEvent::Chunk {
                rendition,
                data,
                duration,
                pdt_ms,
                independent,
                boundary,
                ..
            }) => {
                assert!(data.windows(4).any(|w| w == b"moof"));
                chunks.push(Chunk {
                    rendition,
                    duration,
                    independent,
                    boundary,
                    pdt_ms,
                });
            }
            Ok(MediaEvent::Eos) => {
                eos = true;
                break;
            }
            Ok(MediaEvent::Error(e)) => panic!("pipeline error: {e}"),
            Ok(MediaEvent::Discontinuity { .. }) => panic!("a test pattern never drops"),
            Err(_) => {}
        }
    }
    p.shutdown();
    assert!(eos, "no EOS after stop");
    inits.sort();
    assert_eq!(
        inits,
        vec!["360p", "720p", "ambisonic", "binaural", "stereo"]
    );
    let part = spec.part_duration().unwrap().as_secs_f64();
    let part_target = spec.part_target().unwrap();
    let mut starts = Vec::new();
    // (The ambisonic rendition is Opus: 20 ms frames, cut like AAC's.)
    for r in ["720p", "360p", "binaural", "stereo", "ambisonic"] {
        let c: Vec<&Chunk> = chunks.iter().filter(|c| c.rendition == r).collect();
        let segs = segments(&c);
        assert!(segs.len() >= 4, "{r}: {} segments", segs.len());
        // The first segment starts wherever the pipeline started; the
        // last one is cut by the end of stream; those between are 2 s.
        for s in &segs[1..segs.len() - 1] {
            let total: f64 = s.iter().map(|c| c.duration).sum();
            assert!((total - 2.0).abs() < 0.03, "{r}: segment of {total} s");
            assert!(s[0].independent, "{r}: segment without a sync sample first");
            // Low latency: the segment arrives in parts of about 1/3 s,
            // none longer than the advertised part target.
            assert!(s.len() >= 5, "{r}: {} parts in a segment", s.len());
            for c in s.iter() {
                assert!(
                    c.duration <= part_target + 1e-3,
                    "{r}: part of {} s > {part_target}",
                    c.duration
                );
            }
            // Video parts are 10 frames exactly; audio parts are whole AAC
            // (or Opus) frames, the last one or two cut by the segment
            // boundary.
            let whole = if r.ends_with('p') { 1 } else { 2 };
            for c in &s[..s.len() - whole] {
                assert!(
                    (c.duration - part).abs() < 0.03,
                    "{r}: part of {} s, expected {part}",
                    c.duration
                );
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (now - c[0].pdt_ms).abs() < 60_000,
            "{r}: PDT {} is not near now {now}",
            c[0].pdt_ms
        );
        starts.push(segs[1..].iter().map(|s| s[0].pdt_ms).collect::<Vec<_>>());
    }
    // Segment N of every rendition covers the same time: video key frames
    // and audio splits are on one grid (within one AAC frame, 21 ms), so a
    // player switching rungs or audio tracks stays in sync.
    let n = starts.iter().map(Vec::len).min().unwrap();
    for i in 0..n {
        let (lo, hi) = starts.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| {
            (lo.min(s[i]), hi.max(s[i]))
        });
        assert!(
            hi - lo <= 25,
            "segment {i} starts spread over {} ms: {starts:?}",
            hi - lo
        );
    }
}

struct Chunk {
    rendition: String,
    duration: f64,
    independent: bool,
    boundary: bool,
    pdt_ms: i64,
}

/// Chunks grouped into segments at each `boundary`.
fn segments<'a>(chunks: &[&'a Chunk]) -> Vec<Vec<&'a Chunk>> {
    let mut out: Vec<Vec<&Chunk>> = Vec::new();
    for c in chunks {
        match out.last_mut() {
            Some(s) if !c.boundary => s.push(c),
            _ => out.push(vec![c]),
        }
    }
    out
}

#[test]
fn an_element_error_is_reported_and_teardown_does_not_hang() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use gstreamer::prelude::*;
    let spec = demo_spec();
    let hrtf = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
    let filters = design(&hrtf, &DesignOptions::new(DecoderMethod::Ls, 3)).unwrap();
    let (tx, rx, _) = event_queue(64 << 20);
    let p = SessionPipeline::build(&spec, &filters, &BuildOptions::default(), tx)
        .unwrap()
        .start(tracing::Span::none())
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // What a failing device or encoder does: post an error on the bus.
    let enc = p
        .pipeline()
        .iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.name().starts_with("x264enc"))
        .unwrap();
    gstreamer::element_error!(
        enc,
        gstreamer::StreamError::Encode,
        ["simulated encoder failure"]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = None;
    while Instant::now() < deadline {
        if let Ok(MediaEvent::Error(e)) = rx.recv_timeout(Duration::from_millis(200)) {
            got = Some(e);
            break;
        }
    }
    let e = got.expect("the error reached the session");
    assert!(
        e.contains("simulated encoder failure") && e.contains("x264enc"),
        "{e}"
    );
    // Abort without EOS: must return promptly.
    let t = Instant::now();
    p.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "teardown took {:?}",
        t.elapsed()
    );
}

/// The media timescale (sample rate for audio) of an init segment's `mdhd`.
fn mdhd_timescale(init: &[u8]) -> Option<u32> {
    let p = init.windows(4).position(|w| w == b"mdhd")?;
    let version = *init.get(p + 4)?;
    let at = p + 8 + if version == 1 { 16 } else { 8 };
    let b = init.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Studio rates other than 48 kHz: filters designed at the rate, AAC at the
/// rate, fragments of the right length.
#[test]
fn audio_renditions_at_44k1_and_96k() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for rate in [44_100u32, 96_000] {
        let text = format!(
            "name = \"r{rate}\"\n[audio]\nsample_rate = {rate}\nsource = {{ kind = \"synthetic-scene\", order = 1 }}\n[[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n"
        );
        let spec = PipelineSpec::parse(&text).unwrap();
        let hrtf = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), rate).unwrap();
        let filters = design(&hrtf, &DesignOptions::new(DecoderMethod::Ls, 1)).unwrap();
        let (tx, rx, _) = event_queue(64 << 20);
        let p = SessionPipeline::build(&spec, &filters, &BuildOptions::default(), tx)
            .unwrap()
            .start(tracing::Span::none())
            .unwrap();
        let t0 = Instant::now();
        let (mut init, mut total, mut eos) = (None, 0.0f64, false);
        while t0.elapsed() < Duration::from_secs(20) {
            if t0.elapsed() > Duration::from_secs(5) {
                p.request_eos();
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(MediaEvent::Init { data, .. }) => init = Some(data),
                Ok(MediaEvent::Chunk { duration, .. }) => total += duration,
                Ok(MediaEvent::Eos) => {
                    eos = true;
                    break;
                }
                Ok(MediaEvent::Error(e)) => panic!("{rate} Hz: {e}"),
                _ => {}
            }
        }
        p.shutdown();
        assert!(eos, "{rate} Hz: no EOS");
        let init = init.expect("an init segment");
        assert_eq!(mdhd_timescale(&init), Some(rate), "{rate} Hz");
        assert!(total > 3.5, "{rate} Hz: only {total} s of audio");
    }
}

/// Audio segments start on the segment grid, not every N whole AAC frames:
/// 1 s is 46.875 frames at 48 kHz, and fragments of 47 frames would drift
/// 2.7 ms a segment (40 ms over this run), out of step with the video's
/// key frames and with the other audio renditions after a level switch.
#[test]
fn audio_segments_stay_on_the_grid() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for latency in ["low", "standard"] {
        let text = format!(
            "name = \"grid\"\nsegment_seconds = 1\nlatency = \"{latency}\"\n[audio]\nsource = {{ kind = \"synthetic-scene\", order = 1 }}\n[[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n"
        );
        let spec = PipelineSpec::parse(&text).unwrap();
        let hrtf = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
        let filters = design(&hrtf, &DesignOptions::new(DecoderMethod::Ls, 1)).unwrap();
        let (tx, rx, _) = event_queue(64 << 20);
        let p = SessionPipeline::build(&spec, &filters, &BuildOptions::default(), tx)
            .unwrap()
            .start(tracing::Span::none())
            .unwrap();
        let t0 = Instant::now();
        let mut starts = Vec::new();
        while t0.elapsed() < Duration::from_secs(24) && starts.len() < 17 {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(MediaEvent::Chunk {
                    boundary: true,
                    pdt_ms,
                    ..
                }) => starts.push(pdt_ms),
                Ok(MediaEvent::Error(e)) => panic!("{e}"),
                _ => {}
            }
        }
        p.shutdown();
        assert!(starts.len() >= 15, "{latency}: {} segments", starts.len());
        // From the first whole segment on, segment i starts i seconds
        // later, within one AAC frame (21.3 ms) and the ms rounding.
        let first = starts[1];
        for (i, s) in starts[1..].iter().enumerate() {
            let off = s - first - i as i64 * 1000;
            assert!(
                off.abs() <= 23,
                "{latency}: segment {i} is {off} ms off the grid: {starts:?}"
            );
        }
    }
}

/// Every rendition's segment N covers the same time, for 100 segments and
/// more: each audio segment starts at the first AAC frame at or after the
/// video's key frame (within one frame, 21.3 ms, and the ms rounding of
/// the capture stamps), in both audio renditions, with no drift. The old
/// cutter (93 AAC frames per 2 s segment) drifted 16 ms a segment: 1.6 s
/// over this run. 1 s segments keep it under two minutes.
#[test]
fn renditions_stay_aligned_over_a_hundred_segments() {
    // Alone: beside the 720p tests on two cores, an audio muxer was seen
    // to ignore its split requests (open, see the README's Status).
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let text = "name = \"align\"\nsegment_seconds = 1\nlatency = \"low\"\n\
        [video]\nsource = { kind = \"test-pattern\", pattern = \"smpte\" }\nframerate = 30\n\
        [[video.rendition]]\nid = \"180p\"\nwidth = 320\nheight = 180\nbitrate_kbps = 300\n\
        [audio]\nsource = { kind = \"synthetic-scene\", order = 1 }\n\
        [[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n\
        [[audio.rendition]]\nid = \"stereo\"\nname = \"S\"\nmix = \"stereo\"\n";
    let spec = PipelineSpec::parse(text).unwrap();
    let hrtf = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
    let filters = design(&hrtf, &DesignOptions::new(DecoderMethod::Ls, 1)).unwrap();
    let (tx, rx, _) = event_queue(64 << 20);
    let p = SessionPipeline::build(&spec, &filters, &BuildOptions::default(), tx)
        .unwrap()
        .start(tracing::Span::none())
        .unwrap();
    const WANT: usize = 103;
    let mut starts: std::collections::HashMap<String, Vec<i64>> = Default::default();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(150)
        && (starts.len() < 3 || starts.values().any(|v| v.len() < WANT))
    {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(MediaEvent::Chunk {
                rendition,
                boundary: true,
                pdt_ms,
                ..
            }) => starts.entry(rendition).or_default().push(pdt_ms),
            Ok(MediaEvent::Error(e)) => panic!("{e}"),
            _ => {}
        }
    }
    p.shutdown();
    let video = &starts["180p"];
    assert!(video.len() >= WANT, "{} video segments", video.len());
    for audio in ["binaural", "stereo"] {
        let a = &starts[audio];
        assert!(a.len() >= WANT, "{audio}: {} segments", a.len());
        // Segment 0 starts wherever each stream's first sample fell; from
        // segment 1 on, the cuts are the pipeline's.
        // Audio is cut at the first AAC frame at or after each boundary of
        // the video's grid (its first fragment's start plus k × segment):
        // at or after the video's key frame, within one AAC frame (and the
        // ms rounding of the stamps), repeating every 8 s (375 AAC frames)
        // rather than drifting. On the absolute grid instead, a test
        // pattern's audio came up to 30 ms early.
        let offsets: Vec<i64> = (1..WANT).map(|i| a[i] - video[i]).collect();
        for (i, off) in offsets.iter().enumerate() {
            assert!(
                (-1..=22).contains(off),
                "{audio} segment {} starts {off} ms from the video's: {offsets:?}",
                i + 1
            );
        }
        let mean = |v: &[i64]| v.iter().sum::<i64>() as f64 / v.len() as f64;
        let (early, late) = (mean(&offsets[..40]), mean(&offsets[offsets.len() - 40..]));
        assert!(
            (early - late).abs() < 3.0,
            "{audio} drifts: {early:.1} ms then {late:.1} ms: {offsets:?}"
        );
        let (lo, hi) = (offsets.iter().min().unwrap(), offsets.iter().max().unwrap());
        eprintln!(
            "{audio}: {} segments, start minus the video's: {lo}..{hi} ms",
            offsets.len()
        );
    }
}

/// Fragment starts a live audio muxer makes when a segment split falls
/// `after_ms` after the nominal end of a chunk, with the muxer given
/// `chunk` as its chunk duration. Six seconds of
/// audio with splits 2 s apart from there: a muxer that keeps splitting
/// starts four fragments (the first, then one at each split).
fn fragment_starts_with_a_split_after_a_chunk_end(chunk: gst::ClockTime, after_ms: f64) -> usize {
    use gst::prelude::*;
    use gstreamer_app as gst_app;
    use studiocast_media::elements as el;
    use studiocast_media::spec::Mix;
    studiocast_media::init().unwrap();
    let rate = 48_000u32;
    let pipeline = gst::Pipeline::new();
    let src = el::audio_appsrc(rate, 2);
    src.set_is_live(false);
    src.set_block(true);
    let mux = el::cmafmux(
        gst::ClockTime::from_seconds(4),
        Some(chunk),
        false,
        gst::ClockTime::from_seconds(1),
    )
    .unwrap();
    let sink = gst_app::AppSink::builder().sync(false).build();
    let mut chain: Vec<gst::Element> = vec![src.clone().upcast()];
    chain.extend(el::audio_encode_chain(Mix::Binaural, 128).unwrap());
    chain.extend([el::queue().unwrap(), mux.clone(), sink.clone().upcast()]);
    pipeline.add_many(&chain).unwrap();
    gst::Element::link_many(&chain).unwrap();
    // The splits follow the first encoded frame (the encoder's timestamps
    // are not assumed): the first chunk's nominal end plus `after_ms`, then
    // 2 s apart.
    let m = mux.clone();
    let first = std::sync::atomic::AtomicBool::new(false);
    mux.static_pad("sink_0")
        .or_else(|| mux.sink_pads().into_iter().next())
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                if !first.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    for k in 0..3u64 {
                        let at = pts
                            + chunk
                            + gst::ClockTime::from_nseconds((after_ms * 1e6) as u64)
                            + gst::ClockTime::from_seconds(2 * k);
                        el::cmafmux_split_at(&m, at);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let block = 1024usize;
    let blocks = 6 * rate as usize / block;
    for b in 0..blocks {
        let mut buf = gst::Buffer::with_size(block * 2 * 4).unwrap();
        {
            let bm = buf.get_mut().unwrap();
            let ns = |f: usize| (f as u128 * 1_000_000_000 / rate as u128) as u64;
            bm.set_pts(gst::ClockTime::from_nseconds(ns(b * block)));
            bm.set_duration(gst::ClockTime::from_nseconds(
                ns((b + 1) * block) - ns(b * block),
            ));
            let mut map = bm.map_writable().unwrap();
            for (i, s) in map.chunks_exact_mut(4).enumerate() {
                let t = (b * block + i / 2) as f32 / rate as f32;
                s.copy_from_slice(
                    &(0.2 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()).to_le_bytes(),
                );
            }
        }
        src.push_buffer(buf).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut starts = 0;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(20)) {
        let mut bufs: Vec<gst::Buffer> = Vec::new();
        if let Some(list) = sample.buffer_list() {
            bufs.extend(list.iter_owned());
        } else if let Some(b) = sample.buffer_owned() {
            bufs.push(b);
        }
        for b in bufs {
            let f = b.flags();
            let header = f.contains(gst::BufferFlags::HEADER);
            // A frame that straddles a split comes out on its own, flagged
            // as a start or not; the sink folds it into the segment before.
            let straddler = b
                .duration()
                .is_some_and(|d| d < gst::ClockTime::from_mseconds(30));
            if header
                && !straddler
                && !f.contains(gst::BufferFlags::DISCONT)
                && !f.contains(gst::BufferFlags::DELTA_UNIT)
            {
                starts += 1;
            }
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    starts
}

/// cmafmux (gst-plugin-fmp4 0.14.5) in chunk mode ends a chunk with the
/// frame that holds the chunk's nominal end; a split requested between
/// that end and the frame's end is swallowed, and the muxer never starts
/// another fragment (every later audio segment of a live session was then
/// cut by the worker's safety net, off the video's grid). The live audio
/// muxers get chunks 1 µs short of whole frames
/// ([`PipelineSpec::audio_chunk`]), which leaves no such gap.
#[test]
fn a_split_just_after_a_chunk_end_still_starts_every_fragment() {
    let spec = demo_spec();
    let chunk = spec
        .audio_chunk(studiocast_media::spec::Mix::Binaural)
        .unwrap();
    let ns = |d: Duration| gst::ClockTime::from_nseconds(d.as_nanos() as u64);
    // Splits anywhere across the frame after a chunk's nominal end.
    for after_ms in [0.01, 1.0, 3.0, 5.0, 8.0, 12.0, 17.0, 21.0] {
        let starts = fragment_starts_with_a_split_after_a_chunk_end(ns(chunk), after_ms);
        assert_eq!(starts, 4, "split {after_ms} ms after a chunk's nominal end");
    }
    // The bait: the video's part duration as the audio chunk, as before,
    // reaches the muxer's fault (if this fails, cmafmux no longer has it).
    let part = spec.part_duration().unwrap();
    let stuck = fragment_starts_with_a_split_after_a_chunk_end(ns(part), 5.0);
    assert!(
        stuck < 4,
        "the old chunk duration made {stuck} fragment starts"
    );
}

/// A first-order preset with `renderer = "parametric"` runs live: the
/// binaural rendition's segments come, and its level (the meters, over
/// the same synthetic scene) is the linear first-order renderer's within
/// 2 dB (the parametric renderer keeps each band's energy). Without the
/// HRTF set it is refused at build, so this is the parametric path, not a
/// silent fallback to the linear one.
#[test]
fn a_parametric_preset_runs_live_at_the_linear_level() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let spec_for = |renderer: &str| {
        PipelineSpec::parse(&format!(
            "name = \"p\"\nsegment_seconds = 1\nlatency = \"low\"\n[audio]\nrenderer = \"{renderer}\"\n\
             source = {{ kind = \"synthetic-scene\", order = 1 }}\n[[audio.rendition]]\nid = \"binaural\"\n\
             name = \"B\"\nmix = \"binaural\"\ndefault = true\n"
        ))
        .unwrap()
    };
    let hrtf = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
    let foa = design(&hrtf, &DesignOptions::new(DecoderMethod::MagLs, 1)).unwrap();
    let (tx, _rx, _) = event_queue(1 << 20);
    let e = SessionPipeline::build(&spec_for("parametric"), &foa, &BuildOptions::default(), tx)
        .err()
        .expect("no HRTF set: refused");
    assert!(e.to_string().contains("HRTF set"), "{e}");
    // A third-order source is refused by the preset itself.
    let third = "name = \"p\"\n[audio]\nrenderer = \"parametric\"\nsource = { kind = \"synthetic-scene\", order = 3 }\n\
        [[audio.rendition]]\nid = \"b\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n";
    let e = PipelineSpec::parse(third).unwrap_err().to_string();
    assert!(e.contains("first-order"), "{e}");
    let mut levels = Vec::new();
    for renderer in ["parametric", "linear"] {
        let opts = BuildOptions {
            hrirs: Some(std::sync::Arc::new(hrtf.clone())),
            ..BuildOptions::default()
        };
        let (tx, rx, _) = event_queue(64 << 20);
        let p = SessionPipeline::build(&spec_for(renderer), &foa, &opts, tx)
            .unwrap()
            .start(tracing::Span::none())
            .unwrap();
        let meters = p.meters();
        let (t0, mut segments, mut rms) = (Instant::now(), 0, Vec::new());
        while t0.elapsed() < Duration::from_secs(20) && segments < 6 {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(MediaEvent::Chunk { boundary: true, .. }) => segments += 1,
                Ok(MediaEvent::Error(e)) => panic!("{renderer}: {e}"),
                _ => {}
            }
            if let Some((_, ch)) = meters.read() {
                let l = ch.iter().find(|c| c.label == "binaural L").unwrap();
                let r = ch.iter().find(|c| c.label == "binaural R").unwrap();
                rms.push(10.0 * (0.5 * (db_pow(l.rms_dbfs) + db_pow(r.rms_dbfs))).log10());
            }
        }
        p.shutdown();
        assert!(segments >= 6, "{renderer}: {segments} segments");
        // Past the first second (the renderer's latency, the scene's start).
        let tail = &rms[rms.len() / 3..];
        let mean = 10.0
            * (tail.iter().map(|d| db_pow(*d as f32)).sum::<f64>() / tail.len() as f64).log10();
        eprintln!(
            "{renderer}: binaural RMS {mean:.2} dBFS over {} readings",
            tail.len()
        );
        assert!(mean > -40.0, "{renderer}: {mean} dBFS");
        levels.push(mean);
    }
    assert!(
        (levels[0] - levels[1]).abs() < 2.0,
        "parametric vs linear: {levels:?}"
    );
}

fn db_pow(db: f32) -> f64 {
    10f64.powf(f64::from(db) / 10.0)
}
