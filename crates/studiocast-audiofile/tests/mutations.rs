//! Hostile files through the decode path a job takes ([`open`] then
//! [`AudioSource::read_planar`] to the end): hundreds of mutants of valid
//! WAV (float and 16-bit), FLAC, AAC in MP4, MP3 and Ogg Vorbis files, each
//! with bits flipped, header bytes overwritten, sizes set absurd, cut
//! short, spliced or zeroed. None may panic, and none may make the reader
//! allocate without bound: a counting allocator records the largest
//! single request and the peak in use.
//!
//! The seeds are made here (our writer; ffmpeg for the others), the
//! mutations come from a fixed generator, so a failure replays exactly.
//! `benches/fuzz.sh` runs the same decode path under libFuzzer for longer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use studiocast_audiofile::open;
use studiocast_audiofile::pcm::{PcmWriter, SampleFormat};

struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        IN_USE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let now = IN_USE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            IN_USE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        LARGEST.fetch_max(new, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A seed is a few hundred kilobytes; a reader that asks for more than
/// this at once, or holds more than the peak bound, trusted a size field.
const LARGEST_BOUND: usize = 64 << 20;
const PEAK_BOUND: usize = 256 << 20;
const MUTANTS_PER_SEED: usize = 300;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("studiocast-mutations-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Half a second of a chord on `channels` channels.
fn planes(channels: usize, rate: u32) -> Vec<Vec<f32>> {
    (0..channels)
        .map(|c| {
            (0..rate as usize / 2)
                .map(|i| {
                    let t = i as f32 / rate as f32;
                    0.3 * (2.0 * std::f32::consts::PI * (220.0 * (c + 1) as f32) * t).sin()
                })
                .collect()
        })
        .collect()
}

fn write_wav(path: &Path, channels: usize, fmt: SampleFormat) {
    let p = planes(channels, 48_000);
    let mut w = PcmWriter::create(path, channels as u16, 48_000, fmt).unwrap();
    let refs: Vec<&[f32]> = p.iter().map(|v| v.as_slice()).collect();
    w.write_planar(&refs).unwrap();
    w.finalize().unwrap();
}

fn ffmpeg(from: &Path, to: &Path, codec: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(from)
        .args(codec)
        .arg(to)
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn seeds(d: &Path) -> Vec<PathBuf> {
    let f32wav = d.join("seed-f32.wav");
    write_wav(&f32wav, 4, SampleFormat::F32);
    let s16wav = d.join("seed-s16.wav");
    write_wav(&s16wav, 2, SampleFormat::I16);
    let mut out = vec![f32wav.clone(), s16wav.clone()];
    for (name, codec) in [
        ("seed.flac", &["-c:a", "flac"][..]),
        ("seed.m4a", &["-c:a", "aac", "-b:a", "96k"][..]),
        ("seed.mp3", &["-c:a", "libmp3lame", "-b:a", "96k"][..]),
        ("seed.ogg", &["-c:a", "libvorbis"][..]),
    ] {
        let p = d.join(name);
        ffmpeg(&s16wav, &p, codec);
        out.push(p);
    }
    out
}

/// xorshift64*: fixed, so every run makes the same mutants.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], r: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    let head = b.len().min(256);
    match r.below(6) {
        0 => {
            for _ in 0..1 + r.below(8) {
                let i = r.below(b.len());
                b[i] ^= 1 << r.below(8);
            }
        }
        1 => {
            for _ in 0..1 + r.below(16) {
                let i = r.below(head);
                b[i] = r.next() as u8;
            }
        }
        2 => {
            // A size or count field set absurd.
            let i = r.below(head.saturating_sub(4) / 4) * 4;
            let v: u32 = [u32::MAX, 0, 0x7fff_ffff, 0xffff, 1][r.below(5)];
            b[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        3 => b.truncate(r.below(b.len())),
        4 => {
            let (from, len) = (r.below(b.len()), 1 + r.below(4096));
            let chunk: Vec<u8> = b[from..(from + len).min(b.len())].to_vec();
            let at = r.below(b.len());
            b.splice(at..at, chunk);
        }
        _ => {
            let from = r.below(b.len());
            let to = (from + 1 + r.below(2048)).min(b.len());
            b[from..to].fill(0);
        }
    }
    b
}

/// Everything a job does with an input: open, then read to the end (with
/// a budget, so a reader that never ends fails the test instead of
/// hanging it).
fn decode(path: &Path) -> Result<u64, String> {
    let mut src = open(path).map_err(|e| e.to_string())?;
    let channels = src.channels();
    let mut out = vec![Vec::new(); channels];
    let mut frames = 0u64;
    for _ in 0..100_000 {
        let n = src.read_planar(4096, &mut out).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(frames);
        }
        frames += n as u64;
    }
    Err(format!("{frames} frames and still reading: no end"))
}

#[test]
fn mutated_files_never_panic_nor_allocate_without_bound() {
    let d = dir();
    let seeds = seeds(&d);
    // The seeds themselves decode.
    for s in &seeds {
        let frames = decode(s).unwrap_or_else(|e| panic!("{}: {e}", s.display()));
        assert!(frames >= 20_000, "{}: {frames} frames", s.display());
    }
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let (mut refused, mut read) = (0, 0);
    for s in &seeds {
        let bytes = std::fs::read(s).unwrap();
        let ext = s.extension().unwrap().to_string_lossy().into_owned();
        for n in 0..MUTANTS_PER_SEED {
            let m = d.join(format!("mutant.{ext}"));
            std::fs::write(&m, mutate(&bytes, &mut rng)).unwrap();
            let base = IN_USE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            LARGEST.store(0, Ordering::Relaxed);
            let outcome = std::panic::catch_unwind(|| decode(&m));
            let (peak, largest) = (
                PEAK.load(Ordering::Relaxed) - base,
                LARGEST.load(Ordering::Relaxed),
            );
            let keep = d.join(format!("failing-{n}.{ext}"));
            match outcome {
                Err(_) => {
                    let _ = std::fs::copy(&m, &keep);
                    panic!(
                        "mutant {n} of {} panicked (kept as {})",
                        s.display(),
                        keep.display()
                    )
                }
                Ok(Ok(_)) => read += 1,
                Ok(Err(e)) if e.contains("no end") => panic!("mutant {n} of {}: {e}", s.display()),
                Ok(Err(_)) => refused += 1,
            }
            if largest > LARGEST_BOUND || peak > PEAK_BOUND {
                let _ = std::fs::copy(&m, &keep);
                panic!(
                    "mutant {n} of {}: an allocation of {largest} bytes, {peak} at once (kept as {})",
                    s.display(),
                    keep.display()
                );
            }
        }
    }
    eprintln!(
        "{} mutants: {read} read to the end, {refused} refused",
        read + refused
    );
    assert_eq!(read + refused, seeds.len() * MUTANTS_PER_SEED);
    let _ = std::fs::remove_dir_all(&d);
}

/// Inputs the fuzzer (benches/fuzz.sh) found crashing a decoder, kept
/// here so they stay refused.
#[test]
fn the_fuzzers_crashers_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crashers");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let outcome = std::panic::catch_unwind(|| decode(&e.path()));
        match outcome {
            Err(_) => panic!("{} panicked", e.path().display()),
            Ok(Ok(frames)) => panic!("{} read as {frames} frames", e.path().display()),
            Ok(Err(_)) => n += 1,
        }
    }
    assert!(n >= 1);
}
