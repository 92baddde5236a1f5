//! Binaural filters as `render` and the daemon both need them: the decoder
//! designed from a SOFA set (or taken from the on-disk cache), with the
//! optional headphone EQ folded in. Every `[spatial]` key that shapes the
//! filters is read here, once, so the live path and the offline renderer
//! cannot disagree.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use studiocast_spatial::renderer::fold_headphone_eq;
use studiocast_spatial::{
    cache, design, hrir_cache, DecoderMethod, DesignOptions, HrtfSet, ShFilters,
};

use crate::config::SpatialConfig;

/// Largest SOFA file read (KEMAR is 1.2 MB; dense sets reach tens of MB).
pub const MAX_SOFA_BYTES: u64 = 512 * 1024 * 1024;
/// Largest headphone-EQ file read.
const MAX_EQ_FRAMES: usize = 16_384;
/// Limits of the process that parses a SOFA file and designs filters for
/// the daemon: the parser (third-party, fed untrusted files) can be made
/// to allocate and spin without bound by a crafted file, so it never runs
/// inside the daemon. An order-7 design of KEMAR peaks near 0.3 GB here.
const DESIGN_MEMORY: u64 = 6 << 30;
/// An order-7 design of KEMAR takes about 2.5 s of CPU here; a dense set
/// (10,000 directions) under a minute.
const DESIGN_CPU_SECONDS: u64 = 90;
const DESIGN_WALL: Duration = Duration::from_secs(120);
/// The designer runs below the live sessions' priority.
const DESIGN_NICE: i32 = 10;

/// One design at a time: a second start of the same set waits and then
/// finds the filters in the cache, and retried starts cannot stack
/// designers that compete with live encoders for the CPU.
static DESIGNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Everything that decides a set of filters.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterRequest {
    pub hrtf: PathBuf,
    pub rate: u32,
    pub order: usize,
    pub method: DecoderMethod,
    pub max_re: bool,
    pub headphone_eq: Option<PathBuf>,
}

impl FilterRequest {
    /// The filters a live session of `order` at `rate` uses, from the
    /// daemon's `[spatial]` section.
    pub fn for_session(spatial: &SpatialConfig, order: usize, rate: u32) -> Result<Self> {
        Ok(FilterRequest {
            hrtf: spatial.hrtf.clone(),
            rate,
            order,
            method: spatial.method.parse().map_err(anyhow::Error::msg)?,
            max_re: spatial.max_re,
            headphone_eq: spatial.headphone_eq.clone(),
        })
    }

    pub fn design_options(&self) -> DesignOptions {
        let mut opts = DesignOptions::new(self.method, self.order);
        opts.max_re = self.max_re;
        opts
    }
}

/// Design (or load from the cache) and fold the headphone EQ.
pub fn filters(req: &FilterRequest) -> Result<ShFilters> {
    let designed = designed_filters(&req.hrtf, req.rate, &req.design_options())?;
    match &req.headphone_eq {
        None => Ok(designed),
        Some(p) => fold_eq(&designed, p, req.rate),
    }
}

fn fold_eq(filters: &ShFilters, path: &Path, rate: u32) -> Result<ShFilters> {
    let mut s = studiocast_audiofile::open(path)
        .with_context(|| format!("cannot read headphone EQ {}", path.display()))?;
    if s.sample_rate() != rate {
        bail!(
            "headphone EQ {} is at {} Hz, the stream at {rate} Hz",
            path.display(),
            s.sample_rate()
        );
    }
    if s.channels() > 2 {
        bail!("headphone EQ {} must be mono or stereo", path.display());
    }
    let mut planes = vec![Vec::new(); s.channels()];
    s.read_planar(MAX_EQ_FRAMES, &mut planes)?;
    let right = planes.last().cloned().unwrap_or_default();
    Ok(fold_headphone_eq(filters, &planes[0], &right)?)
}

