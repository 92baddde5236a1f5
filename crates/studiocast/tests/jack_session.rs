//! A studio session from a 16-channel JACK interface (the JACK dummy
//! backend, no hardware): third-order AmbiX in, binaural HLS out. And the
//! clear error when the interface is absent.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use studiocast_audiofile::pcm::PcmReader;
use studiocast_audiofile::AudioSource;
use support::*;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn jack_16ch_session_gives_binaural_hls_and_missing_jack_is_a_clear_error() {
    let server = format!("studiocast-e2e-{}", std::process::id());
    // Before the server exists, the preset must fail to start, clearly.
    std::env::set_var("JACK_DEFAULT_SERVER", &server);
    let d = Daemon::start(&tmpdir("jack"));
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"jack-16ch-3oa","title":"No JACK"}"#),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("JACK"), "{}", r.text());
    assert_eq!(get(&d, "/healthz").status, 200, "the daemon stays up");
    // The attempt is on record as failed, with the reason (not left
    // "starting", which a restart would call interrupted).
    let list = api(&d, "GET", "/api/v1/sessions", None).json();
    let rec = &list.as_array().unwrap()[0];
    assert_eq!(rec["state"], "failed", "{list}");
    assert!(
        rec["error"].as_str().unwrap_or("").contains("JACK"),
        "{list}"
    );

    let _jackd =
        studiocast_capture::jack_server::JackServer::start_synchronous(&server, 48_000, 1024, 16)
            .expect("JACK dummy server");
    // The device listing now shows the JACK input.
    let devs = api(&d, "GET", "/api/v1/devices", None);
    assert_eq!(devs.status, 200);
    assert!(
        devs.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["host"] == "JACK" && x["max_input_channels"].as_u64().unwrap_or(0) >= 16),
        "{}",
        devs.text()
    );
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"jack-16ch-3oa","title":"Quartet"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();

    // The known signal: 3 s of silence (while the 16 ports are wired, so
    // every channel starts on the same frame), then white noise encoded as a
    // third-order AmbiX plane wave from the left (azimuth +90°; SN3D gains,
    // ACN order) plus a distinct quiet sine per channel.
    let gains = [
        1.0, 1.0, 0.0, 0.0, 0.0, 0.0, -0.5, 0.0, -0.866, -0.791, 0.0, -0.612, 0.0, 0.0, 0.0, 0.0,
    ];
    let (lead, body) = (3 * 48_000usize, 14 * 48_000usize);
    let mut planes = vec![vec![0.0f32; lead + body]; 16];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..body {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4;
        for (c, g) in gains.iter().enumerate() {
            let f = 220.0 + 110.0 * c as f32;
            let sine = 0.01 * (2.0 * std::f32::consts::PI * f * i as f32 / 48_000.0 + 1.0).sin();
            planes[c][lead + i] = g * noise + sine;
        }
    }
    let signal = d.data.join("feed.wav");
    {
        let mut w = studiocast_audiofile::pcm::PcmWriter::create(
            &signal,
            16,
            48_000,
            studiocast_audiofile::pcm::SampleFormat::F32,
        )
        .unwrap();
        let refs: Vec<&[f32]> = planes.iter().map(|p| &p[..]).collect();
        w.write_planar(&refs).unwrap();
        w.finalize().unwrap();
    }
    let _feeder = Kill(
        Command::new("gst-launch-1.0")
            .args(["-q", "filesrc"])
            .arg(format!("location={}", signal.display()))
            .args([
                "!",
                "wavparse",
                "!",
                "audioconvert",
                "!",
                "jackaudiosink",
                "connect=none",
                "client-name=feeder",
                // A deep buffer, so the feeder never underruns while the
                // test machine's two cores are busy encoding.
                "buffer-time=2000000",
            ])
            .env("JACK_DEFAULT_SERVER", &server)
            .stdout(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0"),
    );
    _jackd
        .connect_in_order("feeder:", "_in:", 16, Duration::from_secs(20))
        .expect("feeder connected to the capture ports");
    wait_for("three segments", 40, || {
        media_playlist(&get(&d, &format!("/live/{id}/binaural/index.m3u8")).text())
            .1
            .len()
            >= 3
    });
    // The technician's view of the input.
    let st = api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json();
    let inp = &st["inputs"];
    eprintln!("input status: {inp}");
    assert!(
        inp["audio_source"]
            .as_str()
            .unwrap_or("")
            .starts_with("JACK"),
        "{st}"
    );
    assert!(
        inp["audio_frames_in"].as_u64().unwrap_or(0) > 48_000,
        "{st}"
    );
    assert_eq!(inp["overruns"], 0, "{st}");
    assert!(inp["last_block_age_s"].as_f64().unwrap() < 1.0, "{st}");
    // The capture delay holds its target: the drift loop takes out the
    // clock error. (The dummy backend runs synchronous with 1024-frame
    // periods: at 256 frames on a loaded machine its clock stalls a few ms
    // at a time, a device no studio has, and the offset followed it.)
    let offset = || {
        let st = api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json();
        (
            st["inputs"]["av_offset_ms"].as_f64().unwrap(),
            st["inputs"].clone(),
        )
    };
    let mut seen = Vec::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let (o, inp) = offset();
        seen.push(o);
        // A cycle the dummy backend loses (an xrun, counted from the
        // capture timestamps) moves the offset by its length until the
        // drift loop takes it back at 1 ms a second: the bound allows all
        // the session has lost so far (a running total, so it never
        // tightens as the loop recovers).
        let lost = inp["xrun_ms"].as_f64().unwrap_or(0.0);
        assert!(
            o.abs() < 20.0 + lost,
            "A/V offset {o} ms, {lost} ms lost in xruns (so far {seen:.1?}); {inp}"
        );
    }
    eprintln!("A/V offset over 10 s: {seen:.1?}; {}", offset().1);
    // The meters show each interface channel at the level fed: W carries
    // the noise (-18.7 dBFS RMS), Z only its -43 dBFS sine.
    let (mut ws, _) = tungstenite::connect(format!(
        "ws://{}/api/v1/sessions/{id}/meters?token={TOKEN}",
        d.addr
    ))
    .expect("meters socket");
    let level = |f: &serde_json::Value, name: &str| {
        f["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["rms_dbfs"].as_f64().unwrap())
            .unwrap_or_else(|| panic!("no meter {name}: {f}"))
    };
    let mut frame = serde_json::Value::Null;
    for _ in 0..100 {
        if let tungstenite::Message::Text(t) = ws.read().expect("a reading") {
            frame = serde_json::from_str(&t).unwrap();
            if level(&frame, "in 1") > -30.0 {
                break;
            }
        }
    }
    eprintln!("meters: {frame}");
    assert!((level(&frame, "in 1") + 18.7).abs() < 1.0, "{frame}");
    assert!((level(&frame, "in 3") + 43.0).abs() < 1.0, "{frame}");
    // Labelled by role from the preset's channel map (third-order AmbiX).
    let role = |name: &str| {
        frame["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["role"].clone())
    };
    assert_eq!(role("in 1"), Some(serde_json::json!("W")), "{frame}");
    assert_eq!(role("in 4"), Some(serde_json::json!("X")), "{frame}");
    assert_eq!(role("in 16"), Some(serde_json::json!("P")), "{frame}");
    assert!(
        level(&frame, "binaural L") > level(&frame, "binaural R"),
        "{frame}"
    );
    drop(ws);
    // The binaural rendition carries the interface's signal, louder on the left.
    std::thread::sleep(Duration::from_secs(4));
    let pcm = decode_audio(&d.url(&format!("/live/{id}/binaural/index.m3u8")), 4);
    let n = pcm.len() / 2;
    assert!(n > 48_000, "decoded {n} frames");
    let tail = &pcm[pcm.len() / 2..];
    let (mut el, mut er) = (0.0f64, 0.0f64);
    for f in tail.chunks_exact(2) {
        el += (f[0] as f64).powi(2);
        er += (f[1] as f64).powi(2);
    }
    let rms = ((el + er) / tail.len() as f64).sqrt();
    assert!(rms > 1e-3, "binaural rendition is silent (rms {rms})");
    assert!(
        el > 1.5 * er,
        "a source at the left must be louder on the left: {el} vs {er}"
    );
    let xruns_at_stop = offset().1["xruns"].as_u64().unwrap();
    let s = api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    assert_eq!(s.json()["state"], "ended", "{}", s.text());

    // The untouched master of the finished session: 16 channels at 48 kHz,
    // a proper header, as long as the session, with the signal on W.
    let sdir = d.data.join("sessions").join(&id);
    let mut m = PcmReader::open(&sdir.join("master.wav")).expect("master.wav");
    assert!(m.info().size_was_valid, "finalised header");
    assert_eq!((m.channels(), m.sample_rate()), (16, 48_000));
    let secs = m.frames().unwrap() as f64 / 48_000.0;
    assert!(secs > 8.0, "master holds {secs} s");
    let mut got = vec![Vec::new(); 16];
    m.read_planar(usize::MAX, &mut got).unwrap();
    // Bit-exact: find where the fed signal starts in the master, then every
    // sample of every channel must be the very float that was fed, in
    // order. The only thing allowed to interrupt it is a period the server
    // dropped before our client saw it, and each must be an xrun on record.
    let start = got[0]
        .iter()
        .position(|v| *v != 0.0)
        .expect("the signal reached the master");
    let fed0 = &planes[0][lead..];
    let (inserted, skipped, n) = align(fed0, &got[0][start..]).unwrap();
    assert!(n >= 5 * 48_000, "only {n} frames of signal in the master");
    eprintln!("master vs feed: silence inserted {inserted:?}, feed frames missing {skipped:?}");
    assert!(inserted.is_empty(), "silence in the master: {inserted:?}");
    assert!(
        skipped.len() as u64 <= xruns_at_stop,
        "{} feed periods missing from the master, {xruns_at_stop} xruns reported: {skipped:?}",
        skipped.len()
    );
    // Every other channel follows the same path, frame for frame: the 16
    // channels stay in lockstep through every gap.
    for c in 1..16 {
        let want = replay(&planes[c][lead..], &inserted, &skipped, n);
        let rec = &got[c][start..start + n];
        if let Some(j) = want
            .iter()
            .zip(rec)
            .position(|(a, b)| a.to_bits() != b.to_bits())
        {
            panic!(
                "channel {}: recorded frame {j} differs (expected {}, recorded {})",
                c + 1,
                want[j],
                rec[j]
            );
        }
        assert!(
            got[c][..start].iter().all(|v| *v == 0.0),
            "channel {} starts early",
            c + 1
        );
    }
    eprintln!(
        "master: {n} frames ({:.1} s) of 16 channels bit-exact, starting at frame {start}",
        n as f64 / 48_000.0
    );
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sdir.join("master.json")).unwrap()).unwrap();
    assert_eq!(sidecar["channels"], 16);
    assert_eq!(sidecar["channel_map"]["ambisonic"]["order"], 3);

    // kill -9 mid-session: the master survives up to the last second, and
    // the next start repairs it and marks the session interrupted.
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"jack-16ch-3oa","title":"Crash"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let crash = r.json()["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    wait_for("crash session live", 30, || {
        api(&d, "GET", &format!("/api/v1/sessions/{crash}"), None).json()["state"] == "live"
    });
    std::thread::sleep(Duration::from_secs(5));
    let had_parts = get(&d, &format!("/live/{crash}/720p/index.m3u8"))
        .text()
        .contains("#EXT-X-PART:");
    // What the interface had delivered just before the kill: the master
    // holds that (less the ring's few blocks) plus what came after.
    let st = api(&d, "GET", &format!("/api/v1/sessions/{crash}"), None).json();
    let frames_in = st["inputs"]["audio_frames_in"].as_f64().unwrap();
    let t1 = Instant::now();
    let data = d.data.clone();
    let mut d = d;
    let killed_after = t0.elapsed().as_secs_f64();
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let fed_secs = frames_in / 48_000.0 + t1.elapsed().as_secs_f64();
    let cdir = data.join("sessions").join(&crash);
    let raw = PcmReader::open(&cdir.join("master.wav")).expect("master readable after kill -9");
    let raw_secs = raw.frames().unwrap() as f64 / 48_000.0;
    drop(raw);
    let d = Daemon::start(&data);
    let rec = api(&d, "GET", &format!("/api/v1/sessions/{crash}"), None).json();
    assert_eq!(rec["state"], "interrupted", "{rec}");
    let msg = rec["error"].as_str().unwrap_or("");
    assert!(msg.contains("master recovered"), "{msg}");
    assert!(msg.contains("stream republished"), "{msg}");
    assert!(msg.contains("program video kept"), "{msg}");
    let video_secs = ffprobe_duration(&cdir.join("program.mp4").display().to_string());
    assert!(
        video_secs >= 3.0,
        "program video after kill -9: {video_secs} s"
    );
    // What was streamed before the crash is published as a finished stream.
    let vod = get(&d, &format!("/vod/{crash}/binaural/index.m3u8")).text();
    assert!(vod.trim_end().ends_with("#EXT-X-ENDLIST"), "{vod}");
    let recovered = decode_audio(&d.url(&format!("/vod/{crash}/binaural/index.m3u8")), 60);
    assert!(
        recovered.len() / 2 >= 2 * 48_000,
        "{} frames",
        recovered.len() / 2
    );
    let live = get(&d, &format!("/live/{crash}/720p/index.m3u8")).text();
    assert!(live.trim_end().ends_with("#EXT-X-ENDLIST"), "{live}");
    // The session was low-latency: parts were being published when it was
    // killed. Recovery republishes whole segments only, all decodable.
    assert!(
        had_parts,
        "the crash session listed no parts before the kill"
    );
    for r in ["720p", "360p"] {
        assert_whole_segments(&d, &crash, r, 30.0);
    }
    for r in ["binaural", "stereo"] {
        assert_whole_segments(&d, &crash, r, 48_000.0 / 1024.0);
    }
    let m = PcmReader::open(&cdir.join("master.wav")).unwrap();
    assert!(m.info().size_was_valid, "header repaired at start");
    let secs = m.frames().unwrap() as f64 / 48_000.0;
    eprintln!(
        "kill -9 after {killed_after:.1} s: {fed_secs:.2} s delivered, the master's header said {raw_secs:.2} s, repaired to {secs:.2} s"
    );
    // The README: the header is refreshed every second, so a crash loses
    // at most about a second. The repair recovers what reached the file
    // (the writer thread empties its ring every 20 ms), the stale header
    // alone lags by up to its refresh period.
    assert!(
        secs >= fed_secs - 1.0 && secs <= fed_secs + 0.1,
        "recovered {secs:.2} s of {fed_secs:.2} s"
    );
    assert!(
        raw_secs >= fed_secs - 1.25 && raw_secs <= secs,
        "the header said {raw_secs:.2} s of {fed_secs:.2} s"
    );
}

