//! On-disk cache of designed SH filters. Design takes 0.3–3 s (more at
//! high orders); a technician starting a session, or a batch job rendering
//! many files with the same HRTF, should not pay it every time.
//!
//! The key hashes the SOFA file's bytes, the sample rate, every design
//! option and the crate version, so a changed file or option is a miss. A
//! damaged entry, or one designed for another order, rate or method, is
//! ignored and rewritten.
//!
//! The folder may be shared (a `STUDIOCAST_CACHE_DIR` other accounts can
//! write to), so writing never follows a link someone planted: entries are
//! created exclusively under fresh names in a private staging folder (a real
//! folder of ours, mode 0700) and renamed into place. Reads are bounded.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::design::{DecoderMethod, DesignOptions, ShFilters, MAX_FILTER_LEN};
use crate::sh::{channels_for_order, MAX_ORDER};

const MAGIC: &[u8; 8] = b"SCSHF001";
const HEADER_BYTES: usize = 22;
/// The largest entry `decode` can accept (order 7, the longest filters);
/// reads stop there, so a planted link to /dev/zero cannot run forever.
const MAX_ENTRY_BYTES: u64 =
    (HEADER_BYTES + 2 * channels_for_order(MAX_ORDER) * MAX_FILTER_LEN * 4) as u64;
/// Private folder inside the cache folder where entries are written before
/// they are renamed into place.
pub const STAGING_DIR: &str = ".staging";
/// Bump whenever the design algorithm changes without a change of options,
/// so cached filters from an older design are not reused.
pub const DESIGN_REVISION: u32 = 3;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    #[error("cache key '{0}' is not a plain file name")]
    BadKey(String),
    #[error("filter cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to write the filter cache through {path}: {reason}")]
    UnsafeDir { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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

/// Keys become file names: anything but a plain name could escape the folder.
fn check_key(key: &str) -> Result<(), CacheError> {
    let plain = !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        Ok(())
    } else {
        Err(CacheError::BadKey(key.to_string()))
    }
}

/// The cached filters for `key`, if present, intact and designed for this
/// request. The key is a hash, so an entry designed for another order, rate,
/// method or filter length (a collision, or a file renamed by hand) is
/// treated as a miss rather than trusted.
pub fn load(dir: &Path, key: &str, rate: u32, opts: &DesignOptions) -> Option<ShFilters> {
    let bytes = read_entry(dir, key, "shf", MAX_ENTRY_BYTES)?;
    decode(&bytes).filter(|f| designed_for(f, rate, opts))
}

/// The bytes of `{key}.{ext}` in `dir`, if the key is a plain name and the
/// file holds at most `max` bytes (the read stops there: a planted link to
/// /dev/zero cannot run forever).
pub(crate) fn read_entry(dir: &Path, key: &str, ext: &str, max: u64) -> Option<Vec<u8>> {
    check_key(key).ok()?;
    let file = std::fs::File::open(dir.join(format!("{key}.{ext}"))).ok()?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= max).then_some(bytes)
}

fn designed_for(f: &ShFilters, rate: u32, opts: &DesignOptions) -> bool {
    f.order == opts.order
        && f.sample_rate == rate
        && f.method == opts.method
        && opts.filter_len.is_none_or(|n| n == f.taps)
}

/// Write an entry atomically. The bytes go to a fresh file (never an
/// existing one, so never through a planted symlink) in the private staging
/// folder, which is then renamed over `{key}.shf`; a rename replaces a
/// symlink at the destination instead of following it.
pub fn store(dir: &Path, key: &str, f: &ShFilters) -> Result<(), CacheError> {
    write_entry(dir, key, "shf", &encode(f))
}

