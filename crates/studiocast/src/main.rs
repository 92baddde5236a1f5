//! studiocast: the conservatoire studio's media engine.

use studiocast::{accuracy, auth, config, daemon, encode, filters, jobs, render, transcode};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's malloc was a quarter of the HTTP workers' time with a thousand
/// LL viewers (its arena locks and consolidation on every response's
/// buffers); mimalloc's per-thread pages take most of that away.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Turn a recording into an HLS lesson (binaural and stereo AAC,
    /// loudness-normalised), as fast as the machine allows.
    Transcode(transcode::TranscodeArgs),
    /// Submit, list, follow and cancel jobs on a running daemon.
    Jobs(jobs::cli::JobsArgs),
    /// List audio input devices (ALSA, JACK when a server runs) as JSON.
    Devices,
    /// Encode mono sources to an AmbiX file (scene file or one position).
    Encode(encode::EncodeArgs),
    /// Measure decoder accuracy against direct HRIR convolution on the HRTF grid.
    Accuracy(accuracy::AccuracyArgs),
    /// Make a control token with scopes (for `[[auth.token]]`).
    Token(auth::TokenArgs),
    /// Print the API's OpenAPI 3.1 document (what the daemon serves at
    /// `/api/v1/openapi.json`).
    Openapi,
    /// Apply the `[retention]` rules to the data folder now (`--dry-run`:
    /// only list what would go).
    Retention(studiocast::daemon::retention::RetentionArgs),
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
        Command::Transcode(a) => transcode::run(&cfg, a),
        Command::Jobs(a) => jobs::cli::run(&cfg, a),
        Command::Accuracy(a) => accuracy::run(&cfg, a),
        Command::Encode(a) => encode::run(a),
        Command::DesignFilters(a) => filters::design_command(a),
        Command::Token(a) => auth::run(a),
        Command::Retention(a) => studiocast::daemon::retention::run_cli(&cfg, a),
        Command::Openapi => {
            let doc = studiocast_server::openapi::document();
            println!("{}", doc.to_pretty_json()?);
            Ok(())
        }
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
            // A transcode says which side failed (a job worker retries
            // only the output side).
            ExitCode::from(
                e.downcast_ref::<transcode::TranscodeError>()
                    .map_or(2, transcode::TranscodeError::exit_code),
            )
        }
    }
}
