//! Ring and drift compensator allocate nothing per block.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn steady_state_capture_path_does_not_allocate() {
    let (mut p, mut c, _stats) = studiocast_capture::ring::ring(16, 48_000);
    let mut comp =
        studiocast_capture::compensator::DriftCompensator::new(16, 48_000, 1024, 4096).unwrap();
    let period = vec![0.1f32; 16 * 256];
    let mut out = vec![0.0f32; 16 * 1024];
    let mut step = |p: &mut studiocast_capture::ring::RingProducer| {
        for _ in 0..4 {
            p.push_interleaved(&period);
        }
        comp.process_into_buffer(&mut c, &mut out);
    };
    for _ in 0..20 {
        step(&mut p);
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..500 {
        step(&mut p);
    }
    assert_eq!(ALLOCS.load(Ordering::SeqCst) - before, 0);
}
