//! Quick speed probe: x real time of the SH convolver on one core. Wall
//! time, best of three 300-second runs: pin it (`taskset -c 1`) on an idle
//! machine. (This VM's per-thread CPU accounting ticks in 60 ms steps, too
//! coarse to use here.)
use studiocast_bench::synthetic_filters;
use studiocast_spatial::convolver::ShConvolver;
use studiocast_spatial::simd::Kernel;

fn main() {
    let order: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let taps: usize = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let f = synthetic_filters(order, taps);
    for block in std::env::args()
        .nth(3)
        .map(|b| vec![b.parse::<usize>().unwrap()])
        .unwrap_or(vec![64usize, 128, 256, 512, 1024])
    {
        for kernel in Kernel::available() {
            let mut c = ShConvolver::with_kernel(&f, block, kernel).unwrap();
            let input: Vec<Vec<f32>> = (0..f.channels())
                .map(|ch| {
                    (0..block)
                        .map(|i| ((i * 31 + ch * 7) % 97) as f32 / 97.0 - 0.5)
                        .collect()
                })
                .collect();
            let ins: Vec<&[f32]> = input.iter().map(|v| v.as_slice()).collect();
            let (mut l, mut r) = (vec![0.0; block], vec![0.0; block]);
            // 300 s of audio per run, best of three runs.
            let frames = 48_000 * 300;
            let blocks = frames / block;
            for _ in 0..100 {
                c.process_into_buffer(&ins, &mut l, &mut r).unwrap();
            }
            let mut dt = f64::INFINITY;
            for _ in 0..3 {
                let t0 = std::time::Instant::now();
                for _ in 0..blocks {
                    c.process_into_buffer(&ins, &mut l, &mut r).unwrap();
                }
                dt = dt.min(t0.elapsed().as_secs_f64());
            }
            let audio = (blocks * block) as f64 / 48_000.0;
            println!(
                "order {order} block {block:5} {}: {:.2} us/block, {:.0}x real time",
                kernel.name(),
                dt * 1e6 / blocks as f64,
                audio / dt
            );
        }
    }
}
