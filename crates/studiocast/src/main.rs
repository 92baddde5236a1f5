//! studiocast: the conservatoire studio's media engine.

use studiocast::{accuracy, config, daemon, encode, filters, render};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "studiocast",
    version,
    about = "Spatial audio capture, binaural rendering and streaming"
)]
struct Cli {
    /// Config file (TOML). Default: config/studiocast.toml when present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the capture daemon: control API, live HLS and VOD.
    Serve(daemon::ServeArgs),
    /// Render an ambisonic, bed or object file to binaural stereo (32-bit float WAV).
    Render(render::RenderArgs),
    /// List audio input devices (ALSA, JACK when a server runs) as JSON.
    Devices,
    /// Encode mono sources to an AmbiX file (scene file or one position).
    Encode(encode::EncodeArgs),
    /// Measure decoder accuracy against direct HRIR convolution on the HRTF grid.
    Accuracy(accuracy::AccuracyArgs),
    /// Design filters into a cache folder (what the daemon runs in a child
    /// process, with limits, so a hostile SOFA file cannot take it down).
    #[command(hide = true)]
    DesignFilters(filters::DesignArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; STUDIOCAST_LOG filters them (default: info, and
    // sofar's own chatter only from warnings up).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STUDIOCAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sofar=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = config::Config::load(cli.config.as_deref()).and_then(|cfg| match cli.command {
        Command::Serve(a) => daemon::run(cfg, a),
        Command::Render(a) => render::run(&cfg, a),
        Command::Accuracy(a) => accuracy::run(&cfg, a),
        Command::Encode(a) => encode::run(a),
        Command::DesignFilters(a) => filters::design_command(a),
        Command::Devices => {
            // Presets name the cameras and cards the studio expects.
            let presets = daemon::load_presets(&cfg.server.pipelines_dir).unwrap_or_default();
            let list = daemon::device_entries(&presets);
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("studiocast: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
