//! WAV, RF64 (EBU Tech 3306) and Sony Wave64 PCM files.
//!
//! The reader trusts nothing: chunk sizes are bounded and a data size that is
//! zero or runs past the end of the file (a recording interrupted before its
//! header was finalised) is replaced by what the file really holds, rounded
//! down to whole frames.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{AudioFileError, AudioSource, Result, MAX_CHANNELS, MAX_RATE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Riff,
    Rf64,
    Wave64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
}

impl SampleFormat {
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::U8 => 1,
            SampleFormat::I16 => 2,
            SampleFormat::I24 => 3,
            SampleFormat::I32 | SampleFormat::F32 => 4,
            SampleFormat::F64 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, SampleFormat::F32 | SampleFormat::F64)
    }
}

#[derive(Debug, Clone)]
pub struct PcmInfo {
    pub container: Container,
    pub channels: u16,
    pub sample_rate: u32,
    pub format: SampleFormat,
    pub data_offset: u64,
    pub data_bytes: u64,
    /// False when the header's data size was missing or wrong and the size
    /// was recovered from the file length.
    pub size_was_valid: bool,
}

impl PcmInfo {
    pub fn frame_bytes(&self) -> usize {
        self.channels as usize * self.format.bytes()
    }

    pub fn frames(&self) -> u64 {
        self.data_bytes / self.frame_bytes() as u64
    }
}

const W64_RIFF: [u8; 16] = guid(
    *b"riff",
    [
        0x2E, 0x91, 0xCF, 0x11, 0xA5, 0xD6, 0x28, 0xDB, 0x04, 0xC1, 0x00, 0x00,
    ],
);
const W64_WAVE: [u8; 16] = guid(
    *b"wave",
    [
        0xF3, 0xAC, 0xD3, 0x11, 0x8C, 0xD1, 0x00, 0xC0, 0x4F, 0x8E, 0xDB, 0x8A,
    ],
);
const W64_FMT: [u8; 16] = guid(
    *b"fmt ",
    [
        0xF3, 0xAC, 0xD3, 0x11, 0x8C, 0xD1, 0x00, 0xC0, 0x4F, 0x8E, 0xDB, 0x8A,
    ],
);
const W64_DATA: [u8; 16] = guid(
    *b"data",
    [
        0xF3, 0xAC, 0xD3, 0x11, 0x8C, 0xD1, 0x00, 0xC0, 0x4F, 0x8E, 0xDB, 0x8A,
    ],
);
/// KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT tail after the 2-byte tag.
const SUBTYPE_TAIL: [u8; 14] = [0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71];

const fn guid(tag: [u8; 4], rest: [u8; 12]) -> [u8; 16] {
    let mut g = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        g[i] = tag[i];
        i += 1;
    }
    while i < 16 {
        g[i] = rest[i - 4];
        i += 1;
    }
    g
}

const MAX_CHUNKS: usize = 10_000;
const MAX_FMT_BYTES: u64 = 1 << 16;

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn parse_fmt(path: &Path, b: &[u8]) -> Result<(u16, u32, SampleFormat)> {
    let unsupported = |reason: String| AudioFileError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    if b.len() < 16 {
        return Err(unsupported("fmt chunk shorter than 16 bytes".into()));
    }
    let mut tag = le16(&b[0..]);
    let channels = le16(&b[2..]);
    let rate = le32(&b[4..]);
    let block_align = le16(&b[12..]);
    let bits = le16(&b[14..]);
    if tag == 0xFFFE {
        if b.len() < 40 {
            return Err(unsupported("truncated WAVE_FORMAT_EXTENSIBLE".into()));
        }
        if b[26..40] != SUBTYPE_TAIL {
            return Err(unsupported("unknown extensible sub-format".into()));
        }
        tag = le16(&b[24..]);
    }
    let format = match (tag, bits) {
        (1, 8) => SampleFormat::U8,
        (1, 16) => SampleFormat::I16,
        (1, 24) => SampleFormat::I24,
        (1, 32) => SampleFormat::I32,
        (3, 32) => SampleFormat::F32,
        (3, 64) => SampleFormat::F64,
        (t, b) => return Err(unsupported(format!("format tag {t} with {b} bits"))),
    };
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(unsupported(format!(
            "{channels} channels (1..={MAX_CHANNELS})"
        )));
    }
    if rate == 0 || rate > MAX_RATE {
        return Err(unsupported(format!("sample rate {rate}")));
    }
    if block_align as usize != channels as usize * format.bytes() {
        return Err(unsupported(format!(
            "block align {block_align} does not match {channels} × {bits} bits"
        )));
    }
    Ok((channels, rate, format))
}

