//! `studiocast transcode`: a recording becomes an HLS lesson, as fast as
//! the machine allows, through the live path's parts: the spatial engine
//! (binaural and the stereo downmix), AAC encoders, the same worker and
//! packager that write a session's VOD.
//!
//! Two passes over the input, so that memory does not grow with its
//! length: the first renders and measures EBU R128 loudness per
//! rendition; the second renders again, applies one gain per rendition
//! (and a limiter only where that gain would take the true peak over the
//! ceiling), resamples to the preset's rate and encodes. The lesson is
//! written to a hidden folder beside the destination and renamed into
//! place at the end: a half-written lesson is never visible.
//!
//! A file with a picture also gets the preset's video ladder, decoded once
//! and encoded during the second pass ([`studiocast_media::FileEncoder`]),
//! and a poster frame.

mod ambisonic;
pub mod loudness;
mod output;
mod progress;
mod resample;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ambisonic::AmbiChain;
use anyhow::{bail, Context, Result};
use clap::Args;
pub use output::partial_prefix;
use output::{partial_dir, publish};
use serde::Serialize;
use studiocast_media::spec::{Latency, Mix, PipelineSpec, Renderer};
use studiocast_media::{
    lossless_event_queue, probe_video, EventSender, FileEncoder, GstAudioSource, VideoInfo,
};

use crate::config::Config;
use crate::daemon::live::LiveSet;
use crate::render::{SpatialArgs, Spatializer};
use loudness::{GainPlan, Limiter, Measured, Meter};
pub use progress::Progress;
use resample::StereoResampler;

#[derive(Debug, Args)]
pub struct TranscodeArgs {
    /// The recording (WAV/RF64/W64, FLAC, CAF, MKV, … anything `render` reads).
    pub input: PathBuf,
    /// The lesson's folder (must not exist): master.m3u8 and one folder
    /// per rendition, playable from any file server.
    #[arg(long)]
    pub out: PathBuf,
    /// The preset (a pipelines/*.toml name) whose audio renditions, rate,
    /// segment length and (for a file with a picture) video ladder the
    /// lesson gets.
    #[arg(long, default_value = "lesson")]
    pub preset: String,
    /// Where presets are (default: the config's `[server] pipelines_dir`).
    #[arg(long)]
    pub pipelines: Option<PathBuf>,
    /// Integrated loudness target of every rendition, LUFS.
    #[arg(long, default_value_t = -16.0, allow_hyphen_values = true)]
    pub loudness: f64,
    /// True-peak ceiling, dBTP.
    #[arg(long, default_value_t = -1.0, allow_hyphen_values = true)]
    pub true_peak: f64,
    /// Who may play the lesson when a daemon serves it (`access.json` in
    /// the folder): `private` needs a playback token on every URL. Default:
    /// the preset's `visibility`.
    #[arg(long, value_enum)]
    pub visibility: Option<crate::jobs::Visibility>,
    #[command(flatten)]
    pub spatial: SpatialArgs,
    /// Progress as JSON lines on stdout (`{"progress": %, "eta": s}`), for
    /// the daemon's job workers, which run transcodes as child processes.
    #[arg(long, hide = true)]
    pub progress_json: bool,
}

/// What `loudness.json` in the lesson says, per rendition.
#[derive(Debug, Serialize)]
pub struct RenditionLoudness {
    pub id: String,
    pub mix: &'static str,
    /// Before normalisation (`null`: silent).
    pub measured: Option<Measured>,
    pub gain_db: f64,
    pub limited: bool,
    /// After normalisation, before the AAC encoder.
    pub output: Option<Measured>,
}

/// The outcome of one transcode.
#[derive(Debug, Serialize)]
pub struct Report {
    pub input_seconds: f64,
    pub wall_seconds: f64,
    /// Of which pass 1 (render and measure).
    pub measure_seconds: f64,
    pub renditions: Vec<RenditionLoudness>,
    /// The video ladder's rungs, largest first (none without a picture).
    pub video: Vec<String>,
    /// Whether `poster.jpg` was written.
    pub poster: bool,
}

