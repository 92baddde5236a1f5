//! Shared by the per-rate tests (each its own process: libjack does not
//! reconnect to a second server within one process).
//! Real capture through cpal from a JACK dummy server (no sound hardware):
//! a GStreamer feeder plays a distinct sine on each of N channels, and every
//! channel arrives in the capture ring with its own tone.

#![allow(dead_code)]
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use studiocast_capture::device::{open, CaptureConfig};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn freq(c: usize) -> f64 {
    300.0 + 150.0 * c as f64
}

/// Goertzel power of `f` in `x`.
fn power(x: &[f32], f: f64, rate: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for v in x {
        let s = *v as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
}

pub fn capture_at(rate: u32, channels: usize) {
    #[allow(non_snake_case)]
    let CH = channels;
    let server = format!("studiocast-test-{}", std::process::id());
    // Only this test lives in this binary, so setting the variable is safe.
    std::env::set_var("JACK_DEFAULT_SERVER", &server);
    let _jackd = studiocast_capture::jack_server::JackServer::start(&server, rate, 256, CH as u32)
        .expect("JACK dummy server");

    let mut cap = open(&CaptureConfig {
        host: "JACK".into(),
        device: None,
        channels: CH as u16,
        rate,
        ring_frames: rate as usize * 2,
    })
    .expect("cpal JACK capture");

    // The feeder: one sine per channel, interleaved, into JACK unconnected.
    // No audioconvert: its channel mixer stops at 63 channels, and
    // interleave already gives jackaudiosink float samples.
    let mut args: Vec<String> = vec![
        "-q".into(),
        "interleave".into(),
        "name=i".into(),
        "!".into(),
    ];
    args.extend(["jackaudiosink", "connect=none", "client-name=feeder"].map(String::from));
    for c in 0..CH {
        args.extend([
            "audiotestsrc".to_string(),
            "is-live=true".into(),
            format!("freq={}", freq(c)),
            "volume=0.3".into(),
            "!".into(),
            format!("audio/x-raw,format=F32LE,rate={rate},channels=1"),
            "!".into(),
            format!("i.sink_{c}"),
        ]);
    }
    let _feeder = Kill(
        Command::new("gst-launch-1.0")
            .args(&args)
            .env("JACK_DEFAULT_SERVER", &server)
            .stdout(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0 is required"),
    );
    _jackd
        .connect_in_order("feeder:", "_in:", CH, Duration::from_secs(30))
        .expect("feeder connected to the capture ports");

    // Nobody drained the ring while 64 ports were wired (about 3 s at
    // 50 ms each), so count overruns from here on.
    while cap.consumer.fill_frames() > 0 {
        let n = cap.consumer.fill_frames().min(1024);
        let mut scratch = vec![0.0f32; CH * n];
        cap.consumer.pop_planar(n, &mut scratch);
    }
    let overruns_before = cap
        .stats
        .overruns
        .load(std::sync::atomic::Ordering::Relaxed);
    // Drain for a while, then analyse one second.
    let block = 1024;
    let mut planar = vec![0.0f32; CH * block];
    let mut chans: Vec<Vec<f32>> = vec![Vec::new(); CH];
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        if cap.consumer.fill_frames() >= block {
            cap.consumer.pop_planar(block, &mut planar);
            if start.elapsed() > Duration::from_millis(1200) {
                for (c, ch) in chans.iter_mut().enumerate() {
                    ch.extend_from_slice(&planar[c * block..(c + 1) * block]);
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(
        chans[0].len() >= rate as usize / 2,
        "{rate} Hz: only {} frames captured",
        chans[0].len()
    );
    for (c, x) in chans.iter().enumerate() {
        let own = power(x, freq(c), rate);
        let rms = (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
        assert!(rms > 0.05, "{rate} Hz, channel {c}: rms {rms}");
        for o in (0..CH).filter(|&o| o != c) {
            let other = power(x, freq(o), rate);
            assert!(
                own > 100.0 * other,
                "channel {c}: tone of channel {o} is within 20 dB"
            );
        }
    }
    let st = &cap.stats;
    assert_eq!(
        st.overruns.load(std::sync::atomic::Ordering::Relaxed) - overruns_before,
        0,
        "ring overruns while drained"
    );
}
