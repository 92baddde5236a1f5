//! The scene-based evaluation (issue 12) on MIT KEMAR at 48 kHz: every row
//! is measured, and for one source the parametric renderer beats linear
//! first order on every metric and closes at least half the gap to third
//! order on ILD and spectral error; with two sources it does too. In the
//! diffuse scenes it beats linear first order on ILD, ITD (both
//! estimators), spectral error and coherence, and keeps its artifact
//! measure within 1 dB. (Before the set's common phase was in the
//! correction's HRTF, the three-source scene lost on spectral error by
//! 0.06 dB and DRR −6 dB tied; the margins now are 0.01–0.08 dB on ILD and
//! spectral error, 0.0015–0.017 on coherence.)

use studiocast_spatial::scenes::{evaluate, Renderers, RENDERERS};
use studiocast_spatial::{design, DecoderMethod, DesignOptions, HrtfSet, DEFAULT_SOFA};

#[test]
fn one_and_two_sources_parametric_beats_linear_first_order() {
    let h = HrtfSet::from_sofa(std::path::Path::new(DEFAULT_SOFA), 48_000).unwrap();
    let foa = design(&h, &DesignOptions::new(DecoderMethod::MagLs, 1)).unwrap();
    let hoa = design(&h, &DesignOptions::new(DecoderMethod::MagLs, 3)).unwrap();
    let rows = evaluate(&Renderers {
        hrtf: &h,
        foa: &foa,
        hoa: &hoa,
    })
    .unwrap();
    assert_eq!(rows.len(), 6 * RENDERERS.len());
    for r in &rows {
        eprintln!(
            "{:40} {:16} ild {:.3} itd {:.1}/{:.1} spec {:.3} coh {:.4} art {:.2}",
            r.scene,
            r.renderer,
            r.ild.median,
            r.itd_ideal.median,
            r.itd_bw8.median,
            r.spectral.median,
            r.coherence.median,
            r.artifact.median
        );
    }
    for r in &rows {
        for s in [
            r.ild,
            r.itd_ideal,
            r.itd_bw8,
            r.spectral,
            r.coherence,
            r.artifact,
        ] {
            assert!(s.median.is_finite() && s.median >= 0.0, "{r:?}");
        }
        assert!(r.spectral.median > 0.0, "{r:?}");
    }
    for scene in [
        "1: one source",
        "2: two sources 30° apart",
        "2: two sources 90° apart",
    ] {
        check_scene(&rows, scene);
    }
    for scene in [
        "3: one source, diffuse, DRR 0 dB",
        "3: one source, diffuse, DRR -6 dB",
        "4: three sources, diffuse, DRR 0 dB",
    ] {
        check_diffuse_scene(&rows, scene);
    }
}

/// In a diffuse field: parametric beats linear first order on ILD, on ITD
/// under both estimators, on spectral error and on coherence; its artifact
/// measure is within 1 dB of linear's.
fn check_diffuse_scene(rows: &[studiocast_spatial::scenes::SceneRow], scene: &str) {
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.scene == scene && r.renderer == k)
            .unwrap()
    };
    let (p, l) = (get("parametric FOA"), get("MagLS FOA"));
    let m = |r: &studiocast_spatial::scenes::SceneRow| {
        [
            r.ild.median,
            r.itd_ideal.median,
            r.itd_bw8.median,
            r.spectral.median,
            r.coherence.median,
        ]
    };
    for (a, b) in m(p).iter().zip(m(l)) {
        assert!(
            *a < b,
            "{scene}: parametric {:?} vs linear {:?}",
            m(p),
            m(l)
        );
    }
    assert!(p.artifact.median <= l.artifact.median + 1.0, "{scene}");
}

/// Parametric beats linear first order on every metric of `scene` and
/// closes half the gap to third order on ILD and spectral error; its
/// artifact measure is within 1 dB of linear's.
fn check_scene(rows: &[studiocast_spatial::scenes::SceneRow], scene: &str) {
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.scene == scene && r.renderer == k)
            .unwrap()
    };
    let (p, l, o3) = (
        get("parametric FOA"),
        get("MagLS FOA"),
        get("MagLS order 3"),
    );
    eprintln!("{p:?}\n{l:?}\n{o3:?}");
    let m = |r: &studiocast_spatial::scenes::SceneRow| {
        [
            r.ild.median,
            r.itd_ideal.median,
            r.itd_bw8.median,
            r.spectral.median,
            r.coherence.median,
        ]
    };
    for (a, b) in m(p).iter().zip(m(l)) {
        assert!(
            *a < b,
            "{scene}: parametric {:?} vs linear {:?}",
            m(p),
            m(l)
        );
    }
    let half = |a: f64, b: f64, c: f64| a <= b - 0.5 * (b - c);
    assert!(half(p.ild.median, l.ild.median, o3.ild.median));
    assert!(half(
        p.spectral.median,
        l.spectral.median,
        o3.spectral.median
    ));
    assert!(p.artifact.median <= l.artifact.median + 1.0);
}
