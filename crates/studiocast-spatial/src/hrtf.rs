//! HRTF sets read from SOFA files (through `sofar`), checked and prepared for
//! decoder design: unit directions, both ears' impulse responses at the stream
//! rate, quadrature weights for irregular grids, and left/right mirror
//! symmetry detection.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Result, SpatialError};
use crate::sofa_check::{MAX_DIRECTIONS, MAX_FILE_BYTES, MAX_TAPS, MIN_DIRECTIONS};

/// Debian's libmysofa1 default.
pub const DEFAULT_SOFA: &str = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa";

/// One measured (or synthesised) HRTF grid at one sample rate.
#[derive(Debug, Clone)]
pub struct HrtfSet {
    pub sample_rate: u32,
    /// Unit direction vectors (x front, y left, z up).
    pub dirs: Vec<[f64; 3]>,
    pub left: Vec<Vec<f32>>,
    pub right: Vec<Vec<f32>>,
    /// Quadrature weights, summing to 1.
    pub weights: Vec<f64>,
    /// `mirror[i]` = index of the direction mirrored across the median plane,
    /// when one exists within 1°.
    pub mirror: Vec<Option<usize>>,
    /// True when left(θ) equals right(mirror θ) for every direction.
    pub symmetric: bool,
    pub source: String,
}

