use studiocast_spatial::design::{design, DecoderMethod, DesignOptions};
use studiocast_spatial::hrtf::{HrtfSet, DEFAULT_SOFA};
use studiocast_spatial::metrics::evaluate;

fn env<T: std::str::FromStr>(k: &str) -> Option<T> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
    let args: Vec<String> = std::env::args().collect();
    let orders: Vec<usize> = args.get(1).map(|s| s.split(',').map(|x| x.parse().unwrap()).collect()).unwrap_or(vec![1, 3, 5]);
    let methods: Vec<DecoderMethod> = args.get(2).map(|s| s.split(',').map(|x| x.parse().unwrap()).collect()).unwrap_or(vec![DecoderMethod::MagLs, DecoderMethod::Ls, DecoderMethod::Vls]);
    for &method in &methods {
        for &order in &orders {
            let t = std::time::Instant::now();
            let mut o = DesignOptions::new(method, order);
            o.filter_len = env("LEN");
            o.cutoff_hz = env("FC");
            if let Some(c) = env::<u8>("COV") { o.covariance_constraint = c == 1; }
            if let Some(c) = env::<u8>("MAXRE") { o.max_re = c == 1; }
            if let Some(c) = env("REG") { o.regularisation = c; }
            if let Some(c) = env("IPD") { o.ipd_limit_hz = c; }
            let f = design(&h, &o).unwrap();
            let dt = t.elapsed();
            let a = evaluate(&h, &f);
            println!("{method:5} N={order} ILD {:.2}/{:.2} ITD {:.1}/{:.1} SD {:.2}/{:.2} DF {:.2} IC {:.3}  ({:.2}s)",
                a.ild.median, a.ild.p95, a.itd.median, a.itd.p95, a.spectral.median, a.spectral.p95, a.diffuse_magnitude, a.diffuse_coherence, dt.as_secs_f64());
        }
    }
}