/// (position, length) runs.
type Gaps = Vec<(usize, usize)>;

/// Walk the fed channel and the recorded one together. Returns the runs of
/// silence the recording has that the feed has not (position in the
/// recording, length), the feed frames the recording lacks (position in the
/// feed, length), and how many recorded frames were compared; any other
/// difference is an error that says where it is.
fn align(fed: &[f32], rec: &[f32]) -> Result<(Gaps, Gaps, usize), String> {
    const PROBE: usize = 16;
    let same = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut inserted, mut skipped) = (Vec::new(), Vec::new());
    while i < fed.len() && j < rec.len() {
        if fed[i].to_bits() == rec[j].to_bits() {
            i += 1;
            j += 1;
            continue;
        }
        let zeros = rec[j..].iter().take_while(|v| **v == 0.0).count();
        if j + zeros == rec.len() {
            break; // the recording's silent tail, after the feed ended
        }
        let probe = &rec[j + zeros..(j + zeros + PROBE).min(rec.len())];
        let Some(k) = (0..=9_600).find(|k| {
            i + k + probe.len() <= fed.len() && same(&fed[i + k..i + k + probe.len()], probe)
        }) else {
            return Err(format!(
                "recorded frame {j} (fed frame {i}) differs: fed {}, recorded {}; {zeros} zeros follow; so far inserted {inserted:?}, skipped {skipped:?}",
                fed[i], rec[j]
            ));
        };
        if zeros > 0 {
            inserted.push((j, zeros));
        }
        if k > 0 {
            skipped.push((i, k));
        }
        i += k;
        j += zeros;
    }
    Ok((inserted, skipped, j))
}

/// What the recording of `fed` must be, `n` frames long, with the silence
/// runs and the missing feed frames `align` found on another channel.
fn replay(fed: &[f32], inserted: &Gaps, skipped: &Gaps, n: usize) -> Vec<f32> {
    let (mut ins, mut skip) = (inserted.iter().peekable(), skipped.iter().peekable());
    let (mut i, mut out) = (0usize, Vec::with_capacity(n));
    while out.len() < n {
        if let Some(&(_, z)) = ins.next_if(|&&(j, _)| j == out.len()) {
            out.extend(std::iter::repeat_n(0.0, z));
        } else if let Some(&(_, k)) = skip.next_if(|&&(at, _)| at == i) {
            i += k;
        } else {
            out.push(fed.get(i).copied().unwrap_or(0.0));
            i += 1;
        }
    }
    out.truncate(n);
    out
}