/// `bytes` as `{key}.{ext}` in `dir`, written as [`store`] says.
pub(crate) fn write_entry(
    dir: &Path,
    key: &str,
    ext: &str,
    bytes: &[u8],
) -> Result<(), CacheError> {
    check_key(key)?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let staging = staging_dir(dir)?;
    let tmp = staging.path.join(unique_name(key));
    let dest = dir.join(format!("{key}.{ext}"));
    let result = write_new(&tmp, bytes, &staging)
        .and_then(|()| std::fs::rename(&tmp, &dest).map_err(io_err(&dest)));
    if result.is_err() {
        // Best effort: a leftover temp file in our own folder is harmless.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The verified staging folder and the owner it must have.
struct Staging {
    path: PathBuf,
    #[cfg(unix)]
    uid: u32,
}

/// Create (mode 0700) or reuse `dir/.staging`, refusing anything but a real
/// folder that only its owner can enter: in a shared cache folder another
/// user could otherwise replace it with a symlink or write into it.
fn staging_dir(dir: &Path) -> Result<Staging, CacheError> {
    let path = dir.join(STAGING_DIR);
    let mut builder = DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
    let unsafe_dir = |reason: String| CacheError::UnsafeDir {
        path: path.clone(),
        reason,
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o7777;
        if mode != 0o700 {
            return Err(unsafe_dir(format!(
                "its mode is {mode:04o}, expected 0700 (owner only)"
            )));
        }
        Ok(Staging {
            uid: meta.uid(),
            path,
        })
    }
    #[cfg(not(unix))]
    Ok(Staging { path })
}

/// A name no other writer uses: process id, time and a per-process counter.
fn unique_name(key: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{key}.{}.{nanos:x}.{n}.tmp", std::process::id())
}

/// Create `path` exclusively (fails if anything, a symlink included, is
/// there), check it landed in a folder we own, and write `bytes` durably.
fn write_new(path: &Path, bytes: &[u8], staging: &Staging) -> Result<(), CacheError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        // std has no getuid(); a file this process just created carries its
        // effective uid, which is what the folder's owner must be.
        use std::os::unix::fs::MetadataExt;
        let me = file.metadata().map_err(io_err(path))?.uid();
        if me != staging.uid {
            return Err(CacheError::UnsafeDir {
                path: staging.path.clone(),
                reason: format!(
                    "it belongs to uid {}, not to this user (uid {me})",
                    staging.uid
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = staging;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn encode(f: &ShFilters) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_BYTES + 8 * f.taps * f.channels());
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
    if b.len() < HEADER_BYTES || &b[..8] != MAGIC {
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
    if b.len() != HEADER_BYTES + 2 * k * taps * 4 {
        return None;
    }
    let mut vals = b[HEADER_BYTES..]
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

    fn filters(order: usize, method: DecoderMethod) -> ShFilters {
        let k = channels_for_order(order);
        ShFilters {
            order,
            sample_rate: 48_000,
            taps: 3,
            symmetric: true,
            left: vec![vec![0.1, 0.2, 0.3]; k],
            right: vec![vec![0.1, -0.2, 0.3]; k],
            method,
        }
    }

    /// A fresh, empty folder per test.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "studiocast-cache-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn entry_for_another_order_rate_or_method_is_a_miss() {
        let dir = scratch("mismatch");
        let key = "0123456789abcdef-o3-magls-48000";
        store(&dir, key, &filters(1, DecoderMethod::MagLs)).unwrap();
        let want = |method, order| DesignOptions::new(method, order);
        assert!(load(&dir, key, 48_000, &want(DecoderMethod::MagLs, 3)).is_none());
        assert!(load(&dir, key, 44_100, &want(DecoderMethod::MagLs, 1)).is_none());
        assert!(load(&dir, key, 48_000, &want(DecoderMethod::Ls, 1)).is_none());
        let mut long = want(DecoderMethod::MagLs, 1);
        long.filter_len = Some(256);
        assert!(load(&dir, key, 48_000, &long).is_none());
        let hit = load(&dir, key, 48_000, &want(DecoderMethod::MagLs, 1)).unwrap();
        assert_eq!(hit.order, 1);
        assert!(load(&dir, "../x", 48_000, &want(DecoderMethod::MagLs, 1)).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn planted_symlink_at_temp_path_is_not_followed() {
        let dir = scratch("symlink");
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        let cache = dir.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let key = "00000000000000aa-o1-magls-48000";
        // Where the old code put its temp file, and a name in the staging
        // folder as an attacker might guess it: both links to the victim.
        let old_tmp = cache.join(format!("{key}.shf.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        // A link at the entry's own name is replaced, not written through.
        let dest = cache.join(format!("{key}.shf"));
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        let f = filters(1, DecoderMethod::MagLs);
        store(&cache, key, &f).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
        let opts = DesignOptions::new(DecoderMethod::MagLs, 1);
        assert_eq!(load(&cache, key, 48_000, &opts).unwrap().right, f.right);
        // An exclusive create refuses a link sitting at the exact name.
        let staging = staging_dir(&cache).unwrap();
        let guessed = staging.path.join("guessed.tmp");
        std::os::unix::fs::symlink(&victim, &guessed).unwrap();
        assert!(write_new(&guessed, b"evil", &staging).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn unsafe_staging_folder_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("staging");
        let f = filters(1, DecoderMethod::MagLs);
        let key = "00000000000000bb-o1-magls-48000";
        // The staging folder is a link to a folder of the attacker's.
        let cache = dir.join("linked");
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.join(STAGING_DIR)).unwrap();
        let e = store(&cache, key, &f).unwrap_err();
        assert!(matches!(e, CacheError::UnsafeDir { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(!cache.join(format!("{key}.shf")).exists());
        // The staging folder is open to everyone.
        let cache = dir.join("open");
        let staging = cache.join(STAGING_DIR);
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = store(&cache, key, &f).unwrap_err();
        assert!(e.to_string().contains("0777"), "{e}");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
        // The staging path is a plain file.
        let cache = dir.join("file");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join(STAGING_DIR), b"").unwrap();
        let e = store(&cache, key, &f).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
