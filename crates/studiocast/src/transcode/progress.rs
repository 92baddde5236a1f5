//! A transcode's progress: a bar with ETA on a terminal, plain lines
//! otherwise, JSON lines for the daemon's job worker.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;

/// The longest a JSON progress reader waits for a line: the job worker
/// gives a transcode up after two minutes of silence.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Where a transcode's progress goes: stderr (a bar with ETA on a
/// terminal, a plain line every 5 % otherwise), or JSON lines on stdout for
/// the daemon's job worker that runs it as a child process.
pub struct Progress {
    tty: bool,
    phase: &'static str,
    /// 0: measuring, 1: encoding.
    index: u32,
    /// Input frames, when the file says.
    pub(super) total: Option<u64>,
    /// The measuring pass's share of the whole (the rest is encoding).
    pub(super) first_share: f64,
    started: Instant,
    last_step: i64,
    /// The phase's last fraction, and when a JSON line last went out.
    last_done: f64,
    last_line: Instant,
    /// JSON lines on stdout instead of text on stderr.
    json: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            phase: "",
            index: 0,
            total: None,
            first_share: 0.5,
            started: Instant::now(),
            last_done: 0.0,
            last_line: Instant::now(),
            last_step: -1,
            json: false,
        }
    }

    /// `{"progress": %, "eta": s}` lines on stdout, every 0.5 %.
    pub fn json() -> Progress {
        Progress {
            json: true,
            tty: false,
            ..Progress::new()
        }
    }

    pub(super) fn phase(&mut self, phase: &'static str, index: u32) {
        if self.tty && !self.json && !self.phase.is_empty() {
            eprintln!();
        }
        self.phase = phase;
        self.index = index;
        self.last_step = -1;
    }

    /// How far `frames` input frames are through the file (0 when its
    /// length is unknown).
    pub(super) fn done_of(&self, frames: u64) -> f64 {
        self.total
            .filter(|t| *t > 0)
            .map_or(0.0, |t| (frames as f64 / t as f64).min(1.0))
    }

    pub(super) fn at(&mut self, frames: u64) -> Result<()> {
        if self.total.is_none_or(|t| t == 0) {
            return Ok(());
        }
        self.fraction(self.done_of(frames))
    }

    /// Nothing new to say (the length is unknown): repeat the last figure
    /// when a JSON reader would otherwise hear nothing for too long.
    pub(super) fn beat(&mut self) -> Result<()> {
        if self.json && self.last_line.elapsed() >= HEARTBEAT {
            self.last_step = -1;
            return self.fraction(self.last_done);
        }
        Ok(())
    }

    /// The current phase is `done` (0–1) through.
    pub(super) fn fraction(&mut self, done: f64) -> Result<()> {
        self.last_done = done;
        let whole = match self.index {
            0 => done * self.first_share,
            _ => self.first_share + done * (1.0 - self.first_share),
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = (whole > 0.01).then(|| elapsed * (1.0 - whole) / whole);
        if self.json {
            // Every 0.5 %, and at least every HEARTBEAT: a slow encode of
            // a long file moves 0.5 % in minutes.
            let step = (whole * 200.0) as i64;
            if step != self.last_step || self.last_line.elapsed() >= HEARTBEAT {
                self.last_step = step;
                self.last_line = Instant::now();
                let line = serde_json::json!({ "progress": whole * 100.0, "eta": eta });
                println!("{line}");
            }
            return Ok(());
        }
        let step = (done * if self.tty { 200.0 } else { 20.0 }) as i64;
        if step == self.last_step {
            return Ok(());
        }
        self.last_step = step;
        let eta = eta.unwrap_or(0.0);
        if self.tty {
            let bar: String = (0..30)
                .map(|i| if (i as f64) < done * 30.0 { '#' } else { '.' })
                .collect();
            eprint!(
                "\r{:<10} [{bar}] {:5.1} %  ETA {:>5.0} s",
                self.phase,
                done * 100.0,
                eta
            );
        } else {
            eprintln!("{} {:.0} % (ETA {:.0} s)", self.phase, done * 100.0, eta);
        }
        Ok(())
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}
