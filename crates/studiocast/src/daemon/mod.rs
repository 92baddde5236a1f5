//! `studiocast serve`: the capture daemon, wired together: config, presets,
//! the store, interrupted sessions recovered, the supervisor and its
//! session actors, the HTTP server with its limits, and a shutdown that
//! finalises every session within 25 s whatever the clients do.

mod alarm_hooks;
mod devices;
mod hrtf;
mod job_events;
pub(crate) mod live;
pub mod media;
pub(crate) mod recording;
mod recovery;
pub mod retention;
mod session;
pub mod store;
mod supervisor;
pub(crate) mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use studiocast_server::{ServeOptions, ServerConfig};
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
    let (supervisor, runner) = start_jobs(&cfg, supervisor)?;
    tokio::spawn(job_events::run(supervisor.clone()));
    let tokens = cfg.auth.specs_beside(&s.api_token)?;
    // With named tokens configured and no api_token, there is no
    // all-scope token; with neither, one is made and printed.
    let generated = s.api_token.is_empty() && tokens.is_empty();
    let token = if generated {
        random_token()?
    } else {
        s.api_token.clone()
    };
    let mut server_cfg = ServerConfig::new(token.clone(), s.data_dir.clone());
    server_cfg.tokens = tokens;
    server_cfg.cors_origins = s.cors_origins.clone();
    server_cfg.jobs_dir = cfg.jobs.shared_dir.as_ref().map(|d| d.join("sessions"));
    server_cfg.playback_key = Some(playback_key(&cfg)?);
    server_cfg.embed_origins = s.embed_origins.clone();
    server_cfg.public_url = s.public_url.clone();
    server_cfg.https = tls.is_some();
    let (app, scrape) = studiocast_server::routers(server_cfg, Arc::new(supervisor.clone()));
    let listener = studiocast_server::bind(&s.listen)
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
    retention::spawn_sweeps(
        supervisor.clone(),
        s.data_dir.join("sessions"),
        cfg.retention.clone(),
        stop.clone(),
    );
    if let Some(bus) = studiocast_server::SessionControl::events(&supervisor) {
        alarm_hooks::spawn(
            bus,
            s.alarm_webhooks.clone(),
            cfg.jobs.webhook_secret.as_bytes().to_vec(),
            stop.clone(),
        );
    }
    if let Some(m) = &s.metrics_listen {
        let l = studiocast_server::bind(m)
            .await
            .with_context(|| format!("cannot listen on {m} ([server] metrics_listen)"))?;
        let at = l.local_addr()?;
        println!("studiocast metrics on http://{at}/metrics");
        tracing::info!(addr = %at, "metrics listener ready");
        let o = ServeOptions {
            max_connections: 64,
            shutdown_grace: HTTP_GRACE,
            ..ServeOptions::default()
        };
        tokio::spawn(studiocast_server::serve(
            l,
            scrape,
            o,
            stop.clone().cancelled_owned(),
        ));
    }
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
    if let Some(r) = runner {
        // Running jobs stop at their next block and are queued again.
        tokio::task::spawn_blocking(move || r.shutdown()).await?;
    }
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

