//! `studiocast accuracy`: the decoder accuracy report, regenerable by anyone.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use studiocast_spatial::metrics::{evaluate_irs, evaluate_with, ItdLowpass};
use studiocast_spatial::{
    design, DecoderMethod, DesignOptions, HrtfSet, ParametricOptions, ParametricRenderer,
};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct AccuracyArgs {
    /// SOFA file (default: config, then Debian's MIT KEMAR).
    #[arg(long)]
    pub hrtf: Option<PathBuf>,
    /// Sample rate to resample the HRTFs to.
    #[arg(long, default_value_t = 48_000)]
    pub rate: u32,
    /// Orders, comma separated.
    #[arg(long, default_value = "1,3,5", value_delimiter = ',')]
    pub orders: Vec<usize>,
    /// Methods, comma separated: magls, ls, vls, parametric (first order
    /// only: plane waves, which flatter it; the diffuse columns do not
    /// apply to a signal-dependent renderer).
    #[arg(long, default_value = "magls,ls,vls,parametric", value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Instead of plane waves, synthetic scenes (one, two and three sources,
    /// diffuse fields) through parametric FOA, MagLS FOA and MagLS order 3,
    /// judged per time-frequency frame.
    #[arg(long)]
    pub scenes: bool,
}

pub fn run(cfg: &Config, a: AccuracyArgs) -> Result<()> {
    let path = a.hrtf.clone().unwrap_or_else(|| cfg.spatial.hrtf.clone());
    let hrtf = HrtfSet::from_sofa(&path, a.rate)?;
    if a.scenes {
        return scenes(&hrtf);
    }
    println!(
        "HRTF {} ({} directions, {} Hz, {}). Medians (P95) over all grid directions.\n",
        path.display(),
        hrtf.len(),
        a.rate,
        if hrtf.symmetric {
            "mirror-symmetric"
        } else {
            "asymmetric"
        }
    );
    println!("| method | order | ΔILD dB | ΔITD µs | ΔITD µs (BW8) | spectral dB | diffuse magnitude dB | diffuse coherence | design s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for m in &a.methods {
        if m == "parametric" {
            parametric_row(&hrtf)?;
            continue;
        }
        let method: DecoderMethod = m.parse().map_err(anyhow::Error::msg)?;
        for &order in &a.orders {
            let t = Instant::now();
            let f = design(&hrtf, &DesignOptions::new(method, order))?;
            let dt = t.elapsed().as_secs_f64();
            let acc = evaluate_with(&hrtf, &f, ItdLowpass::Ideal);
            let bw = evaluate_with(&hrtf, &f, ItdLowpass::Butterworth8);
            println!(
                "| {method} | {order} | {:.2} ({:.2}) | {:.1} ({:.1}) | {:.1} ({:.1}) | {:.2} ({:.2}) | {:.2} | {:.3} | {:.2} |",
                acc.ild.median,
                acc.ild.p95,
                acc.itd.median,
                acc.itd.p95,
                bw.itd.median,
                bw.itd.p95,
                acc.spectral.median,
                acc.spectral.p95,
                acc.diffuse_magnitude,
                acc.diffuse_coherence,
                dt
            );
        }
    }
    Ok(())
}

/// The parametric first-order renderer's row: its responses to plane waves
/// from every grid direction.
fn parametric_row(hrtf: &HrtfSet) -> Result<()> {
    let t = Instant::now();
    let f = design(hrtf, &DesignOptions::new(DecoderMethod::MagLs, 1))?;
    let mut r = ParametricRenderer::new(hrtf, &f, &ParametricOptions::default())?;
    let dt = t.elapsed().as_secs_f64();
    let (l, rr) = r.plane_wave_irs(&hrtf.dirs, 1024)?;
    let acc = evaluate_irs(hrtf, &l, &rr, ItdLowpass::Ideal);
    let bw = evaluate_irs(hrtf, &l, &rr, ItdLowpass::Butterworth8);
    println!(
        "| parametric | 1 | {:.2} ({:.2}) | {:.1} ({:.1}) | {:.1} ({:.1}) | {:.2} ({:.2}) | – | – | {:.2} |",
        acc.ild.median,
        acc.ild.p95,
        acc.itd.median,
        acc.itd.p95,
        bw.itd.median,
        bw.itd.p95,
        acc.spectral.median,
        acc.spectral.p95,
        dt
    );
    Ok(())
}

/// `--scenes`: the table per scene type and renderer, and the issue's
/// targets for the parametric renderer.
fn scenes(hrtf: &HrtfSet) -> Result<()> {
    use studiocast_spatial::scenes::{evaluate, Renderers, SceneRow};
    let foa = design(hrtf, &DesignOptions::new(DecoderMethod::MagLs, 1))?;
    let hoa = design(hrtf, &DesignOptions::new(DecoderMethod::MagLs, 3))?;
    let t = Instant::now();
    let rows = evaluate(&Renderers {
        hrtf,
        foa: &foa,
        hoa: &hoa,
    })?;
    println!(
        "Scenes at {} Hz, 2 s each; medians (P95) over time-frequency frames (2048-sample Hann, hop 1024) of every case of a scene type ({:.0} s).\n",
        hrtf.sample_rate,
        t.elapsed().as_secs_f64()
    );
    println!("| scene | renderer | ΔILD dB | ΔITD µs | ΔITD µs (BW8) | spectral dB | Δcoherence | artifact dB |");
    println!("|---|---|---|---|---|---|---|---|");
    let f = |s: studiocast_spatial::metrics::Stat, p: usize| {
        format!("{:.*} ({:.*})", p, s.median, p, s.p95)
    };
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scene,
            r.renderer,
            f(r.ild, 2),
            f(r.itd_ideal, 1),
            f(r.itd_bw8, 1),
            f(r.spectral, 2),
            f(r.coherence, 3),
            f(r.artifact, 2)
        );
    }
    println!();
    let by = |scene: &str, k: &str| {
        rows.iter()
            .find(|r: &&SceneRow| r.scene == scene && r.renderer == k)
    };
    let mut scenes: Vec<&str> = rows.iter().map(|r| r.scene).collect();
    scenes.dedup();
    for s in scenes {
        let (Some(p), Some(l), Some(h)) = (
            by(s, "parametric FOA"),
            by(s, "MagLS FOA"),
            by(s, "MagLS order 3"),
        ) else {
            continue;
        };
        let m = |r: &SceneRow| {
            [
                r.ild.median,
                r.itd_ideal.median,
                r.itd_bw8.median,
                r.spectral.median,
                r.coherence.median,
            ]
        };
        let beats = m(p).iter().zip(m(l)).all(|(a, b)| *a < b);
        let half = |a: f64, b: f64, c: f64| a <= b - 0.5 * (b - c);
        let gap = half(p.ild.median, l.ild.median, h.ild.median)
            && half(p.spectral.median, l.spectral.median, h.spectral.median);
        let art = p.artifact.median <= l.artifact.median + 1.0;
        println!(
            "{s}: beats MagLS FOA on every metric: {}; half the gap to order 3 (ILD, spectral): {}; artifact within 1 dB: {}",
            yes(beats),
            yes(gap),
            yes(art)
        );
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
