//! Hostile SOFA files, made at run time by patching a copy of Debian's MIT
//! KEMAR file (no binary fixtures in the repository). Each must be refused
//! quickly with a clear error: before the checks in `sofa_check`, a 1 Hz
//! rate aborted the process (sofar resampling into ~139 GB), a NaN rate was
//! accepted, and a huge delay cost seconds and gigabytes in the design.

use std::time::{Duration, Instant};

use studiocast_spatial::{HrtfSet, SpatialError, DEFAULT_SOFA};

/// Generous: a refusal takes milliseconds; the old behaviour took 16 s or
/// aborted.
const QUICK: Duration = Duration::from_secs(10);

mod craft {
    //! Just enough HDF5 to replace the single chunk of a small dataset. The
    //! KEMAR file (superblock v0, object headers v2, chunked datasets with
    //! deflate) is the only input; every step asserts what it expects, so a
    //! different file fails loudly instead of producing a bogus fixture.

    use studiocast_spatial::DEFAULT_SOFA;

    pub fn kemar() -> Vec<u8> {
        std::fs::read(DEFAULT_SOFA).unwrap_or_else(|e| {
            panic!(
                "{DEFAULT_SOFA}: {e}. The MIT KEMAR SOFA from Debian's libmysofa1 is required \
                 (apt-get install libmysofa1)"
            )
        })
    }

    fn le(b: &[u8], at: usize, n: usize) -> u64 {
        b[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | x as u64)
    }

    /// Address of the object header of the root child `name`.
    fn object_header(b: &[u8], name: &str) -> usize {
        let parsed = sofar::hdf::parse_with_children(b).expect("KEMAR parses");
        let entry = parsed
            .root
            .child_directories
            .iter()
            .find(|d| d.name == name);
        entry.unwrap_or_else(|| panic!("no dataset {name}")).address as usize
    }

    /// (type, body offset) of every message of an object header (v2),
    /// following continuation blocks.
    fn messages(b: &[u8], ohdr: usize) -> Vec<(u8, usize)> {
        assert_eq!(&b[ohdr..ohdr + 4], b"OHDR");
        assert_eq!(b[ohdr + 4], 2, "object header version");
        let flags = b[ohdr + 5];
        let mut p = ohdr + 6 + if flags & 0x20 != 0 { 16 } else { 0 };
        let width = 1usize << (flags & 3);
        let chunk = le(b, p, width) as usize;
        p += width;
        let mut out = Vec::new();
        walk(b, p, p + chunk, flags, &mut out);
        out
    }

    fn walk(b: &[u8], mut p: usize, end: usize, flags: u8, out: &mut Vec<(u8, usize)>) {
        let prefix = if flags & 4 != 0 { 6 } else { 4 };
        while p + prefix <= end {
            let (kind, size) = (b[p], le(b, p + 1, 2) as usize);
            let body = p + prefix;
            if kind == 16 {
                let (off, len) = (le(b, body, 8) as usize, le(b, body + 8, 8) as usize);
                assert_eq!(&b[off..off + 4], b"OCHK");
                walk(b, off + 4, off + len - 4, flags, out);
            } else {
                out.push((kind, body));
            }
            p = body + size;
        }
    }

    /// zlib stream with one stored (uncompressed) block.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let len = u16::try_from(data.len()).expect("small payload");
        let mut z = vec![0x78, 0x01, 0x01];
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(data);
        let (mut a, mut s) = (1u32, 0u32);
        for &x in data {
            a = (a + x as u32) % 65_521;
            s = (s + a) % 65_521;
        }
        z.extend_from_slice(&((s << 16) | a).to_be_bytes());
        z
    }

    /// HDF5's shuffle filter (which sofar undoes): byte k of every element
    /// together, then byte k + 1.
    fn shuffle(data: &[u8], elem: usize) -> Vec<u8> {
        let n = data.len() / elem;
        (0..elem)
            .flat_map(|k| (0..n).map(move |i| data[i * elem + k]))
            .collect()
    }

    /// A copy of `file` whose dataset `name` (one chunk) holds `payload`,
    /// which must have the chunk's decoded size. The new chunk is appended
    /// and the B-tree record and the end-of-file address point to it.
    pub fn replace_chunk(file: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
        assert_eq!(file[8], 0, "superblock version 0");
        assert_eq!(le(file, 40, 8), file.len() as u64, "end-of-file address");
        let ohdr = object_header(file, name);
        let (_, body) = messages(file, ohdr)
            .into_iter()
            .find(|&(kind, body)| kind == 8 && file[body] == 3 && file[body + 1] == 2)
            .unwrap_or_else(|| panic!("{name} is not a chunked dataset"));
        let layout_dims = file[body + 2] as usize;
        let tree = le(file, body + 3, 8) as usize;
        // Layout: version, class, rank, address, then the chunk's extent in
        // each dimension, the last being the element size.
        let elem = le(file, body + 11 + 4 * (layout_dims - 1), 4) as usize;
        assert!(
            elem > 0 && payload.len().is_multiple_of(elem),
            "element size {elem}"
        );
        assert_eq!(&file[tree..tree + 4], b"TREE");
        assert_eq!(le(file, tree + 6, 2), 1, "{name} has one chunk");
        let record = tree + 24;
        let pointer = record + 8 + 8 * layout_dims;
        let z = zlib_stored(&shuffle(payload, elem));
        let mut out = file.to_vec();
        let at = out.len() as u64;
        out.extend_from_slice(&z);
        out[record..record + 4].copy_from_slice(&(z.len() as u32).to_le_bytes());
        out[pointer..pointer + 8].copy_from_slice(&at.to_le_bytes());
        let eof = out.len() as u64;
        out[40..48].copy_from_slice(&eof.to_le_bytes());
        out
    }

    pub fn with_rate(rate: f64) -> Vec<u8> {
        replace_chunk(&kemar(), "Data.SamplingRate", &rate.to_le_bytes())
    }

    /// KEMAR's delay is 1 × R (two f64 values).
    pub fn with_delay(left: f64, right: f64) -> Vec<u8> {
        let mut v = left.to_le_bytes().to_vec();
        v.extend_from_slice(&right.to_le_bytes());
        replace_chunk(&kemar(), "Data.Delay", &v)
    }
}