/// Read at most `max` bytes of `path`; more is an error (a device such as
/// /dev/zero, or a file far too large to be what it claims).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // A device or a pipe is refused before a byte is read (an endless
    // /dev/zero would otherwise be read up to the limit).
    let meta = f
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > max {
        bail!("{} is larger than {} MB", path.display(), max >> 20);
    }
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than {} MB", path.display(), max >> 20);
    }
    Ok(bytes)
}

/// Design filters, or take them from the on-disk cache when the same SOFA
/// bytes, rate and options were designed before. In this process: what
/// `render` uses (a hostile file can only take the command down).
pub fn designed_filters(hrtf_path: &Path, rate: u32, opts: &DesignOptions) -> Result<ShFilters> {
    let bytes = read_bounded(hrtf_path, MAX_SOFA_BYTES)
        .with_context(|| format!("cannot read the HRTF set {}", hrtf_path.display()))?;
    let key = cache::cache_key(&bytes, rate, opts);
    let dir = cache::default_dir();
    if let Some(f) = dir
        .as_deref()
        .and_then(|d| cache::load(d, &key, rate, opts))
    {
        return Ok(f);
    }
    let hrtf = HrtfSet::from_sofa_bytes(&bytes, rate, &hrtf_path.display().to_string())?;
    let filters = design(&hrtf, opts)?;
    if let Some(d) = dir.as_deref() {
        // A read-only home is not an error: the next run designs again.
        if let Err(e) = cache::store(d, &key, &filters) {
            tracing::warn!(dir = %d.display(), %e, "filter cache not written");
        }
    }
    Ok(filters)
}

/// What the daemon uses: cached filters when there are, else a child
/// process (`studiocast design-filters`, with memory, CPU and wall-clock
/// limits) parses the SOFA file, designs and caches them. A hostile or
/// broken file then fails one session's start with a clear error and never
/// takes down the daemon and its live sessions.
pub fn filters_isolated(req: &FilterRequest) -> Result<ShFilters> {
    let opts = req.design_options();
    let bytes = read_bounded(&req.hrtf, MAX_SOFA_BYTES)
        .with_context(|| format!("cannot read the HRTF set {}", req.hrtf.display()))?;
    let key = cache::cache_key(&bytes, req.rate, &opts);
    let shared = cache::default_dir();
    let cached = |d: Option<&Path>| d.and_then(|d| cache::load(d, &key, req.rate, &opts));
    let designed = match cached(shared.as_deref()) {
        Some(f) => f,
        None => {
            let _one = DESIGNING.lock().unwrap_or_else(|e| e.into_inner());
            // Designed meanwhile by the start that held the lock?
            match cached(shared.as_deref()) {
                Some(f) => f,
                None => design_in_child(req, &key, shared.as_deref())?,
            }
        }
    };
    match &req.headphone_eq {
        None => Ok(designed),
        Some(p) => fold_eq(&designed, p, req.rate),
    }
}

fn design_in_child(req: &FilterRequest, key: &str, shared: Option<&Path>) -> Result<ShFilters> {
    Ok(designed_in_child(req, key, shared, false)?.0)
}