fn format_error(path: &Path, reason: &str) -> AudioFileError {
    AudioFileError::Format {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Parse the header of a WAV/RF64/W64 file.
pub fn probe(path: &Path, f: &mut File) -> Result<PcmInfo> {
    let file_len = f.metadata()?.len();
    let mut head = [0u8; 40];
    f.seek(SeekFrom::Start(0))?;
    let n = read_up_to(f, &mut head)?;
    if n >= 12
        && (&head[0..4] == b"RIFF" || &head[0..4] == b"RF64" || &head[0..4] == b"BW64")
        && &head[8..12] == b"WAVE"
    {
        let container = if &head[0..4] == b"RIFF" {
            Container::Riff
        } else {
            Container::Rf64
        };
        return probe_riff(path, f, container, file_len);
    }
    if n >= 40 && head[0..16] == W64_RIFF && head[24..40] == W64_WAVE {
        return probe_w64(path, f, file_len);
    }
    Err(format_error(path, "not a RIFF/RF64/W64 WAVE file"))
}

/// Walk the chunks of a RIFF/RF64 WAVE file up to its data chunk.
fn probe_riff(path: &Path, f: &mut File, container: Container, file_len: u64) -> Result<PcmInfo> {
    let not = |reason: &str| format_error(path, reason);
    let mut pos = 12u64;
    let mut fmt = None;
    let mut ds64_data: Option<u64> = None;
    for _ in 0..MAX_CHUNKS {
        if file_len.checked_sub(pos).is_none_or(|left| left < 8) {
            break;
        }
        let mut ch = [0u8; 8];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut ch)?;
        let size = le32(&ch[4..]) as u64;
        let body = pos + 8;
        match &ch[0..4] {
            b"ds64" => {
                if size < 24 {
                    return Err(not("ds64 chunk shorter than 24 bytes"));
                }
                let mut d = [0u8; 24];
                f.read_exact(&mut d)?;
                ds64_data = Some(le64(&d[8..]));
            }
            b"fmt " => {
                if size > MAX_FMT_BYTES {
                    return Err(not("fmt chunk too large"));
                }
                let mut b = vec![0u8; size as usize];
                f.read_exact(&mut b)?;
                fmt = Some(parse_fmt(path, &b)?);
            }
            b"data" => {
                let (channels, sample_rate, format) =
                    fmt.ok_or_else(|| not("data chunk before fmt chunk"))?;
                let declared = if container == Container::Rf64 && size == 0xFFFF_FFFF {
                    ds64_data.unwrap_or(0)
                } else {
                    size
                };
                let declared = trust_declared(f, body, declared, file_len, 8)?;
                return Ok(finish(
                    container,
                    channels,
                    sample_rate,
                    format,
                    body,
                    declared,
                    file_len,
                ));
            }
            _ => {}
        }
        pos = riff_next_chunk(body, size).ok_or_else(|| chunk_overflow(path, pos, size))?;
    }
    Err(not("no data chunk"))
}

/// Walk the chunks of a Sony Wave64 file up to its data chunk. Chunk sizes
/// are 64-bit and file-controlled, so the walk uses checked arithmetic.
fn probe_w64(path: &Path, f: &mut File, file_len: u64) -> Result<PcmInfo> {
    let not = |reason: &str| format_error(path, reason);
    let mut pos = 40u64;
    let mut fmt = None;
    for _ in 0..MAX_CHUNKS {
        if file_len.checked_sub(pos).is_none_or(|left| left < 24) {
            break;
        }
        let mut ch = [0u8; 24];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut ch)?;
        let size = le64(&ch[16..]);
        if size < 24 {
            return Err(not("W64 chunk smaller than its header"));
        }
        let body = pos + 24;
        if ch[0..16] == W64_FMT {
            if size - 24 > MAX_FMT_BYTES {
                return Err(not("fmt chunk too large"));
            }
            let mut b = vec![0u8; (size - 24) as usize];
            f.read_exact(&mut b)?;
            fmt = Some(parse_fmt(path, &b)?);
        } else if ch[0..16] == W64_DATA {
            let (channels, sample_rate, format) =
                fmt.ok_or_else(|| not("data chunk before fmt chunk"))?;
            let declared = trust_declared(f, body, size - 24, file_len, 24)?;
            return Ok(finish(
                Container::Wave64,
                channels,
                sample_rate,
                format,
                body,
                declared,
                file_len,
            ));
        }
        pos = w64_next_chunk(body, size).ok_or_else(|| chunk_overflow(path, pos, size))?;
    }
    Err(not("no data chunk"))
}