/// Why a transcode did not finish: the input (no retry helps), the output
/// side (a full disk, a failed encoder: worth a retry), or a cancel.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("{0:#}")]
    Input(anyhow::Error),
    #[error("{0:#}")]
    Output(anyhow::Error),
    #[error("cancelled")]
    Cancelled,
}

impl TranscodeError {
    /// The process's exit code: 2 for the input (as every other command's
    /// errors), 3 for the output side (worth a retry), 4 for a cancel.
    pub fn exit_code(&self) -> u8 {
        match self {
            TranscodeError::Input(_) => 2,
            TranscodeError::Output(_) => 3,
            TranscodeError::Cancelled => 4,
        }
    }
}

pub fn run(cfg: &Config, a: TranscodeArgs) -> Result<()> {
    let mut progress = if a.progress_json {
        Progress::json()
    } else {
        Progress::new()
    };
    let report = transcode(cfg, &a, &mut progress)?;
    eprintln!(
        "transcoded {:.1} s in {:.1} s ({:.1}x real time; measuring {:.1} s) to {}",
        report.input_seconds,
        report.wall_seconds,
        report.input_seconds / report.wall_seconds.max(1e-9),
        report.measure_seconds,
        a.out.display()
    );
    for r in &report.renditions {
        if let Some(o) = r.output {
            eprintln!(
                "  {}: {:.1} LUFS, {:.1} dBTP (gain {:+.1} dB{})",
                r.id,
                o.integrated_lufs,
                o.true_peak_dbtp,
                r.gain_db,
                if r.limited { ", limited" } else { "" }
            );
        }
    }
    Ok(())
}

/// The preset, as a file job uses it: its audio renditions, rate and
/// segment length, and its video ladder when the file has a picture;
/// standard latency (a VOD has no parts).
pub fn load_preset(dir: &Path, name: &str, picture: bool) -> Result<PipelineSpec> {
    let safe = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !safe {
        bail!("invalid preset name {name:?}");
    }
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no preset {name} ({})", path.display()))?;
    let mut spec = PipelineSpec::parse(&text).with_context(|| format!("preset {name}"))?;
    spec.latency = Latency::Standard;
    if !picture {
        spec.video = None;
    }
    Ok(spec)
}