/// The child designs (and, with `hrirs`, leaves the set's responses too)
/// in a private folder; the daemon checks the entries against the request
/// and copies them into the shared cache.
fn designed_in_child(
    req: &FilterRequest,
    key: &str,
    shared: Option<&Path>,
    hrirs: bool,
) -> Result<(ShFilters, Option<HrtfSet>)> {
    let dir = tempdir()?;
    let result = run_designer(req, key, &dir, hrirs).and_then(|f| {
        let set = match hrirs {
            false => None,
            true => Some(
                hrir_cache::load(&dir, key, req.rate)
                    .context("the filter designer finished but left no usable HRTF set")?,
            ),
        };
        Ok((f, set))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (filters, set) = result?;
    if let Some(d) = shared {
        // A read-only cache is not an error: the next start designs again.
        if let Err(e) = cache::store(d, key, &filters) {
            tracing::warn!(dir = %d.display(), %e, "filter cache not written");
        }
        if let Some(h) = &set {
            if let Err(e) = hrir_cache::store(d, key, h) {
                tracing::warn!(dir = %d.display(), %e, "HRTF set cache not written");
            }
        }
    }
    Ok((filters, set))
}

/// What a live session with the parametric renderer needs: first-order
/// MagLS filters (the rendering it corrects) and the set's responses, from the
/// cache or from the isolated designer, as [`filters_isolated`]. The
/// headphone EQ is refused: folded into the filters, it would be divided
/// out again wherever the correction steers towards the HRTF.
pub fn parametric_isolated(hrtf: &Path, rate: u32) -> Result<(ShFilters, HrtfSet)> {
    let req = FilterRequest {
        hrtf: hrtf.to_path_buf(),
        rate,
        order: 1,
        method: DecoderMethod::MagLs,
        max_re: false,
        headphone_eq: None,
    };
    let opts = req.design_options();
    let bytes = read_bounded(hrtf, MAX_SOFA_BYTES)
        .with_context(|| format!("cannot read the HRTF set {}", hrtf.display()))?;
    let key = cache::cache_key(&bytes, rate, &opts);
    let shared = cache::default_dir();
    let cached = |d: Option<&Path>| {
        let d = d?;
        Some((
            cache::load(d, &key, rate, &opts)?,
            hrir_cache::load(d, &key, rate)?,
        ))
    };
    if let Some(hit) = cached(shared.as_deref()) {
        return Ok(hit);
    }
    let _one = DESIGNING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = cached(shared.as_deref()) {
        return Ok(hit);
    }
    match designed_in_child(&req, &key, shared.as_deref(), true)? {
        (f, Some(h)) => Ok((f, h)),
        (_, None) => bail!("the filter designer left no HRTF set"),
    }
}

fn run_designer(req: &FilterRequest, key: &str, dir: &Path, hrirs: bool) -> Result<ShFilters> {
    let exe = std::env::current_exe().context("cannot find the studiocast executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("design-filters")
        .arg("--hrtf")
        .arg(&req.hrtf)
        .args(["--rate", &req.rate.to_string()])
        .args(["--order", &req.order.to_string()])
        .args(["--method", &req.method.to_string()])
        .arg("--cache-dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if req.max_re {
        cmd.arg("--max-re");
    }
    if hrirs {
        cmd.arg("--hrirs");
    }
    limit_child(&mut cmd);
    let t0 = Instant::now();
    let mut child = cmd.spawn().context("cannot start the filter designer")?;
    // Read its stderr as it comes (a parser's panic can print megabytes; a
    // full pipe would block the child), keeping the head and the tail,
    // where its own error line is.
    let reader = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || head_and_tail(e, 4096)));
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if t0.elapsed() > DESIGN_WALL {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "designing filters from {} took over {} s; the file is refused",
                req.hrtf.display(),
                DESIGN_WALL.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let result = if status.success() {
        cache::load(dir, key, req.rate, &req.design_options())
            .context("the filter designer finished but left no usable filters")
    } else {
        Err(anyhow::anyhow!("{}", designer_failure(&status, &err)))
    };
    tracing::info!(
        ms = t0.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "filters designed in a child process"
    );
    result
}

/// The first and the last `keep` bytes of a stream, read to its end.
fn head_and_tail(mut r: impl Read, keep: usize) -> String {
    let (mut head, mut tail) = (Vec::new(), std::collections::VecDeque::new());
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if head.len() < keep {
                head.push(b);
            } else {
                if tail.len() == keep {
                    tail.pop_front();
                }
                tail.push_back(b);
            }
        }
    }
    head.extend(tail);
    String::from_utf8_lossy(&head).into_owned()
}

