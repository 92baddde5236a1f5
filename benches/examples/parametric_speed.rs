//! The parametric first-order renderer next to linear first-order MagLS
//! (the SH convolver), in one run: x real time on one core at 48 kHz, 60 s
//! of first-order noise in 512-frame blocks, best of three (wall time: pin
//! it with `taskset -c 1` on an idle machine).
use studiocast_spatial::design::{design, DecoderMethod, DesignOptions};
use studiocast_spatial::{
    BinauralRenderer, HrtfSet, ParametricOptions, ParametricRenderer, DEFAULT_SOFA,
};

fn main() {
    let rate = 48_000;
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), rate).expect("SOFA");
    let f = design(&h, &DesignOptions::new(DecoderMethod::MagLs, 1)).expect("design");
    let block = 512;
    let seconds = 60;
    let mut s = 1u64;
    let input: Vec<Vec<f32>> = (0..4)
        .map(|_| {
            (0..block)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        })
        .collect();
    let ins: Vec<&[f32]> = input.iter().map(|v| v.as_slice()).collect();
    let (mut l, mut r) = (vec![0.0; block], vec![0.0; block]);
    let blocks = seconds * rate as usize / block;
    let time = |f: &mut dyn FnMut()| {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            for _ in 0..blocks {
                f();
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        best
    };
    let mut p = ParametricRenderer::new(&h, &f, &ParametricOptions::default()).expect("parametric");
    let tp = time(&mut || p.process(&ins, &mut l, &mut r).unwrap());
    let mut lin = BinauralRenderer::new(&f, block).expect("linear");
    let tl = time(&mut || lin.process_into_buffer(&ins, &mut l, &mut r).unwrap());
    let audio = (blocks * block) as f64 / f64::from(rate);
    for (name, t) in [("parametric FOA", tp), ("linear MagLS FOA", tl)] {
        println!(
            "{name:18} {:7.2} us/block of {block}, {:6.0}x real time",
            t * 1e6 / blocks as f64,
            audio / t
        );
    }
    println!(
        "parametric latency: {} samples ({:.1} ms)",
        p.latency(),
        p.latency() as f64 * 1e3 / f64::from(rate)
    );
}