/// Run one transcode; `progress` hears of each block (and may cancel it).
pub fn transcode(
    cfg: &Config,
    a: &TranscodeArgs,
    progress: &mut Progress,
) -> Result<Report, TranscodeError> {
    let t0 = Instant::now();
    let ((spec, measured, rate, in_ch, picture), first_order_peak) =
        prepare(cfg, a, progress).map_err(TranscodeError::Input)?;
    let plans: Vec<GainPlan> = spec
        .audio
        .renditions
        .iter()
        .map(|r| {
            let plan = loudness::plan(measured[mix_index(r.mix)], a.loudness, a.true_peak);
            match r.mix {
                Mix::Ambisonic => ambisonic::plan(plan, first_order_peak),
                _ => plan,
            }
        })
        .collect();
    let measure_seconds = t0.elapsed().as_secs_f64();
    // Pass 2: render, normalise, resample, encode, package.
    let partial = partial_dir(&a.out).map_err(TranscodeError::Output)?;
    progress.phase("encoding", 1);
    let input = Input {
        in_ch,
        rate,
        picture,
    };
    let done = encode(cfg, a, &spec, &plans, &input, &partial, progress).and_then(|out| {
        let report = Report {
            input_seconds: out.frames_in as f64 / f64::from(rate),
            wall_seconds: t0.elapsed().as_secs_f64(),
            measure_seconds,
            renditions: spec
                .audio
                .renditions
                .iter()
                .zip(&plans)
                .zip(out.meters)
                .map(|((r, p), out)| {
                    // Nobody hears the ambisonic rendition as it is: it has
                    // no loudness of its own.
                    let measured = measured[mix_index(r.mix)].filter(|_| r.mix != Mix::Ambisonic);
                    RenditionLoudness {
                        id: r.id.clone(),
                        mix: mix_name(r.mix),
                        measured,
                        gain_db: p.gain_db,
                        limited: p.limited,
                        output: if p.limited {
                            out
                        } else {
                            measured.map(|m| loudness::with_gain(m, p.gain_db))
                        },
                    }
                })
                .collect(),
            video: spec
                .video
                .iter()
                .flat_map(|v| v.renditions.iter().map(|r| r.id.clone()))
                .collect(),
            poster: out.poster.is_some(),
        };
        let visibility = a
            .visibility
            .map(Into::into)
            .unwrap_or_else(|| crate::visibility_of(&spec));
        studiocast_server::access::write_access(&partial, visibility)
            .context("cannot write the lesson's access file")?;
        publish(&partial, &a.out, &spec, &report, out.poster.as_deref())?;
        Ok(report)
    });
    done.map_err(|e| {
        let _ = std::fs::remove_dir_all(&partial);
        // A file that turns out undecodable half way is still the input's
        // fault: a retry would only fail again.
        let input = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<studiocast_media::MediaError>(),
                Some(studiocast_media::MediaError::BadFile(_))
            ) || c.is::<studiocast_audiofile::AudioFileError>()
        });
        if input {
            TranscodeError::Input(e)
        } else {
            TranscodeError::Output(e)
        }
    })
}

/// The input's sound: through GStreamer for a file with a picture (its
/// demuxers honour the edit list and read what cameras write), the
/// project's reader and symphonia otherwise.
fn open_audio(input: &Path, picture: bool) -> Result<Box<dyn studiocast_audiofile::AudioSource>> {
    let opened: Result<Box<dyn studiocast_audiofile::AudioSource>> = if picture {
        GstAudioSource::open(input)
            .map(|s| Box::new(s) as Box<dyn studiocast_audiofile::AudioSource>)
            .map_err(anyhow::Error::from)
    } else {
        studiocast_audiofile::open(input).map_err(anyhow::Error::from)
    };
    opened.with_context(|| format!("cannot read input {}", input.display()))
}

/// What pass 2 needs to know of the input.
struct Input {
    in_ch: usize,
    rate: u32,
    picture: Option<VideoInfo>,
}

/// The preset, the pass-1 loudness of each mix, the rate, the channels,
/// and the picture (if the file has one; the preset may have no ladder).
type Prepared = (
    PipelineSpec,
    [Option<Measured>; 2],
    u32,
    usize,
    Option<VideoInfo>,
);

/// Everything about the input, checked before any output exists: the
/// preset, the file (and whether it has a picture), the spatial set-up,
/// and pass 1 (the loudness of each mix as rendered).
fn prepare(cfg: &Config, a: &TranscodeArgs, progress: &mut Progress) -> Result<(Prepared, f32)> {
    let dir = a
        .pipelines
        .clone()
        .unwrap_or(cfg.server.pipelines_dir.clone());
    if a.out.exists() {
        bail!("{} already exists", a.out.display());
    }
    let picture = probe_video(&a.input)?;
    let mut src = open_audio(&a.input, picture.is_some())?;
    let spec = load_preset(&dir, &a.preset, picture.is_some())?;
    // The ambisonic rendition is the scene as recorded, for the player to
    // turn; a rotation given here would turn the binaural mix only, and
    // the two would disagree on where the front is.
    let turned = [a.spatial.yaw, a.spatial.pitch, a.spatial.roll] != [0.0; 3];
    if turned
        && spec
            .audio
            .renditions
            .iter()
            .any(|r| r.mix == Mix::Ambisonic)
    {
        bail!(
            "preset {} has an ambisonic rendition, which keeps the recording's own \
             front: --yaw, --pitch and --roll would turn the binaural mix alone",
            a.preset
        );
    }
    let (rate, in_ch) = (src.sample_rate(), src.channels());
    progress.phase("measuring", 0);
    // The ladder's encode dwarfs the audio's measuring pass.
    progress.first_share = if spec.video.is_some() { 0.05 } else { 0.5 };
    progress.total = src.frames();
    let (measured, peak) = measure(cfg, a, &spec, in_ch, rate, src.as_mut(), progress)?;
    Ok(((spec, measured, rate, in_ch, picture), peak))
}

