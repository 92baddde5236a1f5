//! The live audio path allocates nothing per block: the real
//! [`AudioLoop::step`] (drift compensator, role mixer, binaural renderer,
//! stereo downmix, meters, master ring, pooled GStreamer buffers pushed
//! into real appsrcs) driven on simulated time, with a counting allocator
//! that counts on the audio thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use studiocast_spatial::{
    design, BinauralRenderer, DecoderMethod, DesignOptions, Engine, HrtfSet, ParametricOptions,
    ParametricRenderer, ShFilters, DEFAULT_SOFA,
};

use super::*;
use crate::master::RecordingState;
use crate::mixer::BusMixer;
use crate::spec::PipelineSpec;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT_HERE.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNT_HERE.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const RATE: u32 = 48_000;

/// A 16-channel input carrying an ambisonic microphone of `order`, mapped
/// by role, as a studio preset has it.
fn embedded_spec(order: usize, renderer: &str) -> PipelineSpec {
    let text = format!(
        r#"
name = "t"
[video]
source = {{ kind = "srt", mode = "caller", port = 9000 }}
framerate = 25
[[video.rendition]]
id = "360p"
width = 640
height = 360
bitrate_kbps = 1000
[audio]
renderer = "{renderer}"
source = {{ kind = "embedded", channels = 16, ambisonic = {{ first_channel = 1, order = {order} }} }}
[[audio.rendition]]
id = "binaural"
name = "B"
mix = "binaural"
default = true
[[audio.rendition]]
id = "stereo"
name = "S"
mix = "stereo"
"#
    );
    PipelineSpec::parse(&text).unwrap()
}

/// Filters of the right shape (their values do not matter for allocation).
fn filters() -> ShFilters {
    let k = 16;
    ShFilters {
        order: 3,
        sample_rate: RATE,
        taps: 256,
        symmetric: true,
        left: vec![vec![0.01; 256]; k],
        right: vec![vec![0.01; 256]; k],
        method: studiocast_spatial::DecoderMethod::Ls,
    }
}

/// appsrc → fakesink, playing, so pushed buffers are consumed and return
/// to their pool.
fn output(pipeline: &gst::Pipeline, mix: Mix, block: usize) -> Output {
    let src = crate::elements::audio_appsrc(RATE, mix.channels());
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .unwrap();
    pipeline.add_many([src.upcast_ref(), &sink]).unwrap();
    src.link(&sink).unwrap();
    Output::new(mix, src, block).unwrap()
}

#[test]
fn the_live_audio_path_allocates_nothing_per_block() {
    let block = 1024;
    let r = BinauralRenderer::new(&filters(), block).unwrap();
    live_path_allocations(
        embedded_spec(3, "linear"),
        Engine::Linear(Box::new(r)),
        block,
    );
}

/// The same with the parametric first-order renderer (its own STFT and
/// parameter smoothing run inside the audio thread's step), at a block
/// that is not a multiple of its hop.
#[test]
fn the_live_parametric_path_allocates_nothing_per_block() {
    let block = 480;
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), RATE).unwrap();
    let foa = design(&h, &DesignOptions::new(DecoderMethod::MagLs, 1)).unwrap();
    let p = ParametricRenderer::new(&h, &foa, &ParametricOptions::default()).unwrap();
    live_path_allocations(
        embedded_spec(1, "parametric"),
        Engine::Parametric(Box::new(p)),
        block,
    );
}

fn live_path_allocations(spec: PipelineSpec, renderer: Engine, block: usize) {
    crate::init().unwrap();
    let k = renderer.channels();
    let pipeline = gst::Pipeline::new();
    let outputs = vec![
        output(&pipeline, Mix::Binaural, block),
        output(&pipeline, Mix::Stereo, block),
        output(&pipeline, Mix::Ambisonic, block),
    ];
    let srcs: Vec<gst_app::AppSrc> = outputs.iter().map(|o| o.src.clone()).collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (mut producer, consumer, _) = studiocast_capture::ring::ring(16, RATE as usize * 2);
    let dir = std::env::temp_dir().join(format!("studiocast-noalloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = Arc::new(RecordingState::default());
    let feed = AudioFeed {
        master: Some((dir.join("master.wav"), state)),
        source: BusSource::Embedded {
            channels: 16,
            mixer: BusMixer::from_source(&spec.audio.source).unwrap(),
            consumer: Some(consumer),
        },
        renderer,
        outputs,
        rate: RATE,
        k,
        block,
        meters: Arc::new(crate::meters::MeterBank::new(
            (0..18).map(|c| format!("c{c}")).collect(),
        )),
    };
    let status = Arc::new(AudioStatus::default());
    let mut lp = AudioLoop::open(feed, status.clone()).unwrap();
    // The device delivers a tone in 256-frame periods; the loop is asked
    // every 2 ms of simulated time, like the audio thread.
    let period: Vec<f32> = (0..256 * 16)
        .map(|i| ((i / 16) as f32 * 0.05).sin() * 0.25)
        .collect();
    let period_ns = 256 * 1_000_000_000 / RATE as u64;
    let mut produced_until = 0u64;
    let mut run = |lp: &mut AudioLoop, from_ms: u64, to_ms: u64, deliver: bool| {
        let mut pushed = 0;
        for ms in (from_ms..to_ms).step_by(2) {
            let now = ms * 1_000_000;
            while produced_until <= now {
                if deliver {
                    producer.push_interleaved(&period);
                }
                produced_until += period_ns;
            }
            if lp.step(now).unwrap() == Step::Pushed {
                pushed += 1;
                // Simulated time runs the loop about 13 times faster than
                // real time: let the sinks' threads keep up, as they do
                // at one block per 10 ms (a loaded machine starved them
                // and emptied the pool: misses that were the test's pace,
                // not the path's). Neither call allocates.
                let t = std::time::Instant::now();
                while srcs.iter().any(|s| s.current_level_bytes() > 8 * 4096 * 4)
                    && t.elapsed() < std::time::Duration::from_secs(2)
                {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
            }
        }
        pushed
    };
    // Warm up: priming, first buffers, pools filled.
    assert!(run(&mut lp, 0, 2_000, true) > 50);
    COUNT_HERE.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    // Ten seconds of steady input, a dropout long enough to play silence,
    // and the return.
    let steady = run(&mut lp, 2_000, 12_000, true);
    let silent = run(&mut lp, 12_000, 13_000, false);
    let back = run(&mut lp, 13_000, 15_000, true);
    let allocations = ALLOCS.load(Ordering::SeqCst) - before;
    COUNT_HERE.with(|c| c.set(false));
    let blocks = steady + silent + back;
    eprintln!("live audio path: {blocks} blocks, {allocations} allocations");
    assert!(blocks > 600, "{blocks}");
    let snap = status.snapshot();
    assert!(snap.silent_blocks > 10 && snap.silences == 1, "{snap:?}");
    assert_eq!(snap.pool_misses, 0);
    assert_eq!(allocations, 0, "allocations on the audio thread");
    lp.finish();
    drop(lp);
    let _ = pipeline.set_state(gst::State::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The counter is honest: an allocation on this thread is seen (the old
/// path's per-block interleaving `Vec` would have been).
#[test]
fn the_counter_sees_an_allocation_on_this_thread() {
    COUNT_HERE.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(8192));
    drop(std::hint::black_box(v));
    let n = ALLOCS.load(Ordering::SeqCst) - before;
    COUNT_HERE.with(|c| c.set(false));
    assert_eq!(n, 1);
}
