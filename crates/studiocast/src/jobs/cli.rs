//! `studiocast jobs submit|list|watch|cancel`: the job API from a
//! terminal, against a running daemon.
//!
//! The daemon is `--server`, else `STUDIOCAST_SERVER`, else the config's
//! `[server] listen` (https when it has a certificate); the token is
//! `--token`, else the config's (`STUDIOCAST_API_TOKEN` included).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyper::http::Method;

use super::{SpecFormat, Visibility};
use crate::config::Config;
use crate::http_client::{Body, Client};

#[derive(clap::Args)]
pub struct JobsArgs {
    /// The daemon, e.g. `http://127.0.0.1:8080` (default:
    /// `STUDIOCAST_SERVER`, else the config's `listen`).
    #[arg(long)]
    server: Option<String>,
    /// The control API's token (default: the config's).
    #[arg(long)]
    token: Option<String>,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(clap::Subcommand)]
enum JobsCommand {
    /// Queue a job: upload FILE, or name a file in the daemon's import
    /// folder (`--path`) or a finished session (`--session`).
    Submit(SubmitArgs),
    /// Jobs, newest first.
    List {
        /// queued, running, succeeded, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Follow a job to its end; exit 0 if it succeeded, non-zero if not.
    Watch { id: String },
    /// Cancel a queued or running job.
    Cancel { id: String },
}

#[derive(clap::Args)]
struct SubmitArgs {
    /// A recording to upload.
    #[arg(required_unless_present_any = ["path", "session"])]
    file: Option<PathBuf>,
    /// A file in the daemon's import folder, relative to it.
    #[arg(long, conflicts_with_all = ["file", "session"])]
    path: Option<String>,
    /// A finished session to render again from its master.
    #[arg(long, conflicts_with = "file")]
    session: Option<String>,
    #[arg(long)]
    preset: Option<String>,
    #[arg(long, value_enum)]
    input_format: SpecFormat,
    #[arg(long)]
    order: Option<usize>,
    #[arg(long)]
    layout: Option<String>,
    /// A scene file in the daemon's import folder.
    #[arg(long)]
    scene: Option<String>,
    /// Integrated loudness target, LUFS.
    #[arg(long, allow_hyphen_values = true)]
    loudness: Option<f64>,
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    course: Option<String>,
    #[arg(long, value_enum)]
    visibility: Option<Visibility>,
    /// Follow the job to its end (as `watch`).
    #[arg(long)]
    wait: bool,
}

struct Api {
    client: Client,
    base: String,
    auth: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Body,
        ct: Option<&str>,
    ) -> Result<serde_json::Value> {
        let mut headers = vec![("authorization", self.auth.as_str())];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let url = format!("{}{path}", self.base);
        let a = self.client.send(method, &url, &headers, body).await?;
        let json: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
        if !(200..300).contains(&a.status) {
            let msg = json["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&a.body).into_owned());
            bail!("{url}: HTTP {}: {msg}", a.status);
        }
        Ok(json)
    }
}

pub fn run(cfg: &Config, args: JobsArgs) -> Result<()> {
    let from_env = std::env::var("STUDIOCAST_SERVER")
        .ok()
        .filter(|s| !s.is_empty());
    let base = args.server.clone().or(from_env).unwrap_or_else(|| {
        let scheme = if cfg.server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", cfg.server.listen)
    });
    let token = args
        .token
        .clone()
        .unwrap_or_else(|| cfg.server.api_token.clone());
    if token.is_empty() {
        bail!("no API token: give --token, or set STUDIOCAST_API_TOKEN or [server] api_token");
    }
    let api = Api {
        client: Client::new(),
        base: base.trim_end_matches('/').to_string(),
        auth: format!("Bearer {token}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match args.command {
            JobsCommand::Submit(s) => submit(&api, s).await,
            JobsCommand::List { state, limit, json } => list(&api, state, limit, json).await,
            JobsCommand::Watch { id } => watch(&api, &id).await,
            JobsCommand::Cancel { id } => {
                let j = api
                    .call(
                        Method::DELETE,
                        &format!("/api/v1/jobs/{id}"),
                        Body::Empty,
                        None,
                    )
                    .await?;
                println!("{id}: {}", j["state"].as_str().unwrap_or("?"));
                Ok(())
            }
        }
    })
}