/// Which of pass 1's measurements applies to a mix (the ambisonic
/// rendition follows the binaural one).
fn mix_index(m: Mix) -> usize {
    match m {
        Mix::Binaural | Mix::Ambisonic => 0,
        Mix::Stereo => 1,
    }
}

fn mix_name(m: Mix) -> &'static str {
    match m {
        Mix::Binaural => "binaural",
        Mix::Stereo => "stereo",
        Mix::Ambisonic => "ambisonic",
    }
}

/// The spatial set-up with the preset's renderer: a preset with
/// `renderer = "parametric"` renders a file job's first-order input as it
/// renders a live session's (an explicit `--method` wins).
fn preset_spatial(a: &SpatialArgs, spec: &PipelineSpec) -> SpatialArgs {
    let mut s = a.clone();
    if s.method.is_none() && spec.audio.renderer == Renderer::Parametric {
        s.method = Some("parametric".into());
    }
    s
}

/// Pass 1: the integrated loudness of the binaural and stereo mixes.
fn measure(
    cfg: &Config,
    a: &TranscodeArgs,
    spec: &PipelineSpec,
    in_ch: usize,
    rate: u32,
    src: &mut dyn studiocast_audiofile::AudioSource,
    progress: &mut Progress,
) -> Result<([Option<Measured>; 2], f32)> {
    let mut sp = Spatializer::new(
        &cfg.spatial,
        &preset_spatial(&a.spatial, spec),
        in_ch,
        rate,
        true,
    )?;
    // The first-order bus's sample peak: the ambisonic rendition's gain
    // must keep it under full scale (Opus takes 16-bit samples).
    let mut peak = 0f32;
    // Each mix is metered on its own thread: R128 with its true-peak scan
    // costs more than the render, and this pass has no encoder running.
    let (binaural, to_binaural) = MeterThread::start(rate)?;
    let (stereo, to_stereo) = MeterThread::start(rate)?;
    while let Some(n) = sp.next_block(src)? {
        let (l, r) = sp.binaural();
        to_binaural.send(&l[..n], &r[..n])?;
        let (l, r) = sp.stereo();
        to_stereo.send(&l[..n], &r[..n])?;
        for c in sp.first_order() {
            peak = c[..n].iter().fold(peak, |p, v| p.max(v.abs()));
        }
        progress.at(sp.frames_in())?;
    }
    drop((to_binaural, to_stereo));
    let (binaural, stereo) = (binaural.finish()?, stereo.finish()?);
    // Less than a tenth of a second would give no whole AAC frames past the
    // encoder's priming: a lesson with nothing in it. The input's fault,
    // so never retried.
    if sp.frames_in() < u64::from(rate / 10) {
        let ms = sp.frames_in() * 1000 / u64::from(rate.max(1));
        return Err(studiocast_media::MediaError::BadFile(format!(
            "{} holds {ms} ms of audio; a lesson needs at least 100 ms",
            a.input.display()
        ))
        .into());
    }
    Ok(([binaural, stereo], peak))
}

/// A [`Meter`] on its own thread, fed blocks through a short queue whose
/// buffers come back for reuse (memory stays a few blocks).
struct MeterThread(std::thread::JoinHandle<Result<Option<Measured>, String>>);

