//! Pass 1's render, kept on disk for pass 2.
//!
//! Without it, pass 2 reads and renders the whole input again: for an hour
//! of a 16-channel 24-bit recording that is 7.8 GB read and converted and
//! an order-3 render, about a third of the job's CPU besides the encoders.
//! The spill holds only what the encoders take (binaural and stereo, and
//! the first-order bus when the preset has an ambisonic rendition) as
//! 32-bit floats, so pass 2 encodes exactly what pass 1 measured.
//!
//! It is written only when the input's length is known and the disk holds
//! it with the recording threshold to spare; a write that fails anyway
//! (the disk filled behind our back) drops the spill and pass 2 renders
//! again, as it did before there was one.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::render::Spatializer;

/// The spill's file name inside the partial folder (never published).
const NAME: &str = "pass1.f32";

/// Bytes of one block's header: the frames in the block (u32) and the
/// input frames read once it was rendered (u64).
const HEADER: usize = 12;

/// Which of the spatializer's outputs a spill keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// Binaural and stereo (four channels) and, when set, the first-order
    /// bus (four more).
    pub first_order: bool,
}

impl Layout {
    pub(super) fn channels(self) -> usize {
        if self.first_order {
            8
        } else {
            4
        }
    }

    /// The spill's size for `frames` of input plus the filter's tail,
    /// rendered in blocks of `block` frames.
    pub(super) fn bytes(self, frames: u64, block: usize, taps: usize) -> u64 {
        let out = frames + taps as u64;
        let blocks = out.div_ceil(block.max(1) as u64) + 1;
        out * self.channels() as u64 * 4 + blocks * HEADER as u64
    }
}

/// Whether a spill of `bytes` fits in `dir` with `keep_mb` to spare.
pub(super) fn fits(dir: &Path, bytes: u64, keep_mb: u64) -> bool {
    crate::daemon::recording::free_mb(dir)
        .map(|free| free.saturating_sub(bytes.div_ceil(1 << 20)) >= keep_mb)
        .unwrap_or(false)
}

/// Pass 1's side: every rendered block, appended.
pub(super) struct SpillWriter {
    out: BufWriter<File>,
    path: PathBuf,
    layout: Layout,
    bytes: Vec<u8>,
}