fn spec_of(s: &SubmitArgs) -> Result<serde_json::Value> {
    let mut spec = serde_json::json!({ "input_format": s.input_format });
    let o = spec.as_object_mut().ok_or_else(|| anyhow!("spec"))?;
    let mut put = |k: &str, v: serde_json::Value| {
        if !v.is_null() {
            o.insert(k.into(), v);
        }
    };
    put("preset", serde_json::json!(s.preset));
    put("order", serde_json::json!(s.order));
    put("layout", serde_json::json!(s.layout));
    put("scene", serde_json::json!(s.scene));
    put("loudness", serde_json::json!(s.loudness));
    put("title", serde_json::json!(s.title));
    put("course", serde_json::json!(s.course));
    put("visibility", serde_json::to_value(s.visibility)?);
    Ok(spec)
}

async fn submit(api: &Api, s: SubmitArgs) -> Result<()> {
    let mut spec = spec_of(&s)?;
    let job = if let Some(file) = &s.file {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload")
            .replace('"', "_");
        let boundary = format!("studiocast-{:016x}", rand_u64());
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\
             Content-Type: application/json\r\n\r\n{spec}\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let ct = format!("multipart/form-data; boundary={boundary}");
        eprintln!("uploading {}", file.display());
        let body = Body::File {
            head: head.into_bytes(),
            path: file.clone(),
            tail: tail.into_bytes(),
        };
        api.call(Method::POST, "/api/v1/jobs", body, Some(&ct))
            .await?
    } else {
        let o = spec.as_object_mut().ok_or_else(|| anyhow!("spec"))?;
        match (&s.path, &s.session) {
            (Some(p), None) => o.insert("path".into(), p.clone().into()),
            (None, Some(id)) => o.insert("session".into(), id.clone().into()),
            _ => bail!("give FILE, --path or --session"),
        };
        let body = Body::Bytes(serde_json::to_vec(&spec)?);
        api.call(Method::POST, "/api/v1/jobs", body, Some("application/json"))
            .await?
    };
    let id = job["id"]
        .as_str()
        .context("the daemon answered no job id")?
        .to_string();
    println!("{id}");
    if s.wait {
        watch(api, &id).await?;
    }
    Ok(())
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

async fn list(api: &Api, state: Option<String>, limit: usize, json: bool) -> Result<()> {
    let mut path = format!("/api/v1/jobs?limit={limit}");
    if let Some(s) = state {
        path.push_str(&format!("&state={s}"));
    }
    let jobs = api.call(Method::GET, &path, Body::Empty, None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    println!(
        "{:<21} {:<10} {:>5}  {:<24} TITLE",
        "ID", "STATE", "%", "CREATED"
    );
    for j in jobs.as_array().into_iter().flatten() {
        println!(
            "{:<21} {:<10} {:>5.0}  {:<24} {}",
            j["id"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or(""),
            j["progress"].as_f64().unwrap_or(0.0).max(0.0),
            j["created"].as_str().unwrap_or(""),
            j["spec"]["title"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Polls the job: a bar on a terminal, a line per change otherwise.
async fn watch(api: &Api, id: &str) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let j = api
            .call(
                Method::GET,
                &format!("/api/v1/jobs/{id}"),
                Body::Empty,
                None,
            )
            .await?;
        let state = j["state"].as_str().unwrap_or("?").to_string();
        let pct = j["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 100.0);
        let eta = j["eta_seconds"]
            .as_f64()
            .map(|s| format!(", {s:.0} s left"))
            .unwrap_or_default();
        let line = format!("{id}: {state} {pct:.0}%{eta}");
        if tty {
            let filled = (pct / 5.0) as usize;
            eprint!(
                "\r[{}{}] {line}   ",
                "#".repeat(filled),
                ".".repeat(20 - filled.min(20))
            );
            let _ = std::io::stderr().flush();
        } else if line != last {
            eprintln!("{line}");
        }
        last = line;
        match state.as_str() {
            "succeeded" => {
                if tty {
                    eprintln!();
                }
                println!("{}", j["outputs"]["master"].as_str().unwrap_or(""));
                return Ok(());
            }
            "failed" | "cancelled" => {
                if tty {
                    eprintln!();
                }
                bail!(
                    "job {id} {state}: {}",
                    j["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