/// Offset of the RIFF chunk after one whose body starts at `body` and holds
/// `size` bytes (plus a pad byte when odd); `None` past the largest offset.
fn riff_next_chunk(body: u64, size: u64) -> Option<u64> {
    body.checked_add(size)?.checked_add(size & 1)
}

/// Offset of the W64 chunk after one whose header starts 24 bytes before
/// `body`: `size` counts the header and chunks are 8-byte aligned. The size
/// is file-controlled and 64-bit, so every step is checked.
fn w64_next_chunk(body: u64, size: u64) -> Option<u64> {
    let end = body.checked_add(size.checked_sub(24)?)?;
    end.checked_next_multiple_of(8)
}

fn chunk_overflow(path: &Path, pos: u64, size: u64) -> AudioFileError {
    AudioFileError::Format {
        path: path.to_path_buf(),
        reason: format!("chunk at offset {pos} declares {size} bytes, beyond any file size"),
    }
}

/// A declared data size shorter than the file is kept only when a chunk
/// header follows it; otherwise the writer stopped refreshing the header (a
/// crash) and the bytes after it are real audio. Returns 0 for "recover".
fn trust_declared(f: &mut File, body: u64, declared: u64, file_len: u64, hdr: u64) -> Result<u64> {
    let end = body.saturating_add(declared);
    if declared == 0 || end > file_len {
        return Ok(0);
    }
    let next = end + (end & 1);
    if next >= file_len {
        return Ok(declared);
    }
    if next + hdr > file_len {
        return Ok(0);
    }
    let mut id = [0u8; 4];
    f.seek(SeekFrom::Start(next))?;
    f.read_exact(&mut id)?;
    let plausible = id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ');
    Ok(if plausible { declared } else { 0 })
}

