//! On-disk cache of designed SH filters. Design takes 0.3–3 s (more at
//! high orders); a technician starting a session, or a batch job rendering
//! many files with the same HRTF, should not pay it every time.
//!
//! The key hashes the SOFA file's bytes, the sample rate, every design
//! option and the crate version, so a changed file or option is a miss. A
//! damaged entry is ignored and rewritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::design::{DecoderMethod, DesignOptions, ShFilters, MAX_FILTER_LEN};
use crate::sh::{channels_for_order, MAX_ORDER};

const MAGIC: &[u8; 8] = b"SCSHF001";
/// Bump whenever the design algorithm changes without a change of options,
/// so cached filters from an older design are not reused.
pub const DESIGN_REVISION: u32 = 3;

/// 64-bit FNV-1a: stable across builds, unlike std's hasher.
fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

pub fn cache_key(sofa_bytes: &[u8], rate: u32, opts: &DesignOptions) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut h, sofa_bytes);
    fnv1a(&mut h, &rate.to_le_bytes());
    fnv1a(&mut h, format!("{opts:?}").as_bytes());
    fnv1a(&mut h, env!("CARGO_PKG_VERSION").as_bytes());
    fnv1a(&mut h, &DESIGN_REVISION.to_le_bytes());
    format!("{h:016x}-o{}-{}-{rate}", opts.order, opts.method)
}

/// Default cache folder: `$STUDIOCAST_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/studiocast`, else `$HOME/.cache/studiocast`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STUDIOCAST_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("studiocast"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/studiocast"))
}

pub fn load(dir: &Path, key: &str) -> Option<ShFilters> {
    let bytes = std::fs::read(dir.join(format!("{key}.shf"))).ok()?;
    decode(&bytes)
}

pub fn store(dir: &Path, key: &str, f: &ShFilters) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{key}.shf.tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&encode(f))?;
    file.sync_all()?;
    // Rename is atomic: a reader never sees half an entry.
    std::fs::rename(tmp, dir.join(format!("{key}.shf")))
}

fn encode(f: &ShFilters) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + 8 * f.taps * f.channels());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(f.order as u32).to_le_bytes());
    v.extend_from_slice(&f.sample_rate.to_le_bytes());
    v.extend_from_slice(&(f.taps as u32).to_le_bytes());
    v.push(u8::from(f.symmetric));
    v.push(match f.method {
        DecoderMethod::MagLs => 0,
        DecoderMethod::Ls => 1,
        DecoderMethod::Vls => 2,
    });
    for set in [&f.left, &f.right] {
        for ch in set {
            for x in ch {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    v
}

fn decode(b: &[u8]) -> Option<ShFilters> {
    if b.len() < 22 || &b[..8] != MAGIC {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    let order = u32_at(8);
    let rate = u32_at(12) as u32;
    let taps = u32_at(16);
    if order == 0 || order > MAX_ORDER || taps == 0 || taps > MAX_FILTER_LEN {
        return None;
    }
    let symmetric = b[20] == 1;
    let method = match b[21] {
        0 => DecoderMethod::MagLs,
        1 => DecoderMethod::Ls,
        2 => DecoderMethod::Vls,
        _ => return None,
    };
    let k = channels_for_order(order);
    if b.len() != 22 + 2 * k * taps * 4 {
        return None;
    }
    let mut vals = b[22..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut read =
        || -> Vec<Vec<f32>> { (0..k).map(|_| (&mut vals).take(taps).collect()).collect() };
    let left = read();
    let right = read();
    if left.iter().chain(&right).flatten().any(|x| !x.is_finite()) {
        return None;
    }
    Some(ShFilters {
        order,
        sample_rate: rate,
        taps,
        symmetric,
        left,
        right,
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let f = ShFilters {
            order: 1,
            sample_rate: 48_000,
            taps: 3,
            symmetric: true,
            left: vec![vec![0.1, 0.2, 0.3]; 4],
            right: vec![vec![0.1, -0.2, 0.3]; 4],
            method: DecoderMethod::MagLs,
        };
        let e = encode(&f);
        let d = decode(&e).unwrap();
        assert_eq!(d.right, f.right);
        assert!(decode(&e[..e.len() - 1]).is_none());
        let mut bad = e.clone();
        bad[16] = 0xFF;
        assert!(decode(&bad).is_none());
        let k1 = cache_key(b"abc", 48_000, &DesignOptions::new(DecoderMethod::MagLs, 3));
        let k2 = cache_key(b"abd", 48_000, &DesignOptions::new(DecoderMethod::MagLs, 3));
        assert_ne!(k1, k2);
    }
}