struct MeterFeed {
    blocks: std::sync::mpsc::SyncSender<Vec<f32>>,
    spare: std::sync::mpsc::Receiver<Vec<f32>>,
}

impl MeterThread {
    fn start(rate: u32) -> Result<(MeterThread, MeterFeed)> {
        let (blocks, rx) = std::sync::mpsc::sync_channel::<Vec<f32>>(8);
        let (back, spare) = std::sync::mpsc::channel();
        let mut meter = Meter::new(rate).map_err(anyhow::Error::msg)?;
        let handle = std::thread::Builder::new()
            .name("transcode-meter".into())
            .spawn(move || {
                // A failure is kept and the queue drained, so the sender
                // never sees a closed queue instead of the real error.
                let mut failed = None;
                for buf in rx {
                    let n = buf.len() / 2;
                    if failed.is_none() {
                        failed = meter.add(&buf[..n], &buf[n..]).err();
                    }
                    let _ = back.send(buf);
                }
                failed.map_or_else(|| Ok(meter.result()), Err)
            })?;
        Ok((MeterThread(handle), MeterFeed { blocks, spare }))
    }

    fn finish(self) -> Result<Option<Measured>> {
        self.0
            .join()
            .map_err(|_| anyhow::anyhow!("the loudness meter panicked"))?
            .map_err(anyhow::Error::msg)
    }
}

impl MeterFeed {
    /// Queue one block (left then right in one buffer).
    fn send(&self, l: &[f32], r: &[f32]) -> Result<()> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(l);
        buf.extend_from_slice(r);
        self.blocks
            .send(buf)
            .map_err(|_| anyhow::anyhow!("the loudness meter stopped"))
    }
}

struct Encoded {
    frames_in: u64,
    /// The poster frame (JPEG), for a file with a picture.
    poster: Option<Vec<u8>>,
    /// Each rendition's loudness as encoded.
    meters: Vec<Option<Measured>>,
}

/// What follows the spatial engine, per rendition.
enum Chains {
    Stereo(Box<Chain>),
    Ambi(Box<AmbiChain>),
}

/// One stereo rendition's chain after the spatial engine.
struct Chain {
    gain: f32,
    limiter: Option<Limiter>,
    /// Frames of limiter delay still to drop from the start.
    skip: usize,
    /// The limited signal's loudness; `None` without a limiter, where the
    /// gain alone moves every measured value by exactly `gain_db`.
    meter: Option<Meter>,
    resampler: Option<StereoResampler>,
    l: Vec<f32>,
    r: Vec<f32>,
    interleaved: Vec<f32>,
}

impl Chain {
    fn new(plan: &GainPlan, a: &TranscodeArgs, rate: u32, out_rate: u32) -> Result<Chain> {
        let limiter = plan
            .limited
            .then(|| Limiter::new(rate, a.true_peak - loudness::INTERSAMPLE_MARGIN_DB));
        Ok(Chain {
            gain: loudness::db_to_gain(plan.gain_db),
            skip: limiter.as_ref().map_or(0, Limiter::latency),
            limiter,
            meter: plan
                .limited
                .then(|| Meter::new(rate))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            resampler: (rate != out_rate)
                .then(|| StereoResampler::new(rate, out_rate))
                .transpose()?,
            l: Vec::new(),
            r: Vec::new(),
            interleaved: Vec::new(),
        })
    }