/// The job queue (SQLite in the data folder), its workers and the webhook
/// deliverer; none with `[jobs] workers = 0`.
fn start_jobs(
    cfg: &Config,
    supervisor: supervisor::Supervisor,
) -> Result<(supervisor::Supervisor, Option<crate::jobs::runner::Runner>)> {
    use crate::jobs::{runner, store::Store, webhooks, Jobs, JobsConfig};
    if cfg.jobs.workers == 0 {
        return Ok((supervisor, None));
    }
    let path = cfg.server.data_dir.join("jobs.sqlite");
    let events = Arc::new(tokio::sync::Notify::new());
    let notify = events.clone();
    // The PostgreSQL client blocks on its own runtime: not on this one's.
    let opened = tokio::task::block_in_place(|| match &cfg.jobs.database {
        Some(url) => Store::open_postgres(url)
            .with_context(|| format!("cannot open the job queue at {}", redact(url))),
        None => Store::open(&path)
            .with_context(|| format!("cannot open the job queue {}", path.display())),
    })?;
    let store = Arc::new(
        opened
            .with_webhooks(cfg.jobs.webhooks.clone())
            .with_event_hook(move || notify.notify_one()),
    );
    if let Some(dir) = &cfg.jobs.shared_dir {
        std::fs::create_dir_all(dir.join("sessions"))
            .with_context(|| format!("cannot use [jobs] shared_dir {}", dir.display()))?;
    }
    let wake = runner::Wake::default();
    let jobs = Arc::new(Jobs::new(
        store.clone(),
        JobsConfig {
            data_dir: cfg.server.data_dir.clone(),
            shared_dir: cfg
                .jobs
                .shared_dir
                .clone()
                .unwrap_or_else(|| cfg.server.data_dir.clone()),
            import_dir: cfg.jobs.import_dir.clone(),
            max_upload_bytes: cfg.jobs.max_upload_mb.saturating_mul(1024 * 1024),
            min_free_mb: cfg.recording.min_free_mb,
            pipelines_dir: cfg.server.pipelines_dir.clone(),
        },
        wake.clone(),
    ));
    tokio::task::block_in_place(|| jobs.sweep_uploads());
    // Always running, even with no URL configured now: events written
    // before a restart that removed a URL are still owed.
    let stop = CancellationToken::new();
    tokio::spawn(webhooks::deliver(
        store.clone(),
        jobs.clone(),
        webhooks::WebhookSettings {
            secret: cfg.jobs.webhook_secret.clone().into_bytes(),
            public_url: cfg
                .jobs
                .public_url
                .as_ref()
                .or(cfg.server.public_url.as_ref())
                .map(|u| u.trim_end_matches('/').to_string()),
        },
        events,
        stop.clone(),
    ));
    let runner = runner::Runner::start(store, jobs.clone(), cfg.clone(), cfg.jobs.workers, wake)
        .context("cannot start the job workers")?
        .with_stop_also(stop);
    let queue = match &cfg.jobs.database {
        Some(url) => redact(url),
        None => path.display().to_string(),
    };
    tracing::info!(workers = cfg.jobs.workers, %queue, webhooks = cfg.jobs.webhooks.len(), "job queue ready");
    Ok((supervisor.with_jobs(jobs), Some(runner)))
}

/// A database URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            let user = cred.split(':').next().unwrap_or("");
            format!("{}{user}:…{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
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
            retention: cfg.retention.clone(),
        },
        session::SessionCtx {
            store,
            media_root,
            recording: cfg.recording.clone(),
            backend,
            live: live::LiveRegistry::default(),
            freeze_live,
            events: Default::default(),
        },
        past,
    )
    .with_filters(Arc::new(hrtf::SpatialFilters {
        spatial: cfg.spatial.clone(),
    }))
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

/// The key of private lessons' playback tokens: the configured secret, or
/// one made once and kept (mode 0600) in the shared jobs folder when there
/// is one (every daemon serving it must agree), else in the data folder.
/// Never logged.
fn playback_key(cfg: &Config) -> Result<studiocast_server::PlaybackKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let s = &cfg.server;
    if !s.playback_secret.is_empty() {
        return studiocast_server::PlaybackKey::new(s.playback_secret.as_bytes())
            .context("[server] playback_secret must be at least 16 bytes");
    }
    let dir = cfg.jobs.shared_dir.as_ref().unwrap_or(&s.data_dir);
    let path = dir.join("playback.key");
    if !path.exists() {
        std::fs::create_dir_all(dir)?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        // A name of its own (daemons on other hosts share the folder and
        // may have the same pid).
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".playback.key.{tag}"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(hex.as_bytes())?;
        f.sync_all()?;
        // A link fails if another daemon made its key first: then theirs
        // is the one, read below.
        let made = std::fs::hard_link(&tmp, &path).is_ok();
        let _ = std::fs::remove_file(&tmp);
        if made {
            tracing::info!(path = %path.display(), "made a playback key for private lessons");
        }
    }
    let secret = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let secret = secret.trim_ascii();
    // Whole, as written: 64 hex digits (a half-written or foreign file
    // would make this daemon refuse its neighbours' tokens).
    if secret.len() != 64 || !secret.iter().all(u8::is_ascii_hexdigit) {
        anyhow::bail!(
            "{} is not a playback key (64 hex digits); remove it to make a new one",
            path.display()
        );
    }
    studiocast_server::PlaybackKey::new(secret)
        .with_context(|| format!("{} holds fewer than 16 bytes", path.display()))
}
