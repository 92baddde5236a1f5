//! Everything else symphonia can decode, as a planar f32 [`AudioSource`].

use std::fs::File;
use std::path::Path;

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::{AudioFileError, AudioSource, Result, MAX_CHANNELS};

pub struct SymphoniaSource {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track: u32,
    channels: usize,
    rate: u32,
    frames: Option<u64>,
    /// Decoded frames not yet handed out, planar.
    pending: Vec<Vec<f32>>,
    interleaved: Vec<f32>,
    path: std::path::PathBuf,
    /// A symphonia call panicked: its state is not to be trusted again.
    poisoned: bool,
}

/// Runs a symphonia call, turning a panic into a format error. Its
/// parsers are not all hardened: the fuzzer (benches/fuzz.sh) found an
/// arithmetic overflow in its WAV `fmt` parsing on a hostile header
/// (tests/fixtures/crashers/), which must fail the file, not the process.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(AudioFileError::Format {
            path: path.to_path_buf(),
            reason: "the decoder failed on this file (a malformed stream)".into(),
        })
    })
}

impl SymphoniaSource {
    pub fn open(path: &Path) -> Result<Self> {
        guarded(path, || Self::open_unguarded(path))
    }

    fn open_unguarded(path: &Path) -> Result<Self> {
        let err = |reason: String| AudioFileError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|source| AudioFileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| err(e.to_string()))?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| err("no audio track".into()))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| err("no audio codec parameters".into()))?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| err(e.to_string()))?;
        let channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
        let rate = params.sample_rate.unwrap_or(0);
        if channels == 0 || channels > MAX_CHANNELS as usize || rate == 0 {
            return Err(err(format!("{channels} channels at {rate} Hz")));
        }
        let frames = track.num_frames;
        let track_id = track.id;
        Ok(SymphoniaSource {
            format,
            decoder,
            track: track_id,
            channels,
            rate,
            frames,
            pending: vec![Vec::new(); channels],
            interleaved: Vec::new(),
            path: path.to_path_buf(),
            poisoned: false,
        })
    }

    fn decode_more(&mut self) -> Result<bool> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(false),
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false)
                }
                Err(e) => {
                    return Err(AudioFileError::Format {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })
                }
            };
            if packet.track_id != self.track {
                continue;
            }
            match self.decoder.decode(&packet) {
                Ok(buf) => {
                    if buf.spec().channels().count() != self.channels {
                        return Err(AudioFileError::ChannelMismatch {
                            expected: self.channels,
                            actual: buf.spec().channels().count(),
                        });
                    }
                    self.interleaved.resize(buf.samples_interleaved(), 0.0);
                    buf.copy_to_slice_interleaved(&mut self.interleaved);
                    for fr in self.interleaved.chunks_exact(self.channels) {
                        for (c, v) in fr.iter().enumerate() {
                            self.pending[c].push(*v);
                        }
                    }
                    return Ok(true);
                }
                // A corrupt packet is skipped, as players do.
                Err(SymError::DecodeError(_)) => continue,
                Err(e) => {
                    return Err(AudioFileError::Format {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
}

impl AudioSource for SymphoniaSource {
    fn channels(&self) -> usize {
        self.channels
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn frames(&self) -> Option<u64> {
        self.frames
    }

    fn read_planar(&mut self, max: usize, out: &mut [Vec<f32>]) -> Result<usize> {
        if out.len() != self.channels {
            return Err(AudioFileError::ChannelMismatch {
                expected: self.channels,
                actual: out.len(),
            });
        }
        if self.poisoned {
            return Err(AudioFileError::Format {
                path: self.path.clone(),
                reason: "the decoder failed on this file earlier".into(),
            });
        }
        while self.pending[0].len() < max {
            let path = self.path.clone();
            match guarded(&path, || self.decode_more()) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.poisoned = matches!(e, AudioFileError::Format { .. });
                    return Err(e);
                }
            }
        }
        let n = self.pending[0].len().min(max);
        for (o, p) in out.iter_mut().zip(self.pending.iter_mut()) {
            o.clear();
            o.extend(p.drain(..n));
        }
        Ok(n)
    }
}
