//! Binaural rendering speed by order and block size. Throughput is reported
//! in input frames per second; divide by 48 000 for "x real time".

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use studiocast_bench::synthetic_filters;
use studiocast_spatial::convolver::ShConvolver;
use studiocast_spatial::simd::Kernel;

const TAPS: usize = 512;

fn bench_orders(c: &mut Criterion) {
    for order in [1usize, 3, 5, 7] {
        let mut g = c.benchmark_group(format!("binaural/order{order}"));
        let filters = synthetic_filters(order, TAPS);
        let k = filters.channels();
        for block in [64usize, 128, 256, 512, 1024] {
            for kernel in Kernel::available() {
                let mut conv = ShConvolver::with_kernel(&filters, block, kernel).unwrap();
                let input: Vec<Vec<f32>> = (0..k)
                    .map(|ch| {
                        (0..block)
                            .map(|i| ((i * 31 + ch * 7) % 97) as f32 / 97.0 - 0.5)
                            .collect()
                    })
                    .collect();
                let ins: Vec<&[f32]> = input.iter().map(|v| v.as_slice()).collect();
                let (mut l, mut r) = (vec![0.0; block], vec![0.0; block]);
                g.throughput(Throughput::Elements(block as u64));
                g.bench_with_input(BenchmarkId::new(kernel.name(), block), &block, |b, _| {
                    b.iter(|| conv.process_into_buffer(&ins, &mut l, &mut r).unwrap())
                });
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_millis(800));
    targets = bench_orders
}
criterion_main!(benches);