/// Parse, asserting it returns in time (and, by returning at all, that it
/// did not abort).
fn open(bytes: &[u8]) -> Result<HrtfSet, SpatialError> {
    let t0 = Instant::now();
    let r = HrtfSet::from_sofa_bytes(bytes, 48_000, "crafted.sofa");
    assert!(t0.elapsed() < QUICK, "took {:?}", t0.elapsed());
    r
}

fn refused(bytes: &[u8], expect: &[&str]) -> String {
    let e = match open(bytes) {
        Ok(h) => panic!("a hostile file was accepted ({} taps)", h.taps()),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(matches!(e, SpatialError::Sofa { .. }), "{msg}");
    for part in expect {
        assert!(msg.contains(part), "'{part}' not in: {msg}");
    }
    eprintln!("{msg}");
    msg
}

/// The fixture maker itself: untouched values still load, and a changed
/// rate is really what the parser sees (48 kHz: no resampling, 512 taps).
#[test]
fn crafted_files_are_read_as_patched() {
    assert!(
        std::path::Path::new(DEFAULT_SOFA).exists(),
        "{DEFAULT_SOFA} is required: apt-get install libmysofa1"
    );
    let same = open(&craft::with_rate(44_100.0)).unwrap();
    assert_eq!(same.len(), 710);
    assert!(
        same.taps() > 512,
        "resampled from 44.1 kHz: {}",
        same.taps()
    );
    let native = open(&craft::with_rate(48_000.0)).unwrap();
    assert_eq!(native.taps(), 512);
    let delayed = open(&craft::with_delay(10.0, 10.0)).unwrap();
    assert!(delayed.taps() >= same.taps() + 10);
}

/// The resampling bound admits every standard pair, the worst being
/// 11 025 Hz to 192 kHz (147:2560 blocks), and the result is audible.
#[test]
fn most_distant_standard_rates_still_resample() {
    let t0 = Instant::now();
    let h = HrtfSet::from_sofa_bytes(&craft::with_rate(11_025.0), 192_000, "11k.sofa").unwrap();
    assert!(t0.elapsed() < QUICK, "took {:?}", t0.elapsed());
    assert_eq!(h.len(), 710);
    assert!(h.taps() >= 512 * 192_000 / 11_025, "{} taps", h.taps());
}

#[test]
fn one_hertz_rate_is_refused_without_a_huge_allocation() {
    refused(
        &craft::with_rate(1.0),
        &["Data.SamplingRate is 1 Hz", "8000"],
    );
    refused(&craft::with_rate(1e9), &["Data.SamplingRate is 1e9 Hz"]);
    refused(&craft::with_rate(0.0), &["Data.SamplingRate is 0 Hz"]);
    refused(&craft::with_rate(-44_100.0), &["-44100 Hz"]);
}

#[test]
fn non_finite_or_odd_rate_is_refused() {
    refused(&craft::with_rate(f64::NAN), &["Data.SamplingRate is NaN"]);
    refused(
        &craft::with_rate(f64::INFINITY),
        &["Data.SamplingRate is inf"],
    );
    refused(&craft::with_rate(44_100.5), &["not a whole number"]);
    refused(&craft::with_rate(44_101.0), &["44101 Hz to 48000 Hz"]);
}

#[test]
fn huge_or_invalid_delay_is_refused() {
    refused(
        &craft::with_delay(1e30, 0.0),
        &["Data.Delay of measurement 0, ear 0 is 1e30 samples"],
    );
    refused(&craft::with_delay(0.0, 44_100.0), &["Data.Delay", "ear 1"]);
    refused(&craft::with_delay(-3.0, 0.0), &["Data.Delay", "-3"]);
    refused(&craft::with_delay(f64::NAN, 0.0), &["Data.Delay", "NaN"]);
}

#[test]
fn oversized_bytes_are_refused_before_parsing() {
    // Zeroed allocation: the pages are never touched, so this costs no RAM.
    let big = vec![0u8; 512 * 1024 * 1024 + 1];
    refused(&big, &["larger than"]);
}
