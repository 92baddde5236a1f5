//! `studiocast serve`: the capture daemon.

mod devices;
mod recording;
mod store;
mod supervisor;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use studiocast_server::{router, ServerConfig};

use crate::config::Config;
pub use devices::device_entries;
pub use recording::RecordingConfig;
pub use supervisor::{load_presets, Supervisor};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long)]
    pub listen: Option<String>,
    /// Folder for session records and media.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder of session presets.
    #[arg(long)]
    pub pipelines: Option<PathBuf>,
}

fn random_token() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn run(mut cfg: Config, args: ServeArgs) -> Result<()> {
    if let Some(l) = args.listen {
        cfg.server.listen = l;
    }
    if let Some(d) = args.data_dir {
        cfg.server.data_dir = d;
    }
    if let Some(p) = args.pipelines {
        cfg.server.pipelines_dir = p;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STUDIOCAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sofar=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    studiocast_media::init()?;
    studiocast_media::bridge_logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> Result<()> {
    let s = &cfg.server;
    let presets = load_presets(&s.pipelines_dir)?;
    let store = Arc::new(store::FileStore::new(&s.data_dir)?);
    let supervisor = Supervisor::spawn(
        presets.clone(),
        store,
        cfg.spatial.clone(),
        cfg.recording.clone(),
    )?;
    let generated = s.api_token.is_empty();
    let token = if generated {
        random_token()
    } else {
        s.api_token.clone()
    };
    let app = router(
        ServerConfig {
            api_token: token.clone(),
            data_dir: s.data_dir.clone(),
            cors_origins: s.cors_origins.clone(),
        },
        Arc::new(supervisor.clone()),
    );
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .with_context(|| format!("cannot listen on {}", s.listen))?;
    let addr = listener.local_addr()?;
    let mut names: Vec<&String> = presets.keys().collect();
    names.sort();
    println!("studiocast listening on http://{addr}");
    if generated {
        println!("API token (generated; set STUDIOCAST_API_TOKEN to choose one): {token}");
    }
    println!(
        "pipelines: {}",
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    tracing::info!(%addr, data_dir = %s.data_dir.display(), "daemon ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down: finalising live sessions");
    if tokio::time::timeout(std::time::Duration::from_secs(25), supervisor.shutdown())
        .await
        .is_err()
    {
        tracing::error!("sessions did not finish in time");
    }
    tracing::info!("bye");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
