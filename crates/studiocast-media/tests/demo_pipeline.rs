//! The demo preset runs on real GStreamer and produces CMAF for every
//! rendition, then drains on EOS.

use std::time::{Duration, Instant};

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
    let mut chunks: Vec<(String, f64, bool, i64)> = Vec::new();
    let t0 = Instant::now();
    let mut eos = false;
    let mut asked = false;
    while t0.elapsed() < Duration::from_secs(30) {
        if !asked && t0.elapsed() > Duration::from_secs(7) {
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
                ..
            }) => {
                assert!(data.windows(4).any(|w| w == b"moof"));
                chunks.push((rendition, duration, independent, pdt_ms));
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
    assert_eq!(inits, vec!["binaural", "stereo", "video"]);
    for r in ["video", "binaural", "stereo"] {
        let c: Vec<_> = chunks.iter().filter(|c| c.0 == r).collect();
        assert!(c.len() >= 3, "{r}: {} fragments", c.len());
        for x in &c[..c.len() - 1] {
            assert!((x.1 - 2.0).abs() < 0.1, "{r}: fragment of {} s", x.1);
            assert!(x.2, "{r}: fragment does not start with a sync sample");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (now - c[0].3).abs() < 60_000,
            "{r}: PDT {} is not near now {now}",
            c[0].3
        );
    }
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
