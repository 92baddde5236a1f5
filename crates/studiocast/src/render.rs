//! `studiocast render`: offline rendering of a file to binaural stereo.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use studiocast_audiofile::pcm::{PcmWriter, SampleFormat};
use studiocast_audiofile::AudioSource;
use studiocast_spatial::encoder::{BedEncoder, Layout, ObjectEncoder, StereoDownmix};
use studiocast_spatial::scene::Scene;
use studiocast_spatial::sh::{channels_for_order, check_order, AmbisonicFormat};
use studiocast_spatial::{
    BinauralRenderer, Engine, HrtfSet, ParametricOptions, ParametricRenderer, Quat, ShFilters,
};

use crate::config::{Config, SpatialConfig};
use crate::filters::FilterRequest;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InputFormat {
    /// ACN/SN3D ambisonics, (order+1)² channels.
    Ambix,
    /// ACN/N3D ambisonics.
    N3d,
    /// Furse–Malham first order (W X Y Z).
    Fuma,
    /// Loudspeaker bed (--layout).
    Bed,
    /// Mono objects placed by a scene file (--scene).
    Objects,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Input audio file (WAV/RF64/W64, FLAC, CAF, MKV, … anything symphonia reads).
    pub input: PathBuf,
    /// Output WAV (stereo, 32-bit float, input sample rate).
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub spatial: SpatialArgs,
}

/// What the input is and how it is rendered: shared by `render` and
/// `transcode` (and a job's spec, which uses the same names).
#[derive(Debug, Clone, Args)]
pub struct SpatialArgs {
    #[arg(long, value_enum)]
    pub input_format: InputFormat,
    /// Ambisonic order of the input, or the internal order for beds and objects.
    #[arg(long, default_value_t = 3)]
    pub order: usize,
    /// SOFA HRTF file (default: config, then Debian's MIT KEMAR).
    #[arg(long)]
    pub hrtf: Option<PathBuf>,
    /// Decoder design method: magls, ls or vls; or parametric (first order
    /// only, in `render`: direction and diffuseness per band, see the
    /// README's accuracy section).
    #[arg(long)]
    pub method: Option<String>,
    /// Scene rotation in degrees (yaw to the left, pitch up, roll left side up).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub yaw: f64,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub pitch: f64,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub roll: f64,
    /// Processing block in frames.
    #[arg(long)]
    pub block: Option<usize>,
    /// Loudspeaker layout for --input-format bed: stereo, 5.1, 7.1, 7.1.4.
    #[arg(long)]
    pub layout: Option<String>,
    /// Scene file for --input-format objects.
    #[arg(long)]
    pub scene: Option<PathBuf>,
    /// Apply max-rE weighting above the MagLS cutoff.
    #[arg(long)]
    pub max_re: bool,
    /// Headphone-EQ FIR (mono or stereo WAV at the input rate).
    #[arg(long)]
    pub headphone_eq: Option<PathBuf>,
}

/// How input channels become the AmbiX bus.
enum Router {
    Ambisonic(Vec<(usize, f32)>),
    Bed(BedEncoder),
    Objects(Scene, Vec<ObjectEncoder>),
}

pub fn run(cfg: &Config, a: RenderArgs) -> Result<()> {
    let t0 = Instant::now();
    let mut src = studiocast_audiofile::open(&a.input)
        .with_context(|| format!("cannot read input {}", a.input.display()))?;
    let rate = src.sample_rate();
    let in_ch = src.channels();
    let mut sp = Spatializer::new(&cfg.spatial, &a.spatial, in_ch, rate, false)?;
    let setup = t0.elapsed();
    let mut out = PcmWriter::create(&a.output, 2, rate, SampleFormat::F32)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    let t1 = Instant::now();
    while let Some(n) = sp.next_block(src.as_mut())? {
        let (l, r) = sp.binaural();
        out.write_planar(&[&l[..n], &r[..n]])?;
    }
    let frames = sp.frames_in();
    let written = out.finalize()?;
    let dt = t1.elapsed().as_secs_f64();
    let secs = frames as f64 / rate as f64;
    eprintln!(
        "rendered {:.2} s of {} channels at {} Hz ({} order {}, {} filters of {} taps, block {}) in {:.3} s: {:.0}x real time; set-up {:.2} s; wrote {} frames to {}",
        secs,
        in_ch,
        rate,
        sp.method,
        a.spatial.order,
        if sp.symmetric { "symmetric" } else { "two-ear" },
        sp.taps,
        sp.block,
        dt,
        secs / dt.max(1e-9),
        setup.as_secs_f64(),
        written,
        a.output.display()
    );
    Ok(())
}

