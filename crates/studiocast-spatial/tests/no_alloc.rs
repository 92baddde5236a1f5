//! The per-block paths allocate nothing in steady state.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    // Only the measuring thread counts: the test harness's own thread
    // allocates when it reports another test finishing (CI once counted 7
    // allocations that way).
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

fn count(n: usize) {
    if COUNT_HERE.with(|c| c.get()) {
        ALLOCS.fetch_add(n, Ordering::SeqCst);
    }
}

/// Counts this thread's allocations from now on.
fn count_this_thread() {
    COUNT_HERE.with(|c| c.set(true));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(1);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count(1);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

use studiocast_spatial::encoder::{ObjectEncoder, Position, StereoDownmix};
use studiocast_spatial::rotation::Quat;
use studiocast_spatial::simd::Kernel;
use studiocast_spatial::{BinauralRenderer, DecoderMethod, ShFilters};

fn filters(order: usize, taps: usize) -> ShFilters {
    let k = (order + 1) * (order + 1);
    let left: Vec<Vec<f32>> = (0..k)
        .map(|c| {
            (0..taps)
                .map(|t| ((c * 7 + t) % 13) as f32 * 0.01)
                .collect()
        })
        .collect();
    let right = left
        .iter()
        .enumerate()
        .map(|(c, f)| f.iter().map(|v| v * ShFilters::mirror_sign(c)).collect())
        .collect();
    ShFilters {
        order,
        sample_rate: 48_000,
        taps,
        symmetric: true,
        left,
        right,
        method: DecoderMethod::MagLs,
    }
}

/// The counter is global: one measuring test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn steady_state_rendering_does_not_allocate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    count_this_thread();
    for kernel in Kernel::available() {
        for (order, block) in [(1, 64), (3, 128), (3, 512), (7, 256)] {
            let f = filters(order, 600);
            let k = f.channels();
            let mut r = BinauralRenderer::new(&f, block).unwrap();
            let mut enc = ObjectEncoder::new(order).unwrap();
            let mono = vec![0.25f32; block];
            let mut bus = vec![0.0f32; k * block];
            let (mut l, mut rr) = (vec![0.0; block], vec![0.0; block]);
            let mut run = |i: usize, r: &mut BinauralRenderer, enc: &mut ObjectEncoder| {
                bus.iter_mut().for_each(|v| *v = 0.0);
                enc.set_position(
                    Position {
                        azimuth_deg: i as f64 * 7.0,
                        elevation_deg: 10.0,
                        distance_m: 2.0,
                    },
                    1.0,
                )
                .unwrap();
                enc.encode_add(&mono, &mut bus);
                r.set_rotation(Quat::from_ypr_degrees(i as f64 * 3.0, 5.0, 0.0));
                let mut refs: [&[f32]; 64] = [&[]; 64];
                for (c, x) in refs.iter_mut().enumerate().take(k) {
                    *x = &bus[c * block..(c + 1) * block];
                }
                r.process_into_buffer(&refs[..k], &mut l, &mut rr).unwrap();
                StereoDownmix::default()
                    .process(&refs[..k], &mut l, &mut rr)
                    .unwrap();
            };
            for i in 0..4 {
                run(i, &mut r, &mut enc);
            }
            let before = ALLOCS.load(Ordering::SeqCst);
            for i in 4..200 {
                run(i, &mut r, &mut enc);
            }
            let after = ALLOCS.load(Ordering::SeqCst);
            assert_eq!(
                after - before,
                0,
                "{kernel:?} order {order} block {block}: {} allocations",
                after - before
            );
        }
    }
}

/// The parametric first-order renderer, with the head turning and blocks
/// of every length (its frames do not line up with them).
#[test]
fn parametric_rendering_does_not_allocate() {
    use studiocast_spatial::{HrtfSet, ParametricOptions, ParametricRenderer, DEFAULT_SOFA};
    // Held from the start: the set-up allocates.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    count_this_thread();
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
    let f = studiocast_spatial::design(
        &h,
        &studiocast_spatial::DesignOptions::new(DecoderMethod::MagLs, 1),
    )
    .unwrap();
    let mut r = ParametricRenderer::new(&h, &f, &ParametricOptions::default()).unwrap();
    let input: Vec<Vec<f32>> = (0..4)
        .map(|c| {
            (0..700)
                .map(|i| ((i * 31 + c * 7) % 97) as f32 / 97.0 - 0.5)
                .collect()
        })
        .collect();
    let (mut l, mut rr) = (vec![0.0f32; 700], vec![0.0f32; 700]);
    let mut run = |i: usize, r: &mut ParametricRenderer| {
        let n = [64, 128, 480, 512, 700, 1][i % 6];
        let ins: [&[f32]; 4] = std::array::from_fn(|c| &input[c][..n]);
        r.set_rotation(Quat::from_ypr_degrees(i as f64 * 3.0, 5.0, 0.0));
        r.process(&ins, &mut l[..n], &mut rr[..n]).unwrap();
    };
    for i in 0..12 {
        run(i, &mut r);
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for i in 12..400 {
        run(i, &mut r);
    }
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "{} allocations", after - before);
}
