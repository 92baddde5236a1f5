//! `studiocast encode`: mono sources to an AmbiX (ACN/SN3D) file, placed by
//! a scene file or a single position. Useful for test material and for
//! pre-mixing spot microphones.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use studiocast_audiofile::pcm::{PcmWriter, SampleFormat};
use studiocast_spatial::encoder::ObjectEncoder;
use studiocast_spatial::scene::Scene;
use studiocast_spatial::sh::{channels_for_order, check_order};

use crate::render::load_scene;

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Input file; each channel is a mono source.
    pub input: PathBuf,
    /// Output AmbiX WAV ((order+1)² channels, 32-bit float).
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub order: usize,
    /// Scene file placing the input channels (see samples/scene-example.toml).
    #[arg(long, conflicts_with_all = ["azimuth", "elevation"])]
    pub scene: Option<PathBuf>,
    /// Position of a mono input, degrees.
    #[arg(long, allow_hyphen_values = true)]
    pub azimuth: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    pub elevation: Option<f64>,
}

pub fn run(a: EncodeArgs) -> Result<()> {
    check_order(a.order)?;
    let k = channels_for_order(a.order);
    let mut src = studiocast_audiofile::open(&a.input)
        .with_context(|| format!("cannot read input {}", a.input.display()))?;
    let in_ch = src.channels();
    let scene: Scene = match (&a.scene, a.azimuth) {
        (Some(p), _) => load_scene(p)?,
        (None, Some(az)) => {
            if in_ch != 1 {
                bail!("--azimuth places a mono input; this one has {in_ch} channels (use --scene)");
            }
            let text = format!(
                "[[object]]\nname = \"source\"\nchannel = 1\nazimuth = {az}\nelevation = {}\n",
                a.elevation.unwrap_or(0.0)
            );
            toml::from_str(&text)?
        }
        (None, None) => bail!("give --scene FILE or --azimuth DEG"),
    };
    scene.validate(in_ch)?;
    let rate = src.sample_rate();
    let mut encs: Vec<ObjectEncoder> = scene
        .objects
        .iter()
        .map(|_| ObjectEncoder::new(a.order))
        .collect::<Result<_, _>>()?;
    let mut out = PcmWriter::create(&a.output, k as u16, rate, SampleFormat::F32)?;
    let block = 1024;
    let mut planes = vec![Vec::new(); in_ch];
    let mut bus = vec![0.0f32; k * block];
    let mut t = 0u64;
    loop {
        let n = src.read_planar(block, &mut planes)?;
        if n == 0 {
            break;
        }
        bus[..k * n].iter_mut().for_each(|v| *v = 0.0);
        let end = (t + n as u64) as f64 / rate as f64;
        for (o, enc) in scene.objects.iter().zip(encs.iter_mut()) {
            enc.set_position(o.position_at(end), o.gain())?;
            if t == 0 {
                enc.snap();
            }
            enc.encode_add(&planes[o.channel - 1], &mut bus[..k * n]);
        }
        let refs: Vec<&[f32]> = (0..k).map(|c| &bus[c * n..(c + 1) * n]).collect();
        out.write_planar(&refs)?;
        t += n as u64;
    }
    let frames = out.finalize()?;
    eprintln!(
        "encoded {frames} frames to {} ({k} channels AmbiX)",
        a.output.display()
    );
    Ok(())
}
