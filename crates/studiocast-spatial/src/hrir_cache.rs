//! The measured responses of an HRTF set, cached beside its filters: the
//! parametric renderer interpolates the set itself, and the daemon never
//! parses a SOFA file (a child process does, see the binary's `filters`),
//! so the child leaves the set here in a plain format the daemon reads
//! with every size checked. Written the way [`crate::cache`] writes
//! filters (fresh names in the private staging folder, renamed in place).

use std::path::Path;

use crate::cache::{read_entry, write_entry, CacheError};
use crate::hrtf::HrtfSet;

const MAGIC: &[u8; 8] = b"SCHRI001";
/// Magic, rate, directions, taps.
const HEADER_BYTES: usize = 20;
/// The parametric renderer takes responses of at most this many taps.
const MAX_TAPS: usize = 1024;
/// Dense measured sets have a few thousand directions.
const MAX_DIRS: usize = 20_000;
const MAX_ENTRY_BYTES: u64 = (HEADER_BYTES + MAX_DIRS * (24 + 2 * MAX_TAPS * 4)) as u64;

const EXT: &str = "hri";

#[cfg(test)]
fn path_of(dir: &Path, key: &str) -> std::path::PathBuf {
    dir.join(format!("{key}.{EXT}"))
}

/// Store `h` under `key` (the filters' key is a good one: it hashes the
/// SOFA bytes and the rate).
pub fn store(dir: &Path, key: &str, h: &HrtfSet) -> Result<(), CacheError> {
    write_entry(dir, key, EXT, &encode(h))
}

/// The set stored under `key` at `rate`, if present and intact.
pub fn load(dir: &Path, key: &str, rate: u32) -> Option<HrtfSet> {
    let bytes = read_entry(dir, key, EXT, MAX_ENTRY_BYTES)?;
    decode(&bytes, key).filter(|h| h.sample_rate == rate)
}

fn encode(h: &HrtfSet) -> Vec<u8> {
    let taps = h.taps();
    let mut v = Vec::with_capacity(HEADER_BYTES + h.len() * (24 + 8 * taps));
    v.extend_from_slice(MAGIC);
    for n in [h.sample_rate, h.len() as u32, taps as u32] {
        v.extend_from_slice(&n.to_le_bytes());
    }
    for d in &h.dirs {
        for x in d {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    for ir in h.left.iter().chain(&h.right) {
        for i in 0..taps {
            v.extend_from_slice(&ir.get(i).copied().unwrap_or(0.0).to_le_bytes());
        }
    }
    v
}

fn decode(b: &[u8], key: &str) -> Option<HrtfSet> {
    if b.len() < HEADER_BYTES || &b[..8] != MAGIC {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    let (rate, n, taps) = (u32_at(8) as u32, u32_at(12), u32_at(16));
    if n == 0 || n > MAX_DIRS || taps == 0 || taps > MAX_TAPS {
        return None;
    }
    if b.len() != HEADER_BYTES + n * 24 + 2 * n * taps * 4 {
        return None;
    }
    let body = &b[HEADER_BYTES..];
    let dirs: Vec<[f64; 3]> = body[..n * 24]
        .chunks_exact(24)
        .map(|c| {
            std::array::from_fn(|k| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&c[8 * k..8 * k + 8]);
                f64::from_le_bytes(a)
            })
        })
        .collect();
    let unit = |d: &[f64; 3]| {
        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        d.iter().all(|x| x.is_finite()) && (r - 1.0).abs() < 1e-6
    };
    if !dirs.iter().all(unit) {
        return None;
    }
    let vals: Vec<f32> = body[n * 24..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if vals.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut irs = vals.chunks_exact(taps).map(<[f32]>::to_vec);
    let left: Vec<Vec<f32>> = (&mut irs).take(n).collect();
    let right: Vec<Vec<f32>> = irs.collect();
    HrtfSet::from_parts(rate, dirs, left, right, format!("cache {key}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_SOFA;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("studiocast-hri-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_damage() {
        let h = HrtfSet::from_sofa(Path::new(DEFAULT_SOFA), 48_000).unwrap();
        let dir = scratch("rt");
        store(&dir, "k1", &h).unwrap();
        let back = load(&dir, "k1", 48_000).unwrap();
        assert_eq!(back.dirs, h.dirs);
        assert_eq!(back.left, h.left);
        assert_eq!(back.right, h.right);
        assert_eq!(back.symmetric, h.symmetric);
        // Another rate, a missing key, a bad key: misses.
        assert!(load(&dir, "k1", 44_100).is_none());
        assert!(load(&dir, "k2", 48_000).is_none());
        assert!(load(&dir, "../k1", 48_000).is_none());
        // Truncated, a direction not a unit vector, a NaN, a huge count:
        // each refused, none panics.
        let p = path_of(&dir, "k1");
        let good = std::fs::read(&p).unwrap();
        let mut cases = vec![good[..good.len() - 4].to_vec()];
        let mut bad_dir = good.clone();
        bad_dir[HEADER_BYTES..HEADER_BYTES + 8].copy_from_slice(&2.0f64.to_le_bytes());
        cases.push(bad_dir);
        let mut nan = good.clone();
        let at = good.len() - 4;
        nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
        cases.push(nan);
        let mut huge = good.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(huge);
        for c in cases {
            std::fs::write(&p, c).unwrap();
            assert!(load(&dir, "k1", 48_000).is_none());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