fn finish(
    container: Container,
    channels: u16,
    sample_rate: u32,
    format: SampleFormat,
    offset: u64,
    declared: u64,
    file_len: u64,
) -> PcmInfo {
    let avail = file_len.saturating_sub(offset);
    let fb = channels as u64 * format.bytes() as u64;
    let valid = declared > 0 && declared <= avail;
    let bytes = if valid { declared } else { avail };
    PcmInfo {
        container,
        channels,
        sample_rate,
        format,
        data_offset: offset,
        data_bytes: bytes / fb * fb,
        size_was_valid: valid,
    }
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Streaming PCM reader.
pub struct PcmReader {
    info: PcmInfo,
    reader: BufReader<File>,
    remaining: u64,
    bytes: Vec<u8>,
    path: PathBuf,
}

impl PcmReader {
    pub fn open(path: &Path) -> Result<Self> {
        let mut f = File::open(path).map_err(|source| AudioFileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let info = probe(path, &mut f)?;
        f.seek(SeekFrom::Start(info.data_offset))?;
        Ok(PcmReader {
            remaining: info.data_bytes,
            info,
            reader: BufReader::with_capacity(1 << 20, f),
            bytes: Vec::new(),
            path: path.to_path_buf(),
        })
    }

    pub fn info(&self) -> &PcmInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AudioSource for PcmReader {
    fn channels(&self) -> usize {
        self.info.channels as usize
    }

    fn sample_rate(&self) -> u32 {
        self.info.sample_rate
    }

    fn frames(&self) -> Option<u64> {
        Some(self.info.frames())
    }

    fn read_planar(&mut self, max: usize, out: &mut [Vec<f32>]) -> Result<usize> {
        let ch = self.info.channels as usize;
        if out.len() != ch {
            return Err(AudioFileError::ChannelMismatch {
                expected: ch,
                actual: out.len(),
            });
        }
        let fb = self.info.frame_bytes();
        let frames = (max as u64).min(self.remaining / fb as u64) as usize;
        for o in out.iter_mut() {
            o.clear();
        }
        if frames == 0 {
            return Ok(0);
        }
        self.bytes.resize(frames * fb, 0);
        let got = read_fill(&mut self.reader, &mut self.bytes)?;
        let frames = got / fb;
        self.remaining = if got < self.bytes.len() {
            0
        } else {
            self.remaining - (frames * fb) as u64
        };
        for o in out.iter_mut() {
            o.resize(frames, 0.0);
        }
        let fmt = self.info.format;
        let sb = fmt.bytes();
        let data = &self.bytes[..frames * fb];
        // One pass per channel keeps each output slice hot and lets the
        // compiler drop bounds checks; a per-sample match would not.
        for (c, o) in out.iter_mut().enumerate() {
            let col = data.chunks_exact(fb).map(|fr| &fr[c * sb..(c + 1) * sb]);
            match fmt {
                SampleFormat::F32 => {
                    for (d, s) in o.iter_mut().zip(col) {
                        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                    }
                }
                _ => {
                    for (d, s) in o.iter_mut().zip(col) {
                        *d = decode_sample(fmt, s);
                    }
                }
            }
        }
        Ok(frames)
    }
}

fn read_fill<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

#[inline]
fn decode_sample(fmt: SampleFormat, s: &[u8]) -> f32 {
    match fmt {
        SampleFormat::U8 => (s[0] as f32 - 128.0) / 128.0,
        SampleFormat::I16 => i16::from_le_bytes([s[0], s[1]]) as f32 / 32_768.0,
        SampleFormat::I24 => (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0,
        SampleFormat::I32 => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
        SampleFormat::F32 => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        SampleFormat::F64 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            f64::from_le_bytes(a) as f32
        }
    }
}

mod writer;
pub use writer::{repair, PcmWriter};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("studiocast-audiofile-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn round_trip_all_writable_formats() {
        for fmt in [
            SampleFormat::I16,
            SampleFormat::I24,
            SampleFormat::I32,
            SampleFormat::F32,
            SampleFormat::F64,
        ] {
            let p = tmp(&format!("rt-{fmt:?}.wav"));
            let mut w = PcmWriter::create(&p, 3, 48_000, fmt).unwrap();
            let a: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.01).sin() * 0.9).collect();
            let b: Vec<f32> = a.iter().map(|v| -v).collect();
            let c = vec![0.25f32; 1000];
            w.write_planar(&[&a, &b, &c]).unwrap();
            assert_eq!(w.finalize().unwrap(), 1000);
            let mut r = PcmReader::open(&p).unwrap();
            assert!(r.info().size_was_valid);
            let mut out = vec![Vec::new(); 3];
            assert_eq!(r.read_planar(4096, &mut out).unwrap(), 1000);
            let tol = match fmt {
                SampleFormat::I16 => 1e-4,
                SampleFormat::I24 => 1e-6,
                _ => 1e-7,
            };
            for (x, y) in out[0].iter().zip(&a) {
                assert!((x - y).abs() < tol, "{fmt:?}");
            }
            assert_eq!(r.read_planar(4096, &mut out).unwrap(), 0);
        }
    }

    #[test]
    fn unfinalised_file_is_recovered_from_its_length() {
        let p = tmp("crash.wav");
        let mut w = PcmWriter::create(&p, 16, 48_000, SampleFormat::F32).unwrap();
        let x = vec![0.5f32; 480];
        let planes: Vec<&[f32]> = vec![&x; 16];
        w.write_planar(&planes).unwrap();
        w.sync().unwrap();
        w.write_planar(&planes).unwrap();
        // Simulate a crash: flush bytes but never rewrite the header.
        w.w.flush().unwrap();
        std::mem::forget(w);
        let r = PcmReader::open(&p).unwrap();
        assert!(!r.info().size_was_valid);
        assert_eq!(r.info().frames(), 960);
        // Repair rewrites the header; the file then reads as valid.
        let info = repair(&p).unwrap();
        assert_eq!(info.frames(), 960);
        let r = PcmReader::open(&p).unwrap();
        assert!(r.info().size_was_valid);
        assert_eq!(r.info().frames(), 960);
    }

    /// A W64 file: a valid fmt chunk, then an unknown chunk declaring `size`
    /// bytes, then a data chunk.
    fn w64_with_chunk_size(size: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&W64_RIFF);
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&W64_WAVE);
        b.extend_from_slice(&W64_FMT);
        b.extend_from_slice(&40u64.to_le_bytes());
        for v in [1u16, 1] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&48_000u32.to_le_bytes());
        b.extend_from_slice(&96_000u32.to_le_bytes());
        for v in [2u16, 16] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(b"junkjunkjunkjunk");
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&W64_DATA);
        b.extend_from_slice(&32u64.to_le_bytes());
        b.extend_from_slice(&[0u8; 8]);
        let len = b.len() as u64;
        b[16..24].copy_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn w64_chunk_size_near_u64_max_is_an_error() {
        let p = tmp("huge-chunk.w64");
        // Sane sizes first, so the fixture itself is known to be readable.
        std::fs::write(&p, w64_with_chunk_size(24)).unwrap();
        let r = PcmReader::open(&p).unwrap();
        assert_eq!(
            (r.info().container, r.info().frames()),
            (Container::Wave64, 4)
        );
        for size in [u64::MAX, u64::MAX - 7, u64::MAX - 80] {
            std::fs::write(&p, w64_with_chunk_size(size)).unwrap();
            match PcmReader::open(&p) {
                Err(AudioFileError::Format { reason, .. }) => {
                    assert!(reason.contains("beyond any file size"), "{size}: {reason}")
                }
                Err(e) => panic!("{size}: unexpected error {e}"),
                Ok(_) => panic!("{size}: accepted"),
            }
        }
        // Huge but representable: the walk leaves the file and finds no data.
        std::fs::write(&p, w64_with_chunk_size(u64::MAX - 200)).unwrap();
        assert!(PcmReader::open(&p).is_err());
    }

    #[test]
    fn short_ds64_is_an_error() {
        let p = tmp("short-ds64.wav");
        let mut b = b"RF64\xff\xff\xff\xffWAVEds64".to_vec();
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&[0u8; 40]);
        std::fs::write(&p, &b).unwrap();
        match PcmReader::open(&p) {
            Err(AudioFileError::Format { reason, .. }) => {
                assert!(reason.contains("ds64"), "{reason}")
            }
            other => panic!("{:?}", other.map(|r| r.info().clone())),
        }
    }

    #[test]
    fn garbage_never_panics() {
        let p = tmp("junk.wav");
        let mut seed = 12345u64;
        for len in [0usize, 3, 12, 44, 100, 4000] {
            for variant in 0..20 {
                let mut b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (seed >> 33) as u8
                    })
                    .collect();
                if len >= 12 && variant % 2 == 0 {
                    b[0..4].copy_from_slice(b"RIFF");
                    b[8..12].copy_from_slice(b"WAVE");
                }
                std::fs::write(&p, &b).unwrap();
                if let Ok(mut r) = PcmReader::open(&p) {
                    let mut out = vec![Vec::new(); r.channels()];
                    while r.read_planar(1024, &mut out).unwrap_or(0) > 0 {}
                }
            }
        }
    }
}