    /// Gain, limiter, meter and resampler over one block; the result is
    /// left in `interleaved`.
    fn run(&mut self, l: &[f32], r: &[f32], flush: bool) -> Result<()> {
        self.l.clear();
        self.r.clear();
        self.l.extend(l.iter().map(|v| v * self.gain));
        self.r.extend(r.iter().map(|v| v * self.gain));
        if let Some(lim) = &mut self.limiter {
            if flush {
                // Push the look-ahead's worth of silence to get the last
                // frames out.
                let d = lim.latency();
                self.l.resize(self.l.len() + d, 0.0);
                self.r.resize(self.r.len() + d, 0.0);
            }
            lim.process(&mut self.l, &mut self.r);
            let drop = self.skip.min(self.l.len());
            self.l.drain(..drop);
            self.r.drain(..drop);
            self.skip -= drop;
        }
        if let Some(m) = &mut self.meter {
            m.add(&self.l, &self.r).map_err(anyhow::Error::msg)?;
        }
        if let Some(rs) = &mut self.resampler {
            let (l, r) = rs.process(&self.l, &self.r, flush)?;
            interleave(l, r, &mut self.interleaved);
        } else {
            interleave(&self.l, &self.r, &mut self.interleaved);
        }
        Ok(())
    }
}

fn interleave(l: &[f32], r: &[f32], out: &mut Vec<f32>) {
    out.clear();
    for (a, b) in l.iter().zip(r) {
        out.push(*a);
        out.push(*b);
    }
}

/// Where in a file the poster frame is taken: a tenth of the way in (past
/// titles and a black lead-in), at most a minute.
fn poster_time(v: &VideoInfo) -> std::time::Duration {
    v.duration
        .map_or(std::time::Duration::ZERO, |d| d / 10)
        .min(std::time::Duration::from_secs(60))
}

impl Chains {
    fn new(plan: &GainPlan, mix: Mix, a: &TranscodeArgs, rate: u32, out_rate: u32) -> Result<Self> {
        Ok(match mix {
            Mix::Ambisonic => Chains::Ambi(Box::new(AmbiChain::new(plan.gain_db, rate, out_rate)?)),
            _ => Chains::Stereo(Box::new(Chain::new(plan, a, rate, out_rate)?)),
        })
    }

    /// The first `n` frames of the block the spatializer holds through
    /// this rendition's chain; what to encode.
    fn run(&mut self, sp: &Spatializer, mix: Mix, n: usize, flush: bool) -> Result<&[f32]> {
        match self {
            Chains::Ambi(c) => {
                c.run(sp.first_order(), n, flush)?;
                Ok(&c.interleaved)
            }
            Chains::Stereo(c) => {
                let (l, r) = match mix {
                    Mix::Stereo => sp.stereo(),
                    _ => sp.binaural(),
                };
                c.run(&l[..n], &r[..n], flush)?;
                Ok(&c.interleaved)
            }
        }
    }

    /// The loudness as encoded, when a limiter made it differ from the
    /// plan.
    fn measured(&self) -> Option<Measured> {
        match self {
            Chains::Stereo(c) => c.meter.as_ref().and_then(Meter::result),
            Chains::Ambi(_) => None,
        }
    }
}

/// The video's share of the work: its encoded position over its length;
/// unknown without a length (a recorder's WebM, some TS).
fn video_fraction(
    at: Option<std::time::Duration>,
    length: Option<std::time::Duration>,
) -> Option<f64> {
    match (at, length) {
        (Some(at), Some(len)) if !len.is_zero() => {
            Some((at.as_secs_f64() / len.as_secs_f64()).min(1.0))
        }
        (_, Some(_)) => Some(0.0),
        _ => None,
    }
}

/// What pass 2 reads from and writes to.
struct Pass2<'a> {
    spec: &'a PipelineSpec,
    src: Box<dyn studiocast_audiofile::AudioSource>,
    sp: Spatializer,
    chains: Vec<Chains>,
    /// The input's file and where its poster is taken, when the lesson
    /// has a picture.
    video: Option<(&'a Path, std::time::Duration)>,
    length: Option<std::time::Duration>,
}