/// Why the designer failed, in a technician's words: its own error (a
/// refused file), or the limit it ran into.
fn designer_failure(status: &std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(e) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("studiocast: error: "))
    {
        return e.to_string();
    }
    if let Some(l) = stderr.lines().find(|l| l.contains("memory allocation of")) {
        return format!(
            "the filter designer ran out of memory (memory limit {} GiB): {l}; the HRTF file is refused",
            DESIGN_MEMORY >> 30
        );
    }
    match status.signal() {
        Some(9) | Some(24) => format!(
            "the filter designer reached its CPU limit ({DESIGN_CPU_SECONDS} s); the HRTF file is refused"
        ),
        Some(6) => "the filter designer aborted (memory limit reached?)".into(),
        Some(s) => format!("the filter designer died (signal {s})"),
        None => format!("the filter designer failed ({status})"),
    }
}

/// Memory and CPU limits for the designer process.
fn limit_child(cmd: &mut std::process::Command) {
    use rustix::process::{setrlimit, Resource, Rlimit};
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; setrlimit is a plain
    // system call (async-signal-safe), nothing is allocated or locked.
    unsafe {
        cmd.pre_exec(|| {
            let lim = |n: u64| Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            setrlimit(Resource::As, lim(DESIGN_MEMORY)).map_err(std::io::Error::from)?;
            setrlimit(Resource::Cpu, lim(DESIGN_CPU_SECONDS)).map_err(std::io::Error::from)?;
            rustix::process::setpriority_process(None, DESIGN_NICE)
                .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// A private (0700) temporary folder.
fn tempdir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let p = std::env::temp_dir().join(format!(
        "studiocast-design-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&p)?;
    Ok(p)
}

/// `studiocast design-filters`: the isolated half of
/// [`filters_isolated`]. Parses the SOFA file, designs, stores in the cache.
pub fn design_command(a: DesignArgs) -> Result<()> {
    let mut opts = DesignOptions::new(a.method.parse().map_err(anyhow::Error::msg)?, a.order);
    opts.max_re = a.max_re;
    let bytes = read_bounded(&a.hrtf, MAX_SOFA_BYTES)?;
    let key = cache::cache_key(&bytes, a.rate, &opts);
    let hrtf = HrtfSet::from_sofa_bytes(&bytes, a.rate, &a.hrtf.display().to_string())?;
    designer_fault();
    let filters = design(&hrtf, &opts)?;
    cache::store(&a.cache_dir, &key, &filters)
        .with_context(|| format!("cannot store filters in {}", a.cache_dir.display()))?;
    if a.hrirs {
        hrir_cache::store(&a.cache_dir, &key, &hrtf)
            .with_context(|| format!("cannot store the HRTF set in {}", a.cache_dir.display()))?;
    }
    Ok(())
}

/// Test hook: `STUDIOCAST_FAULT_DESIGNER=alloc` makes the designer ask for
/// 16 GiB at once once a file has parsed (what sofar does with a crafted
/// file), `abort` makes it abort; the daemon must survive both. Nothing
/// else reads the variable.
fn designer_fault() {
    match std::env::var("STUDIOCAST_FAULT_DESIGNER").as_deref() {
        Ok("alloc") => {
            let mut v: Vec<u8> = Vec::new();
            // Past the child's address-space limit: the allocation fails
            // and the process aborts, as it would inside sofar.
            v.reserve_exact(16 << 30);
            v.push(1);
            std::hint::black_box(&v);
        }
        Ok("abort") => std::process::abort(),
        _ => {}
    }
}

#[derive(Debug, clap::Args)]
pub struct DesignArgs {
    #[arg(long)]
    pub hrtf: PathBuf,
    #[arg(long)]
    pub rate: u32,
    #[arg(long)]
    pub order: usize,
    #[arg(long)]
    pub method: String,
    #[arg(long)]
    pub max_re: bool,
    #[arg(long)]
    pub cache_dir: PathBuf,
    /// Also leave the set's impulse responses (for the parametric
    /// renderer, which interpolates them).
    #[arg(long)]
    pub hrirs: bool,
}
