//! A webhook receiver on 127.0.0.1: answers each POST with the next status
//! of its script (the last one repeats) and keeps what it was sent.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Hooked {
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Hooked {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks `X-Studiocast-Signature` as a receiver would: HMAC-SHA256
    /// of "<t>.<body>" under `secret`, and `t` within five minutes.
    pub fn signed_by(&self, secret: &str) -> bool {
        let Some(sig) = self.headers.get("x-studiocast-signature") else {
            return false;
        };
        let mut t = None;
        let mut v1 = None;
        for part in sig.split(',') {
            match part.split_once('=') {
                Some(("t", x)) => t = x.parse::<i64>().ok(),
                Some(("v1", x)) => v1 = Some(x.to_string()),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&self.body);
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (now - t).abs() < 300 && want == v1
    }
}

pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Hooked>>>,
}

impl Receiver {
    /// On `port` (0: a free one).
    pub fn start(port: u16, script: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { continue };
                let Some(h) = read_request(&mut conn) else {
                    continue;
                };
                seen.lock().unwrap().push(h);
                let status = script[n.min(script.len() - 1)];
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, got }
    }

    /// A port that nothing listens on (yet).
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/studiocast", self.port)
    }

    pub fn got(&self) -> Vec<Hooked> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for at least `n` requests.
    pub fn wait(&self, n: usize, secs: u64) -> Vec<Hooked> {
        super::wait_for(&format!("{n} webhook requests"), secs, || {
            self.got.lock().unwrap().len() >= n
        });
        self.got()
    }
}

fn read_request(conn: &mut std::net::TcpStream) -> Option<Hooked> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    if !line.starts_with("POST /hooks/studiocast HTTP/1.1") {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Hooked {
        headers,
        body,
        at: Instant::now(),
    })
}
