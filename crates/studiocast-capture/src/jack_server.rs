//! A private JACK server on the dummy backend: audio capture without sound
//! hardware, for tests and rehearsals.
//!
//! jackd keeps a registry of servers in shared memory with a few slots;
//! servers that die by SIGKILL leave theirs behind and eventually "too many
//! servers already active" stops every new one. So this stops its server with
//! SIGTERM and waits, and clears stale registry files before starting when
//! no jackd process is running at all.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct JackServer {
    child: Child,
    pub name: String,
}

fn jackd_running() -> bool {
    Command::new("pgrep")
        .args(["-x", "jackd"])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn clear_stale_registry() {
    if jackd_running() {
        return;
    }
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with("jack") {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                };
            }
        }
    }
}

impl JackServer {
    /// Start `jackd -n NAME -R -d dummy` at `rate` with `channels` capture
    /// and playback ports, and wait until it answers. Realtime, as in a
    /// studio: the clients' process threads then preempt the encoders
    /// (without it, a busy two-core machine makes the graph miss cycles and
    /// a client loses a period). Where realtime scheduling is not allowed,
    /// the server runs without it (`-r`).
    pub fn start(name: &str, rate: u32, period: u32, channels: u32) -> Result<Self, String> {
        Self::start_mode(name, rate, period, channels, &["-R"])
            .or_else(|_| Self::start_mode(name, rate, period, channels, &["-r"]))
    }

    /// The same in synchronous mode (`-S`): the server waits for every
    /// client each cycle. In JACK2's default asynchronous mode a feeder
    /// client that runs late on a loaded machine hands the next client a
    /// torn cycle (some ports from this period, some from the next), which
    /// no real interface does; a test that checks samples across clients
    /// needs this. Only where needed: with 64 ports at 96 kHz, closing a
    /// client of a synchronous server hung once for good in libjack
    /// (`jack_client_close` waiting on the server's socket).
    pub fn start_synchronous(
        name: &str,
        rate: u32,
        period: u32,
        channels: u32,
    ) -> Result<Self, String> {
        Self::start_mode(name, rate, period, channels, &["-R", "-S"])
            .or_else(|_| Self::start_mode(name, rate, period, channels, &["-r", "-S"]))
    }

    fn start_mode(
        name: &str,
        rate: u32,
        period: u32,
        channels: u32,
        mode: &[&str],
    ) -> Result<Self, String> {
        clear_stale_registry();
        let child = Command::new("jackd")
            .args(["-n", name])
            .args(mode)
            .args(["-d", "dummy"])
            .args(["-r", &rate.to_string(), "-p", &period.to_string()])
            .args(["-C", &channels.to_string(), "-P", &channels.to_string()])
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run jackd (apt-get install jackd2): {e}"))?;
        let mut server = JackServer {
            child,
            name: name.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("jack_wait")
                .args(["-s", name, "-c"])
                .output()
                .map_err(|e| format!("cannot run jack_wait: {e}"))?;
            // It prints "running" or "not running".
            if String::from_utf8_lossy(&out.stdout).trim() == "running" {
                return Ok(server);
            }
            if Instant::now() > deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                return Err(format!("JACK server '{name}' did not start"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl JackServer {
    /// The jackd process (to freeze it in a test: a server that stops
    /// answering).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tool(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(tool)
            .args(args)
            .env("JACK_DEFAULT_SERVER", &self.name)
            .output()
            .map_err(|e| format!("cannot run {tool} (apt-get install jackd2): {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every port of the server.
    pub fn ports(&self) -> Result<Vec<String>, String> {
        Ok(self
            .tool("jack_lsp", &[])?
            .lines()
            .map(String::from)
            .collect())
    }

    /// Connect one output port to one input port.
    pub fn connect(&self, out: &str, inp: &str) -> Result<(), String> {
        self.tool("jack_connect", &[out, inp]).map(|_| ())
    }

    /// Wait until `count` ports start with `from` and `count` ports contain
    /// `to`, then connect them pairwise in channel order (by the number at
    /// the end of each port name).
    pub fn connect_in_order(
        &self,
        from: &str,
        to: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let key = |p: &String| {
            p.rsplit(['_', ':'])
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        };
        loop {
            let ports = self.tool("jack_lsp", &[])?;
            let mut outs: Vec<String> = ports
                .lines()
                .filter(|l| l.starts_with(from))
                .map(String::from)
                .collect();
            let mut ins: Vec<String> = ports
                .lines()
                .filter(|l| l.contains(to))
                .map(String::from)
                .collect();
            if outs.len() == count && ins.len() == count {
                outs.sort_by_key(key);
                ins.sort_by_key(key);
                for (o, i) in outs.iter().zip(&ins) {
                    self.tool("jack_connect", &[o, i])?;
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "ports '{from}*' and '*{to}*' did not appear: {ports}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for JackServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
