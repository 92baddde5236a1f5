//! Writing WAV/RF64 files, and repairing ones a crash left unfinished.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{probe, Container, PcmInfo, SampleFormat, SUBTYPE_TAIL};
use crate::{AudioFileError, Result, MAX_CHANNELS};

/// Streaming writer. The header is written up front with a JUNK chunk
/// reserving room for a ds64 chunk, so a file that grows past 4 GiB becomes
/// RF64 in place on [`PcmWriter::finalize`]. [`PcmWriter::sync`] refreshes
/// the sizes and flushes to disk, bounding what a crash can lose.
pub struct PcmWriter {
    // Visible to the parent module so its tests can simulate a crash.
    pub(super) w: BufWriter<File>,
    channels: u16,
    format: SampleFormat,
    data_bytes: u64,
    scratch: Vec<u8>,
}

const JUNK_OFFSET: u64 = 12;
const FMT_OFFSET: u64 = JUNK_OFFSET + 8 + 28;
const DATA_HEADER: u64 = FMT_OFFSET + 8 + 40;
const DATA_OFFSET: u64 = DATA_HEADER + 8;

impl PcmWriter {
    pub fn create(
        path: &Path,
        channels: u16,
        sample_rate: u32,
        format: SampleFormat,
    ) -> Result<Self> {
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(AudioFileError::Limit {
                what: "channels",
                value: channels as u64,
                limit: MAX_CHANNELS as u64,
            });
        }
        if format == SampleFormat::U8 {
            return Err(AudioFileError::Unsupported {
                path: path.to_path_buf(),
                reason: "8-bit output is not offered".into(),
            });
        }
        let f = File::create(path).map_err(|source| AudioFileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let sb = format.bytes() as u16;
        let mut h = Vec::with_capacity(DATA_OFFSET as usize);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(b"WAVE");
        h.extend_from_slice(b"JUNK");
        h.extend_from_slice(&28u32.to_le_bytes());
        h.extend_from_slice(&[0u8; 28]);
        h.extend_from_slice(b"fmt ");
        h.extend_from_slice(&40u32.to_le_bytes());
        h.extend_from_slice(&0xFFFEu16.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&sample_rate.to_le_bytes());
        h.extend_from_slice(&(sample_rate * channels as u32 * sb as u32).to_le_bytes());
        h.extend_from_slice(&(channels * sb).to_le_bytes());
        h.extend_from_slice(&(sb * 8).to_le_bytes());
        h.extend_from_slice(&22u16.to_le_bytes());
        h.extend_from_slice(&(sb * 8).to_le_bytes());
        // No speaker mask: ambisonic and multitrack channels are not speakers.
        h.extend_from_slice(&0u32.to_le_bytes());
        let tag: u16 = if format.is_float() { 3 } else { 1 };
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&SUBTYPE_TAIL);
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(h.len() as u64, DATA_OFFSET);
        w.write_all(&h)?;
        Ok(PcmWriter {
            w,
            channels,
            format,
            data_bytes: 0,
            scratch: Vec::new(),
        })
    }

    pub fn frames(&self) -> u64 {
        self.data_bytes / (self.channels as u64 * self.format.bytes() as u64)
    }

    /// Append planar frames (one slice per channel, equal lengths).
    pub fn write_planar(&mut self, planes: &[&[f32]]) -> Result<()> {
        if planes.len() != self.channels as usize {
            return Err(AudioFileError::ChannelMismatch {
                expected: self.channels as usize,
                actual: planes.len(),
            });
        }
        let frames = planes.iter().map(|p| p.len()).min().unwrap_or(0);
        let sb = self.format.bytes();
        self.scratch.clear();
        self.scratch.reserve(frames * planes.len() * sb);
        for i in 0..frames {
            for p in planes {
                encode_sample(self.format, p[i], &mut self.scratch);
            }
        }
        self.w.write_all(&self.scratch)?;
        self.data_bytes += self.scratch.len() as u64;
        Ok(())
    }

    fn write_sizes(&mut self, final_pass: bool) -> Result<()> {
        self.w.flush()?;
        let frames = self.frames();
        let f = self.w.get_mut();
        let riff = DATA_OFFSET - 8 + self.data_bytes + (self.data_bytes & 1);
        if riff > u32::MAX as u64 && final_pass {
            write_rf64_sizes(f, riff, self.data_bytes, frames, DATA_HEADER + 4)?;
        } else {
            // Past 4 GiB mid-recording the RIFF sizes cannot be right; they
            // are left at 0 so readers recover the length from the file.
            let (r, d) = if riff > u32::MAX as u64 {
                (0, 0)
            } else {
                (riff as u32, self.data_bytes as u32)
            };
            f.seek(SeekFrom::Start(4))?;
            f.write_all(&r.to_le_bytes())?;
            f.seek(SeekFrom::Start(DATA_HEADER + 4))?;
            f.write_all(&d.to_le_bytes())?;
        }
        f.seek(SeekFrom::End(0))?;
        Ok(())
    }

    /// Refresh header sizes and push everything to stable storage.
    pub fn sync(&mut self) -> Result<()> {
        self.write_sizes(false)?;
        self.w.get_ref().sync_data()?;
        Ok(())
    }

    /// Write final sizes (RF64 if needed), pad, and close.
    pub fn finalize(mut self) -> Result<u64> {
        if self.data_bytes & 1 == 1 {
            self.w.write_all(&[0])?;
        }
        self.write_sizes(true)?;
        self.w.get_ref().sync_all()?;
        Ok(self.frames())
    }
}