impl SpillWriter {
    pub(super) fn create(dir: &Path, layout: Layout) -> Result<SpillWriter> {
        let path = dir.join(NAME);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(SpillWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            layout,
            bytes: Vec::new(),
        })
    }

    /// Append the first `n` frames of the block the spatializer holds.
    pub(super) fn write(&mut self, sp: &Spatializer, n: usize) -> Result<()> {
        let (bl, br) = sp.binaural();
        let (sl, sr) = sp.stereo();
        let [w, y, z, x] = sp.first_order();
        let chans = [bl, br, sl, sr, w, y, z, x];
        self.write_block(n, sp.frames_in(), &chans[..self.layout.channels()])
    }

    /// Append the first `n` frames of `chans` (the layout's channels, in
    /// order), rendered once `frames_in` input frames were read.
    fn write_block(&mut self, n: usize, frames_in: u64, chans: &[&[f32]]) -> Result<()> {
        self.bytes.clear();
        self.bytes.extend_from_slice(&(n as u32).to_le_bytes());
        self.bytes.extend_from_slice(&frames_in.to_le_bytes());
        for c in chans {
            for v in &c[..n] {
                self.bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.out
            .write_all(&self.bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Flush it all, for the reader.
    pub(super) fn finish(mut self) -> Result<PathBuf> {
        match self.out.flush() {
            Ok(()) => Ok(self.path),
            Err(e) => {
                let path = self.path.clone();
                self.abandon();
                Err(e).with_context(|| format!("cannot write {}", path.display()))
            }
        }
    }

    /// Give up on it: the file goes, pass 2 renders again.
    pub(super) fn abandon(self) {
        let path = self.path.clone();
        drop(self);
        let _ = std::fs::remove_file(path);
    }
}

/// Pass 2's side: the blocks back, in order.
pub(super) struct SpillReader {
    input: BufReader<File>,
    path: PathBuf,
    layout: Layout,
    chans: Vec<Vec<f32>>,
    bytes: Vec<u8>,
    frames_in: u64,
}

impl SpillReader {
    pub(super) fn open(path: PathBuf, layout: Layout) -> Result<SpillReader> {
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(SpillReader {
            input: BufReader::with_capacity(1 << 20, file),
            path,
            layout,
            chans: vec![Vec::new(); layout.channels()],
            bytes: Vec::new(),
            frames_in: 0,
        })
    }

    /// Input frames read when the current block was rendered.
    pub(super) fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// The next block: `Some(n)` frames, `None` after the last.
    pub(super) fn next_block(&mut self) -> Result<Option<usize>> {
        let mut head = [0u8; HEADER];
        match self.input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                for c in &mut self.chans {
                    c.clear();
                }
                return Ok(None);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
            }
        }
        let n = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        self.frames_in = u64::from_le_bytes(head[4..].try_into().expect("8 bytes"));
        self.bytes.resize(n * 4 * self.layout.channels(), 0);
        self.input
            .read_exact(&mut self.bytes)
            .with_context(|| format!("{} ends inside a block", self.path.display()))?;
        for (i, c) in self.chans.iter_mut().enumerate() {
            let raw = &self.bytes[i * n * 4..(i + 1) * n * 4];
            c.clear();
            c.extend(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            );
        }
        Ok(Some(n))
    }

    pub(super) fn binaural(&self) -> (&[f32], &[f32]) {
        (&self.chans[0], &self.chans[1])
    }

    pub(super) fn stereo(&self) -> (&[f32], &[f32]) {
        (&self.chans[2], &self.chans[3])
    }

    /// The first-order bus; empty when the spill has none (no rendition
    /// asks for it then).
    pub(super) fn first_order(&self) -> [&[f32]; 4] {
        match self.chans.get(4..8) {
            Some(c) => [&c[0], &c[1], &c[2], &c[3]],
            None => [&[], &[], &[], &[]],
        }
    }
}

impl Drop for SpillReader {
    fn drop(&mut self) {
        // Pass 2 is the spill's only reader; the partial folder is
        // published without it.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_covers_the_blocks_and_their_headers() {
        let l = Layout { first_order: false };
        assert_eq!(l.bytes(0, 1024, 0), HEADER as u64);
        // 2048 frames + 512 taps = 2560 frames in 3 blocks (+1 spare).
        assert_eq!(l.bytes(2048, 1024, 512), 2560 * 16 + 4 * HEADER as u64);
        assert_eq!(Layout { first_order: true }.channels(), 8);
    }

    /// What goes in comes back bit for bit, block by block, with the
    /// input position; the reader removes the file when done.
    #[test]
    fn blocks_come_back_as_written() {
        let dir = std::env::temp_dir().join(format!("spill-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for first_order in [false, true] {
            let layout = Layout { first_order };
            let c = layout.channels();
            let mut w = SpillWriter::create(&dir, layout).unwrap();
            let blocks: Vec<Vec<Vec<f32>>> = [5usize, 3, 0, 7]
                .iter()
                .enumerate()
                .map(|(b, &n)| {
                    (0..c)
                        .map(|ch| {
                            (0..n)
                                .map(|i| (b * 1000 + ch * 10 + i) as f32 * -0.1)
                                .collect()
                        })
                        .collect()
                })
                .collect();
            for (b, chans) in blocks.iter().enumerate() {
                // One frame more in each slice than the block holds: only
                // `n` go in.
                let padded: Vec<Vec<f32>> = chans
                    .iter()
                    .map(|v| v.iter().copied().chain([f32::NAN]).collect())
                    .collect();
                let refs: Vec<&[f32]> = padded.iter().map(Vec::as_slice).collect();
                w.write_block(chans[0].len(), 100 * b as u64, &refs)
                    .unwrap();
            }
            let path = w.finish().unwrap();
            let mut r = SpillReader::open(path.clone(), layout).unwrap();
            for (b, chans) in blocks.iter().enumerate() {
                assert_eq!(r.next_block().unwrap(), Some(chans[0].len()));
                assert_eq!(r.frames_in(), 100 * b as u64);
                let (bl, br) = r.binaural();
                let (sl, sr) = r.stereo();
                let fo = r.first_order();
                let got: Vec<&[f32]> = [bl, br, sl, sr].into_iter().chain(fo).collect();
                for (ch, want) in chans.iter().enumerate() {
                    assert_eq!(got[ch], &want[..], "block {b} channel {ch}");
                }
                if !first_order {
                    assert!(fo.iter().all(|c| c.is_empty()));
                }
            }
            assert_eq!(r.next_block().unwrap(), None);
            drop(r);
            assert!(!path.exists());
        }
        // A file cut inside a block is an error, not a short block.
        let layout = Layout { first_order: false };
        let mut w = SpillWriter::create(&dir, layout).unwrap();
        let one: &[f32] = &[1.0; 4];
        w.write_block(4, 4, &[one; 4]).unwrap();
        let path = w.finish().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let mut r = SpillReader::open(path, layout).unwrap();
        assert!(r.next_block().is_err());
        drop(r);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