fn make_router(a: &SpatialArgs, in_ch: usize, k: usize) -> Result<Router> {
    Ok(match a.input_format {
        InputFormat::Ambix | InputFormat::N3d | InputFormat::Fuma => {
            let fmt = match a.input_format {
                InputFormat::Ambix => AmbisonicFormat::AmbiX,
                InputFormat::N3d => AmbisonicFormat::AcnN3d,
                _ => AmbisonicFormat::FuMa,
            };
            let map = fmt.to_ambix_map(a.order)?;
            if in_ch != k {
                bail!(
                    "the input has {in_ch} channels but order {} ambisonics needs (N+1)² = {k}",
                    a.order
                );
            }
            Router::Ambisonic(map)
        }
        InputFormat::Bed => {
            let name = a
                .layout
                .as_deref()
                .context("--input-format bed needs --layout (stereo, 5.1, 7.1, 7.1.4)")?;
            let layout: Layout = name.parse()?;
            if in_ch != layout.channels() {
                bail!(
                    "layout {name} has {} channels but the input has {in_ch}",
                    layout.channels()
                );
            }
            Router::Bed(BedEncoder::new(layout, a.order)?)
        }
        InputFormat::Objects => {
            let path = a
                .scene
                .as_deref()
                .context("--input-format objects needs --scene FILE")?;
            let scene = load_scene(path)?;
            scene
                .validate(in_ch)
                .with_context(|| format!("invalid scene {}", path.display()))?;
            let encs = scene
                .objects
                .iter()
                .map(|_| ObjectEncoder::new(a.order))
                .collect::<Result<Vec<_>, _>>()?;
            Router::Objects(scene, encs)
        }
    })
}