impl Pass2<'_> {
    /// Render, encode and hand every chunk to the packager through `tx`;
    /// the poster frame (JPEG) when there is a picture.
    fn run(&mut self, tx: EventSender, progress: &mut Progress) -> Result<Option<Vec<u8>>> {
        let epoch = chrono::Utc::now().timestamp_millis();
        let mut enc = FileEncoder::start(self.spec, &tx, epoch, self.video)?;
        drop(tx);
        let mixes: Vec<Mix> = enc.mixes().to_vec();
        loop {
            let block = self.sp.next_block(self.src.as_mut())?;
            let flush = block.is_none();
            let n = block.unwrap_or(0);
            for (i, (chain, mix)) in self.chains.iter_mut().zip(&mixes).enumerate() {
                enc.push(i, chain.run(&self.sp, *mix, n, flush)?)?;
            }
            match self.video {
                Some(_) => {
                    let audio = progress.done_of(self.sp.frames_in());
                    let v = video_fraction(enc.video_position(), self.length);
                    progress.fraction(v.map_or(audio, |v| audio.min(v)))?;
                }
                None => progress.at(self.sp.frames_in())?,
            }
            if flush {
                break;
            }
        }
        let frame = enc.poster();
        let (video, length) = (self.video, self.length);
        enc.finish_with(|at| {
            // Without a length there is no fraction, but the job runner
            // still hears that the transcode is alive.
            let _ = match video_fraction(at, length).filter(|_| video.is_some()) {
                Some(v) => progress.fraction(v),
                None => progress.beat(),
            };
            true
        })?;
        Ok(frame.and_then(|p| p.jpeg()))
    }
}

/// A lesson with a segment that could not be written (a full disk for a
/// moment) is not a lesson: the worker went on past it, this fails.
fn write_failure(
    told: &mut tokio::sync::mpsc::UnboundedReceiver<crate::daemon::worker::Update>,
) -> Result<()> {
    while let Ok(u) = told.try_recv() {
        if let crate::daemon::worker::Update::WriteFailed { file, error } = u {
            bail!("cannot write {file}: {error}");
        }
    }
    Ok(())
}

/// Pass 2, into `partial`: the packaging worker on its own thread, fed by
/// the render and the encoders here.
fn encode(
    cfg: &Config,
    a: &TranscodeArgs,
    spec: &PipelineSpec,
    plans: &[GainPlan],
    input: &Input,
    partial: &Path,
    progress: &mut Progress,
) -> Result<Encoded> {
    let rate = input.rate;
    let chains = plans
        .iter()
        .zip(&spec.audio.renditions)
        .map(|(p, r)| Chains::new(p, r.mix, a, rate, spec.audio.sample_rate))
        .collect::<Result<Vec<_>>>()?;
    let mut pass = Pass2 {
        spec,
        src: open_audio(&a.input, input.picture.is_some())?,
        sp: Spatializer::new(
            &cfg.spatial,
            &preset_spatial(&a.spatial, spec),
            input.in_ch,
            rate,
            true,
        )?,
        chains,
        // (A preset without a ladder makes an audio lesson of a video file.)
        video: input
            .picture
            .as_ref()
            .filter(|_| spec.video.is_some())
            .map(|p| (a.input.as_path(), poster_time(p))),
        length: input.picture.as_ref().and_then(|p| p.duration),
    };
    // 16 MiB of chunks in flight at most; the encoders wait beyond that.
    let (tx, rx, _) = lossless_event_queue(16 << 20);
    let (updates, mut told) = tokio::sync::mpsc::unbounded_channel();
    let (dir, worker_spec) = (partial.to_path_buf(), spec.clone());
    let live = LiveSet::new(spec);
    let worker = std::thread::Builder::new()
        .name("transcode-pack".into())
        .spawn(move || crate::daemon::worker::run(dir, worker_spec, rx, updates, None, live))?;
    let result = pass.run(tx, progress);
    let packaged = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the packaging worker panicked"))?;
    let poster = result?;
    if let Some(e) = packaged {
        bail!("packaging failed: {e}");
    }
    write_failure(&mut told)?;
    Ok(Encoded {
        frames_in: pass.sp.frames_in(),
        poster,
        meters: pass.chains.iter().map(Chains::measured).collect(),
    })
}
