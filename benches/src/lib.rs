//! Benchmarks for studiocast. `cargo bench -p studiocast-bench` runs the
//! criterion suites; `benches/compare.sh` compares the CLI with ffmpeg and
//! libspatialaudio side by side.

pub mod hls_client;

use studiocast_spatial::design::{DecoderMethod, ShFilters};

/// Deterministic synthetic SH filters with realistic length, so the speed
/// benches need no SOFA file (speed does not depend on the coefficients).
pub fn synthetic_filters(order: usize, taps: usize) -> ShFilters {
    let k = (order + 1) * (order + 1);
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let left: Vec<Vec<f32>> = (0..k)
        .map(|_| {
            (0..taps)
                .map(|t| next() * (-(t as f32) / 80.0).exp())
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