/// Read a SOFA file's bytes, refusing files over the size limit. The read
/// itself is bounded (the length from `stat` is not trusted: /dev/zero or a
/// pipe reports 0 and never ends), so this is what callers that hash or
/// cache the bytes should use too.
pub fn read_sofa_file(path: &Path) -> Result<Vec<u8>> {
    let err = |reason: String| SpatialError::Sofa {
        path: PathBuf::from(path),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let hint = file.metadata().map_or(0, |m| m.len()).min(MAX_FILE_BYTES);
    let mut bytes = Vec::with_capacity(hint as usize);
    let mut limited = file.take(MAX_FILE_BYTES + 1);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let got = match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e.to_string())),
        };
        // Checked before growing, so the buffer never exceeds the limit.
        if bytes.len() + got > MAX_FILE_BYTES as usize {
            return Err(err(format!(
                "file is larger than the limit of {MAX_FILE_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk[..got]);
    }
    Ok(bytes)
}

impl HrtfSet {
    /// Read a SOFA file and resample it to `sample_rate`.
    pub fn from_sofa(path: &Path, sample_rate: u32) -> Result<Self> {
        check_rate(sample_rate)?;
        let bytes = read_sofa_file(path)?;
        Self::from_sofa_bytes(&bytes, sample_rate, &path.display().to_string()).map_err(|e| match e
        {
            SpatialError::Sofa { reason, .. } => SpatialError::Sofa {
                path: PathBuf::from(path),
                reason,
            },
            other => other,
        })
    }

    /// Parse SOFA bytes and resample them to `sample_rate`.
    ///
    /// The declared sample rate, dimensions and delays are read and checked
    /// first (`sofa_check`), so sofar never resamples from a rate or to a
    /// size outside our bounds. What this cannot bound is sofar's HDF5 layer
    /// itself, which runs before any value can be seen: it sizes each
    /// chunked dataset from its declared dataspace (up to 256 MiB each,
    /// whatever the file holds) and keeps every message of an object header,
    /// following continuation blocks up to 25 deep, so a small crafted file
    /// can still make it allocate without a useful bound. Parse files from
    /// untrusted sources in a child process with a memory limit.
    ///
    /// The parser is third-party code fed with untrusted data, so a panic
    /// inside it is caught and reported as an error.
    pub fn from_sofa_bytes(bytes: &[u8], sample_rate: u32, name: &str) -> Result<Self> {
        check_rate(sample_rate)?;
        let err = |reason: String| SpatialError::Sofa {
            path: PathBuf::from(name),
            reason,
        };
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(err(format!(
                "file is larger than the limit of {MAX_FILE_BYTES} bytes"
            )));
        }
        let raw = std::panic::catch_unwind(|| parse_with_sofar(bytes, sample_rate))
            .map_err(|_| err("the SOFA parser failed on this file".into()))?
            .map_err(err)?;
        let Raw {
            m,
            r,
            n,
            pos,
            ir,
            delay,
        } = raw;
        let delay_at = |i: usize, ear: usize| -> f32 {
            // Delays are M×R or 1×R; anything else is treated as zero.
            if delay.len() >= m * 2 {
                delay[i * 2 + ear]
            } else if delay.len() == 2 {
                delay[ear]
            } else {
                0.0
            }
        };
        let mut dirs = Vec::with_capacity(m);
        let mut left = Vec::with_capacity(m);
        let mut right = Vec::with_capacity(m);
        for i in 0..m {
            let p = [
                pos[i * 3] as f64,
                pos[i * 3 + 1] as f64,
                pos[i * 3 + 2] as f64,
            ];
            let norm = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            let base = i * r * n;
            let l = &ir[base..base + n];
            let rr = &ir[base + n..base + 2 * n];
            if !norm.is_finite() || norm < 1e-9 || l.iter().chain(rr).any(|v| !v.is_finite()) {
                // A broken measurement is skipped rather than poisoning the fit.
                continue;
            }
            dirs.push([p[0] / norm, p[1] / norm, p[2] / norm]);
            left.push(with_delay(l, delay_at(i, 0)));
            right.push(with_delay(rr, delay_at(i, 1)));
        }
        Self::from_parts(sample_rate, dirs, left, right, name.to_string())
    }

    /// Build a set from raw parts (also used for synthetic test sets).
    pub fn from_parts(
        sample_rate: u32,
        dirs: Vec<[f64; 3]>,
        mut left: Vec<Vec<f32>>,
        mut right: Vec<Vec<f32>>,
        source: String,
    ) -> Result<Self> {
        check_rate(sample_rate)?;
        if dirs.len() < MIN_DIRECTIONS {
            return Err(SpatialError::BadHrtf(format!(
                "only {} usable directions",
                dirs.len()
            )));
        }
        if left.len() != dirs.len() || right.len() != dirs.len() {
            return Err(SpatialError::BadHrtf(
                "ear and direction counts differ".into(),
            ));
        }
        let taps = left
            .iter()
            .chain(right.iter())
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        if taps == 0 || taps > MAX_TAPS {
            return Err(SpatialError::BadHrtf(format!("{taps} taps per filter")));
        }
        for v in left.iter_mut().chain(right.iter_mut()) {
            v.resize(taps, 0.0);
        }
        let energy: f64 = left
            .iter()
            .chain(right.iter())
            .flat_map(|v| v.iter())
            .map(|&s| (s as f64) * (s as f64))
            .sum();
        if energy <= 1e-20 {
            return Err(SpatialError::BadHrtf(
                "all impulse responses are silent".into(),
            ));
        }
        let weights = quadrature_weights(&dirs);
        let mirror = mirror_map(&dirs);
        let symmetric = is_symmetric(&left, &right, &mirror);
        Ok(HrtfSet {
            sample_rate,
            dirs,
            left,
            right,
            weights,
            mirror,
            symmetric,
            source,
        })
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    pub fn taps(&self) -> usize {
        self.left.first().map_or(0, Vec::len)
    }

    /// Index of the grid direction nearest to `dir`.
    pub fn nearest(&self, dir: [f64; 3]) -> usize {
        let mut best = 0;
        let mut best_dot = f64::NEG_INFINITY;
        for (i, d) in self.dirs.iter().enumerate() {
            let dot = d[0] * dir[0] + d[1] * dir[1] + d[2] * dir[2];
            if dot > best_dot {
                best_dot = dot;
                best = i;
            }
        }
        best
    }
}

/// What sofar produced: M × R impulse responses of N taps, positions (M × 3)
/// and delays (1 × R or M × R), all at the requested rate.
struct Raw {
    m: usize,
    r: usize,
    n: usize,
    pos: Vec<f32>,
    ir: Vec<f32>,
    delay: Vec<f32>,
}

/// Check what the file declares, then let sofar open (and resample) it, and
/// check the shapes it produced. Errors are sentences for the technician.
fn parse_with_sofar(bytes: &[u8], sample_rate: u32) -> std::result::Result<Raw, String> {
    crate::sofa_check::inspect(bytes, sample_rate)?;
    let s = sofar::reader::OpenOptions::new()
        .sample_rate(sample_rate as f32)
        .normalized(true)
        .open_data(bytes)
        .map_err(|e| e.to_string())?;
    let h = s.hrtf();
    let d = h.dimensions();
    let (m, r, n) = (d.m as usize, d.r as usize, d.n as usize);
    // Checked by `inspect`, and again on what sofar produced.
    if h.sample_rate() != sample_rate as f32 {
        return Err(format!(
            "filters came out at {} Hz instead of {sample_rate} Hz",
            h.sample_rate()
        ));
    }
    if r != 2 {
        return Err(format!("expected 2 receivers (ears), found {r}"));
    }
    if !(MIN_DIRECTIONS..=MAX_DIRECTIONS).contains(&m) {
        return Err(format!(
            "{m} measurements (allowed {MIN_DIRECTIONS}..={MAX_DIRECTIONS})"
        ));
    }
    if n == 0 || n > MAX_TAPS {
        return Err(format!("{n} taps per filter (allowed 1..={MAX_TAPS})"));
    }
    let (pos, ir) = (&h.source_position.values, &h.data_ir.values);
    if pos.len() < m * 3 || ir.len() < m * r * n {
        return Err("array sizes do not match the dimensions".into());
    }
    Ok(Raw {
        m,
        r,
        n,
        pos: pos.clone(),
        ir: ir.clone(),
        delay: h.data_delay.values.clone(),
    })
}

fn check_rate(rate: u32) -> Result<()> {
    if !(8000..=192_000).contains(&rate) {
        return Err(SpatialError::BadSampleRate(rate));
    }
    Ok(())
}

fn with_delay(ir: &[f32], delay: f32) -> Vec<f32> {
    let d = if delay.is_finite() && delay > 0.0 {
        (delay.round() as usize).min(MAX_TAPS / 2)
    } else {
        0
    };
    let mut v = vec![0.0; d];
    v.extend_from_slice(ir);
    v
}

/// Area weights for an arbitrary grid: the inverse of a smooth density
/// estimate (von Mises–Fisher kernel whose width follows the mean spacing).
/// On a uniform grid this gives equal weights; on a grid that is dense at the
/// poles (as most measured sets are) it stops the poles dominating the fit.
pub fn quadrature_weights(dirs: &[[f64; 3]]) -> Vec<f64> {
    let q = dirs.len().max(1);
    let spacing = (4.0 * std::f64::consts::PI / q as f64).sqrt();
    let sigma = 1.5 * spacing;
    let kappa = 1.0 / (sigma * sigma);
    let mut w: Vec<f64> = dirs
        .iter()
        .map(|a| {
            let density: f64 = dirs
                .iter()
                .map(|b| (kappa * (a[0] * b[0] + a[1] * b[1] + a[2] * b[2] - 1.0)).exp())
                .sum();
            1.0 / density.max(1e-12)
        })
        .collect();
    let s: f64 = w.iter().sum();
    for v in &mut w {
        *v /= s;
    }
    w
}

fn mirror_map(dirs: &[[f64; 3]]) -> Vec<Option<usize>> {
    let tol = 1.0f64.to_radians().cos();
    dirs.iter()
        .map(|d| {
            let m = [d[0], -d[1], d[2]];
            let mut best = None;
            let mut best_dot = tol;
            for (j, e) in dirs.iter().enumerate() {
                let dot = m[0] * e[0] + m[1] * e[1] + m[2] * e[2];
                if dot >= best_dot {
                    best_dot = dot;
                    best = Some(j);
                }
            }
            best
        })
        .collect()
}

fn is_symmetric(left: &[Vec<f32>], right: &[Vec<f32>], mirror: &[Option<usize>]) -> bool {
    // Relative error -40 dB per direction: a measured head never reaches that,
    // a mirrored set (such as Debian's MIT KEMAR) does exactly.
    for (i, m) in mirror.iter().enumerate() {
        let Some(j) = *m else { return false };
        let (mut e, mut d) = (0.0f64, 0.0f64);
        for (a, b) in left[i].iter().zip(&right[j]) {
            e += (*a as f64) * (*a as f64);
            d += ((*a - *b) as f64).powi(2);
        }
        if d > 1e-4 * e.max(1e-30) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kemar_loads_and_is_symmetric() {
        let p = Path::new(DEFAULT_SOFA);
        // A missing file must fail the test, not skip it: a green run would
        // otherwise say nothing about SOFA loading.
        assert!(
            p.exists(),
            "{} is required: install Debian's libmysofa1 (apt-get install libmysofa1)",
            p.display()
        );
        let h = HrtfSet::from_sofa(p, 48_000).unwrap();
        assert_eq!(h.len(), 710);
        assert!(h.symmetric);
        assert!(h.taps() > 500);
        let wsum: f64 = h.weights.iter().sum();
        assert!((wsum - 1.0).abs() < 1e-9);
        // Source at the left: the left ear leads by roughly 0.6–0.9 ms.
        let i = h.nearest([0.0, 1.0, 0.0]);
        let peak = |v: &[f32]| {
            v.iter()
                .enumerate()
                .fold(
                    (0, 0.0f32),
                    |b, (k, x)| if x.abs() > b.1 { (k, x.abs()) } else { b },
                )
                .0
        };
        let lead = peak(&h.right[i]) as isize - peak(&h.left[i]) as isize;
        assert!((25..=50).contains(&lead), "lead {lead}");
    }

    #[test]
    fn missing_file_is_clear_error() {
        let e = HrtfSet::from_sofa(Path::new("/nonexistent/x.sofa"), 48_000).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.sofa"), "{e}");
    }

    #[test]
    fn endless_file_is_refused_quickly() {
        let t0 = std::time::Instant::now();
        let e = HrtfSet::from_sofa(Path::new("/dev/zero"), 48_000).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/dev/zero") && msg.contains("larger than"),
            "{msg}"
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t0.elapsed()
        );
        let e = read_sofa_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn garbage_is_error_not_panic() {
        let mut junk = b"\x89HDF\r\n\x1a\n".to_vec();
        junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        assert!(HrtfSet::from_sofa_bytes(&junk, 48_000, "junk").is_err());
        assert!(HrtfSet::from_sofa_bytes(&[], 48_000, "empty").is_err());
    }
}
