//! Ring and drift compensator allocate nothing per block.

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

#[test]
fn steady_state_capture_path_does_not_allocate() {
    count_this_thread();
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