pub fn load_scene(path: &Path) -> Result<Scene> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read scene {}", path.display()))?;
    if meta.len() > 16 << 20 {
        bail!("scene file {} is larger than 16 MiB", path.display());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read scene {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid scene {}", path.display()))
}

fn is_parametric(spatial: &SpatialConfig, a: &SpatialArgs) -> bool {
    a.method.as_deref().unwrap_or(&spatial.method) == "parametric"
}

fn make_engine(
    spatial: &SpatialConfig,
    a: &SpatialArgs,
    rate: u32,
    filters: &ShFilters,
    block: usize,
) -> Result<Engine> {
    let q = Quat::from_ypr_degrees(a.yaw, a.pitch, a.roll);
    if is_parametric(spatial, a) {
        let path = a.hrtf.clone().unwrap_or_else(|| spatial.hrtf.clone());
        let hrtf = HrtfSet::from_sofa(&path, rate)?;
        let mut e = ParametricRenderer::new(&hrtf, filters, &ParametricOptions::default())?;
        e.reset_rotation(q);
        return Ok(Engine::Parametric(Box::new(e)));
    }
    let mut e = BinauralRenderer::new(filters, block)?;
    e.reset_rotation(q);
    Ok(Engine::Linear(Box::new(e)))
}

fn make_filters(spatial: &SpatialConfig, a: &SpatialArgs, rate: u32) -> Result<ShFilters> {
    let parametric = is_parametric(spatial, a);
    let req = FilterRequest {
        hrtf: a.hrtf.clone().unwrap_or_else(|| spatial.hrtf.clone()),
        rate,
        order: a.order,
        // The parametric renderer corrects a first-order MagLS rendering.
        method: if parametric {
            studiocast_spatial::DecoderMethod::MagLs
        } else {
            a.method
                .as_deref()
                .unwrap_or(&spatial.method)
                .parse()
                .map_err(anyhow::Error::msg)?
        },
        max_re: a.max_re || spatial.max_re,
        headphone_eq: a
            .headphone_eq
            .clone()
            .or_else(|| spatial.headphone_eq.clone()),
    };
    crate::filters::filters(&req)
}

/// An input file's blocks through the spatial engine: the binaural render
/// and, when asked, the loudspeaker-stereo downmix of the same bus (what a
/// live session's two audio renditions carry). The filter tail is flushed
/// after the input ends.
pub struct Spatializer {
    router: Router,
    renderer: Engine,
    /// Rendered frames still to drop at the start (the renderer's latency).
    skip: usize,
    downmix: Option<StereoDownmix>,
    pub k: usize,
    pub block: usize,
    pub taps: usize,
    pub method: String,
    pub symmetric: bool,
    rate: u32,
    planes: Vec<Vec<f32>>,
    bus: Vec<f32>,
    out: [Vec<f32>; 4],
    total: u64,
    tail_left: usize,
    first: bool,
    /// The stereo downmix and first-order bus held back by the renderer's
    /// latency (a transcode with the parametric renderer).
    lag: Option<Lag>,
}

/// The parametric renderer's output comes `latency` samples late and is
/// taken out of the start; the other outputs of the same blocks (the
/// stereo downmix, the first-order bus) pass through this queue, which
/// hands out as many frames as the binaural output has each block, so
/// every rendition of a lesson covers the same input time.
struct Lag {
    queue: [Vec<f32>; 6],
    out: [Vec<f32>; 6],
}

impl Lag {
    fn new(block: usize, latency: usize) -> Self {
        Lag {
            queue: std::array::from_fn(|_| Vec::with_capacity(2 * block + latency)),
            out: std::array::from_fn(|_| vec![0.0; block]),
        }
    }

    /// Queue a whole block of each channel; hand out the oldest `keep`.
    fn run(&mut self, ins: [&[f32]; 6], keep: usize) {
        for ((q, o), x) in self.queue.iter_mut().zip(&mut self.out).zip(ins) {
            q.extend_from_slice(x);
            let k = keep.min(q.len());
            o[..k].copy_from_slice(&q[..k]);
            q.drain(..k);
        }
    }
}

impl Spatializer {
    pub fn new(
        spatial: &SpatialConfig,
        a: &SpatialArgs,
        in_ch: usize,
        rate: u32,
        stereo: bool,
    ) -> Result<Self> {
        check_order(a.order)?;
        if is_parametric(spatial, a) && a.order != 1 {
            bail!(
                "the parametric renderer takes first-order input (--order 1), not order {}",
                a.order
            );
        }
        let k = channels_for_order(a.order);
        let router = make_router(a, in_ch, k)?;
        let filters = make_filters(spatial, a, rate)?;
        let block = a.block.unwrap_or(spatial.block);
        if is_parametric(spatial, a) {
            // The linear renderer checks its block; this one takes any
            // length, but a file is still read in blocks.
            if !(16..=8192).contains(&block) {
                bail!("block size {block} is out of range (16..=8192)");
            }
            // Both would be folded into the linear filters, which the
            // parametric correction divides out wherever the field is
            // direct (it steers towards the HRTF set itself): half
            // applied, so refused.
            if a.headphone_eq.is_some()
                || spatial.headphone_eq.is_some()
                || a.max_re
                || spatial.max_re
            {
                bail!(
                    "headphone EQ and max-rE apply to the linear renderers only, not to parametric"
                );
            }
        }
        let renderer = make_engine(spatial, a, rate, &filters, block)?;
        let skip = renderer.latency();
        let lag = (skip > 0 && stereo).then(|| Lag::new(block, skip));
        Ok(Spatializer {
            router,
            renderer,
            skip,
            downmix: stereo.then(StereoDownmix::default),
            k,
            block,
            taps: filters.taps,
            method: if skip > 0 {
                "parametric".into()
            } else {
                filters.method.to_string()
            },
            symmetric: filters.symmetric,
            rate,
            planes: vec![Vec::with_capacity(block); in_ch],
            bus: vec![0.0; k * block],
            out: std::array::from_fn(|_| vec![0.0; block]),
            total: 0,
            // The parametric renderer's tail: its latency and its longest
            // response (the padding of its 1024-point frames).
            tail_left: filters.taps + if skip > 0 { skip + 512 } else { 0 },
            first: true,
            lag,
        })
    }

    /// Input frames read so far.
    pub fn frames_in(&self) -> u64 {
        self.total
    }

    /// The last block's binaural left and right.
    pub fn binaural(&self) -> (&[f32], &[f32]) {
        (&self.out[0], &self.out[1])
    }

    /// The last block's AmbiX bus, first order (W, Y, Z, X).
    pub fn first_order(&self) -> [&[f32]; 4] {
        if let Some(l) = &self.lag {
            return [&l.out[2], &l.out[3], &l.out[4], &l.out[5]];
        }
        let b = self.block;
        [
            &self.bus[..b],
            &self.bus[b..2 * b],
            &self.bus[2 * b..3 * b],
            &self.bus[3 * b..4 * b],
        ]
    }

    /// The last block's stereo downmix (zeros unless asked for).
    pub fn stereo(&self) -> (&[f32], &[f32]) {
        if let Some(l) = &self.lag {
            return (&l.out[0], &l.out[1]);
        }
        (&self.out[2], &self.out[3])
    }

    /// Render the next block; `Some(n)`: the first `n` frames of the
    /// outputs are new; `None`: the input and the filter tail are done.
    pub fn next_block(&mut self, src: &mut dyn AudioSource) -> Result<Option<usize>> {
        let block = self.block;
        let n = src.read_planar(block, &mut self.planes)?;
        if n == 0 {
            if self.tail_left == 0 {
                return Ok(None);
            }
            for p in self.planes.iter_mut() {
                p.clear();
            }
        }
        for p in self.planes.iter_mut() {
            p.resize(block, 0.0);
        }
        self.route()?;
        let k = self.k;
        let ins: Vec<&[f32]> = (0..k)
            .map(|c| &self.bus[c * block..(c + 1) * block])
            .collect();
        let [l, r, sl, sr] = &mut self.out;
        self.renderer.process(&ins, l, r)?;
        if let Some(d) = &self.downmix {
            d.process(&ins, sl, sr)?;
        }
        let mut keep = if n == 0 {
            let t = self.tail_left.min(block);
            self.tail_left -= t;
            t
        } else {
            n
        };
        // The renderer's latency comes out of the start, so the output
        // lines up with the input; the other outputs wait for it.
        if self.skip > 0 {
            let d = self.skip.min(keep);
            l.copy_within(d..keep, 0);
            r.copy_within(d..keep, 0);
            self.skip -= d;
            keep -= d;
        }
        if let Some(lag) = &mut self.lag {
            let b = &self.bus;
            let ins = [
                &sl[..],
                &sr[..],
                &b[..block],
                &b[block..2 * block],
                &b[2 * block..3 * block],
                &b[3 * block..4 * block],
            ];
            lag.run(ins, keep);
        }
        self.total += n as u64;
        Ok(Some(keep))
    }

    /// This block's input channels onto the AmbiX bus.
    fn route(&mut self) -> Result<()> {
        let block = self.block;
        let (planes, bus) = (&self.planes, &mut self.bus);
        bus.iter_mut().for_each(|v| *v = 0.0);
        match &mut self.router {
            Router::Ambisonic(map) => {
                for (c, &(s, g)) in map.iter().enumerate() {
                    for (d, x) in bus[c * block..(c + 1) * block].iter_mut().zip(&planes[s]) {
                        *d = x * g;
                    }
                }
            }
            Router::Bed(enc) => {
                let ins: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
                enc.encode_add(&ins, bus)?;
            }
            Router::Objects(scene, encs) => {
                let t_end = (self.total + block as u64) as f64 / self.rate as f64;
                for (o, enc) in scene.objects.iter().zip(encs.iter_mut()) {
                    enc.set_position(o.position_at(t_end), o.gain())?;
                    if self.first {
                        enc.snap();
                    }
                    enc.encode_add(&planes[o.channel - 1], bus);
                }
            }
        }
        self.first = false;
        Ok(())
    }
}