/// Turn a RIFF header whose JUNK chunk reserves room for ds64 into RF64
/// with the given sizes (EBU Tech 3306).
fn write_rf64_sizes(
    f: &mut File,
    riff: u64,
    data_bytes: u64,
    frames: u64,
    data_size_pos: u64,
) -> Result<()> {
    f.seek(SeekFrom::Start(0))?;
    f.write_all(b"RF64")?;
    f.write_all(&u32::MAX.to_le_bytes())?;
    f.seek(SeekFrom::Start(JUNK_OFFSET))?;
    f.write_all(b"ds64")?;
    f.write_all(&28u32.to_le_bytes())?;
    f.write_all(&riff.to_le_bytes())?;
    f.write_all(&data_bytes.to_le_bytes())?;
    f.write_all(&frames.to_le_bytes())?;
    f.write_all(&0u32.to_le_bytes())?;
    f.seek(SeekFrom::Start(data_size_pos))?;
    f.write_all(&u32::MAX.to_le_bytes())?;
    Ok(())
}

/// Make an interrupted recording (a crash before [`PcmWriter::finalize`])
/// a well-formed file again: the sizes in its header are rewritten from what
/// the file really holds, whole frames only. Works for RIFF files (becoming
/// RF64 past 4 GiB when a JUNK chunk reserves room, as ours do) and RF64.
/// Returns the repaired header.
pub fn repair(path: &Path) -> Result<PcmInfo> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| AudioFileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let mut info = probe(path, &mut f)?;
    if info.size_was_valid {
        return Ok(info);
    }
    if info.container == Container::Wave64 {
        return Err(AudioFileError::Unsupported {
            path: path.to_path_buf(),
            reason: "repairing Wave64 headers is not supported".into(),
        });
    }
    // Drop a trailing partial frame so the data size is exact.
    f.set_len(info.data_offset + info.data_bytes)?;
    let riff = info.data_offset - 8 + info.data_bytes;
    let frames = info.frames();
    let mut junk = [0u8; 4];
    f.seek(SeekFrom::Start(JUNK_OFFSET))?;
    let has_room = f.read_exact(&mut junk).is_ok() && (&junk == b"JUNK" || &junk == b"ds64");
    if riff > u32::MAX as u64 || info.container == Container::Rf64 {
        if !has_room {
            return Err(AudioFileError::Unsupported {
                path: path.to_path_buf(),
                reason: "over 4 GiB without room for a ds64 chunk".into(),
            });
        }
        write_rf64_sizes(&mut f, riff, info.data_bytes, frames, info.data_offset - 4)?;
        info.container = Container::Rf64;
    } else {
        f.seek(SeekFrom::Start(4))?;
        f.write_all(&(riff as u32).to_le_bytes())?;
        f.seek(SeekFrom::Start(info.data_offset - 4))?;
        f.write_all(&(info.data_bytes as u32).to_le_bytes())?;
    }
    f.sync_all()?;
    info.size_was_valid = true;
    Ok(info)
}

#[inline]
fn encode_sample(fmt: SampleFormat, v: f32, out: &mut Vec<u8>) {
    let v = if v.is_finite() { v } else { 0.0 };
    match fmt {
        SampleFormat::F32 => out.extend_from_slice(&v.to_le_bytes()),
        SampleFormat::F64 => out.extend_from_slice(&(v as f64).to_le_bytes()),
        SampleFormat::I16 => {
            let s = (v.clamp(-1.0, 1.0) * 32_767.0).round() as i16;
            out.extend_from_slice(&s.to_le_bytes());
        }
        SampleFormat::I24 => {
            let s = (v.clamp(-1.0, 1.0) * 8_388_607.0).round() as i32;
            out.extend_from_slice(&s.to_le_bytes()[..3]);
        }
        SampleFormat::I32 => {
            let s = (v.clamp(-1.0, 1.0) as f64 * 2_147_483_647.0).round() as i32;
            out.extend_from_slice(&s.to_le_bytes());
        }
        SampleFormat::U8 => out.push(((v.clamp(-1.0, 1.0) * 127.0).round() as i32 + 128) as u8),
    }
}
