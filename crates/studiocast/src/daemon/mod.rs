//! `studiocast serve`: the capture daemon, wired together: config, presets,
//! the store, interrupted sessions recovered, the supervisor and its
//! session actors, the HTTP server with its limits, and a shutdown that
//! finalises every session within 25 s whatever the clients do.

mod devices;
mod live;
pub mod media;
mod recording;
mod recovery;
mod session;
pub mod store;
mod supervisor;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use studiocast_server::{router, ServeOptions, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use devices::device_entries;
pub use supervisor::{load_presets, Supervisor, SupervisorConfig};

/// SIGTERM to the sessions finalised, at most; the runtime then gets 1 s,
/// so the process is gone within 25 s (systemd's default stop timeout is
/// 90 s; ours is shorter so the unit never needs SIGKILL).
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(23);
/// Of which HTTP requests in flight may take this much; stalled clients
/// are cut off after it, and never hold the sessions' finalising.
const HTTP_GRACE: Duration = Duration::from_secs(3);

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

fn random_token() -> Result<String> {
    let mut b = [0u8; 16];
    // No randomness, no token: a guessable token is worse than no start.
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("cannot generate an API token: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
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
    studiocast_media::init()?;
    studiocast_media::bridge_logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(serve(cfg));
    // Dropping the runtime would wait, without limit, for blocking work
    // still running: a start stuck in a device open, a filter designer. The
    // sessions are finalised by now; exit without them.
    rt.shutdown_timeout(Duration::from_secs(1));
    r
}

async fn serve(cfg: Config) -> Result<()> {
    let s = &cfg.server;
    let tls = s.tls()?;
    let fds = studiocast_server::raise_fd_limit().unwrap_or(0);
    let presets = load_presets(&s.pipelines_dir)?;
    let media_root = s.data_dir.join("sessions");
    let store: Arc<dyn store::SessionStore> = Arc::new(
        store::FileStore::new(&media_root)
            .with_context(|| format!("cannot use the data folder {}", s.data_dir.display()))?,
    );
    let past = {
        let (store, root, presets) = (store.clone(), media_root.clone(), presets.clone());
        tokio::task::spawn_blocking(move || recovery::recover_all(store.as_ref(), &root, &presets))
            .await?
    };
    let max_sessions = s.session_limit();
    let supervisor = spawn_supervisor(&cfg, presets.clone(), store, media_root, past);
    let generated = s.api_token.is_empty();
    let token = if generated {
        random_token()?
    } else {
        s.api_token.clone()
    };
    let mut server_cfg = ServerConfig::new(token.clone(), s.data_dir.clone());
    server_cfg.cors_origins = s.cors_origins.clone();
    let app = router(server_cfg, Arc::new(supervisor.clone()));
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .with_context(|| format!("cannot listen on {}", s.listen))?;
    let addr = listener.local_addr()?;
    let opts = ServeOptions {
        max_connections: studiocast_server::connection_budget(s.max_connections),
        shutdown_grace: HTTP_GRACE,
        tls,
        ..ServeOptions::default()
    };
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    announce(scheme, &addr, generated.then_some(token.as_str()), &presets);
    tracing::info!(%addr, scheme, data_dir = %s.data_dir.display(), max_sessions, max_connections = opts.max_connections, fd_limit = fds, "daemon ready");
    let stop = CancellationToken::new();
    let http = tokio::spawn(studiocast_server::serve(
        listener,
        app,
        opts,
        stop.clone().cancelled_owned(),
    ));
    let mut http = http;
    let early = tokio::select! {
        _ = shutdown_signal() => None,
        r = &mut http => Some(r),
    };
    tracing::info!("shutting down: finalising live sessions");
    stop.cancel();
    // Sessions finalise while HTTP drains: neither waits for the other.
    let finalise = tokio::time::timeout(SHUTDOWN_BUDGET, supervisor.shutdown());
    let (http, finalised) = match early {
        // The server stopped on its own (its listener broke).
        Some(r) => (r, finalise.await),
        None => tokio::join!(http, finalise),
    };
    if finalised.is_err() {
        tracing::error!("sessions did not finish in {} s", SHUTDOWN_BUDGET.as_secs());
    }
    match http {
        Ok(Err(e)) => tracing::error!(%e, "the HTTP server failed"),
        Err(e) => tracing::error!(%e, "the HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("bye");
    Ok(())
}

/// The session supervisor, with the real media backend (and the fault
/// hooks the tests set through the environment).
fn spawn_supervisor(
    cfg: &Config,
    presets: std::collections::HashMap<String, studiocast_media::PipelineSpec>,
    store: Arc<dyn store::SessionStore>,
    media_root: std::path::PathBuf,
    past: Vec<studiocast_server::SessionInfo>,
) -> Supervisor {
    let faults = media::Faults::from_env();
    let freeze_live = faults.freeze_live.clone();
    let backend = Arc::new(media::GstBackend {
        spatial: cfg.spatial.clone(),
        faults,
    });
    Supervisor::spawn(
        SupervisorConfig {
            presets,
            recording: cfg.recording.clone(),
            max_sessions: cfg.server.session_limit(),
        },
        session::SessionCtx {
            store,
            media_root,
            recording: cfg.recording.clone(),
            backend,
            live: live::LiveRegistry::default(),
            freeze_live,
        },
        past,
    )
}

/// What a technician needs on the terminal: where, the token, the presets.
fn announce(
    scheme: &str,
    addr: &std::net::SocketAddr,
    token: Option<&str>,
    presets: &std::collections::HashMap<String, studiocast_media::PipelineSpec>,
) {
    let mut names: Vec<&str> = presets.keys().map(|n| n.as_str()).collect();
    names.sort();
    println!("studiocast listening on {scheme}://{addr}");
    if let Some(t) = token {
        println!("API token (generated; set STUDIOCAST_API_TOKEN to choose one): {t}");
    }
    println!("pipelines: {}", names.join(", "));
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
