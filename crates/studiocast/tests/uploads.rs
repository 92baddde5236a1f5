//! Uploaded recordings (`POST /api/v1/jobs`, multipart) against a real
//! daemon: a lesson from an upload; a body over the limit refused before
//! it is read, or cut off where it passes the limit, with nothing left on
//! disk; broken forms refused; nothing queued when the disk is short.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use support::{api, ffprobe_streams, request, tmpdir, wait_for, write_foa, Daemon, TOKEN};

const BOUNDARY: &str = "----studiocast-test-boundary";

fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, file, data) in parts {
        b.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(f) => b.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn upload(d: &Daemon, body: &[u8]) -> support::Response {
    let auth = format!("Bearer {TOKEN}");
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    request(
        &d.addr,
        "POST",
        "/api/v1/jobs",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        body,
    )
}

/// Files left in the uploads folder (partial or not).
fn leftovers(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(data.join("uploads")) {
        for e in rd.flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn an_uploaded_recording_becomes_a_lesson_and_its_upload_is_removed() {
    let root = tmpdir("upload-ok");
    let data = root.join("data");
    let wav = root.join("take.wav");
    write_foa(&wav, 3.0);
    let bytes = std::fs::read(&wav).unwrap();
    let d = Daemon::start(&data);
    let spec = br#"{"input_format": "ambix", "order": 1, "title": "Upload"}"#;
    let r = upload(
        &d,
        &form(&[
            ("spec", None, spec),
            ("file", Some("../../take 1.wav"), &bytes),
        ]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let job = r.json();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["source"]["upload"], format!("{id}/take_1.wav"));
    let mut last = serde_json::Value::Null;
    wait_for("the upload's job", 120, || {
        last = api(&d, "GET", &format!("/api/v1/jobs/{id}"), None).json();
        last["state"] == "succeeded" || last["state"] == "failed"
    });
    assert_eq!(last["state"], "succeeded", "{last}");
    let streams = ffprobe_streams(&d.url(&format!("/vod/{id}/master.m3u8")));
    assert!(
        streams.iter().any(|s| s["codec_name"] == "aac"),
        "{streams:?}"
    );
    // The lesson is kept; the upload is not.
    // Removed just after the job's end is recorded.
    wait_for("the upload to go", 5, || leftovers(&data).is_empty());
    // The file part may come first too.
    let r = upload(
        &d,
        &form(&[("file", Some("b.wav"), &bytes), ("spec", None, spec)]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn an_upload_over_the_limit_is_refused_before_it_is_read_or_cut_off() {
    let root = tmpdir("upload-limit");
    let data = root.join("data");
    let d = Daemon::start_with(
        &data,
        &support::repo().join("pipelines"),
        &[("STUDIOCAST_MAX_UPLOAD_MB", "1")],
    );
    // A declared 50 MB: the answer comes while the client has sent only
    // the head (a server that read the body first would wait for ever).
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: 50000000\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).expect("an answer before the body");
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("max_upload_mb"), "{head}");
    // Chunked, no length: cut off where it passes 1 MiB, nothing kept.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // Read while writing: the answer comes before the body ends.
    let mut rd = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = rd.read_to_end(&mut answer);
        answer
    });
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
    );
    let chunk = |s: &mut TcpStream, b: &[u8]| {
        let _ = write!(s, "{:x}\r\n", b.len());
        let _ = s.write_all(b);
        let _ = s.write_all(b"\r\n");
    };
    chunk(&mut s, head.as_bytes());
    let block = vec![0x55u8; 64 * 1024];
    for _ in 0..40 {
        chunk(&mut s, &block); // 2.5 MiB offered; the server stops at 1
    }
    let answer = reader.join().unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A part whose headers never end: refused once the parser would hold
    // more than 1 MiB of them, not buffered until memory runs out.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rd = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = rd.read_to_end(&mut answer);
        answer
    });
    let _ = write!(
        s,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\nX-Pad: ");
    chunk(&mut s, head.as_bytes());
    let pad = vec![b'a'; 64 * 1024];
    for _ in 0..32 {
        chunk(&mut s, &pad); // 2 MiB of one header line
    }
    let answer = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("headers or preamble"), "{answer}");
    wait_for("the partial upload to go", 5, || {
        leftovers(&data).is_empty()
    });
    // The daemon is fine.
    assert_eq!(api(&d, "GET", "/api/v1/jobs", None).status, 200);
}

#[test]
fn broken_forms_are_refused_with_nothing_left_and_a_short_disk_queues_nothing() {
    let root = tmpdir("upload-bad");
    let data = root.join("data");
    let d = Daemon::start(&data);
    let wav = b"RIFF....WAVE";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (form(&[("file", Some("a.wav"), wav)]), "no \"spec\""),
        (
            form(&[("spec", None, br#"{"input_format": "ambix"}"#)]),
            "no \"file\"",
        ),
        (
            form(&[
                ("spec", None, br#"{"input_format": "ambix", "colour": 1}"#),
                ("file", Some("a.wav"), wav),
            ]),
            "colour",
        ),
        (
            form(&[
                (
                    "spec",
                    None,
                    br#"{"input_format": "ambix", "path": "x.wav"}"#,
                ),
                ("file", Some("a.wav"), wav),
            ]),
            "path",
        ),
        (
            form(&[
                ("spec", None, br#"{"input_format": "ambix"}"#),
                ("notes", None, b"hi"),
                ("file", Some("a.wav"), wav),
            ]),
            "notes",
        ),
        (
            form(&[
                ("spec", None, br#"{"input_format": "ambix"}"#),
                ("file", Some("a.wav"), b""),
            ]),
            "empty",
        ),
        (b"--nonsense".to_vec(), "multipart"),
    ];
    for (body, says) in &cases {
        let r = upload(&d, body);
        assert_eq!(r.status, 400, "{says}: {}", r.text());
        let message = r.json()["message"].as_str().unwrap_or("").to_string();
        assert!(message.contains(says), "{says}: {message}");
        wait_for(&format!("{says}: nothing left"), 5, || {
            leftovers(&data).iter().all(|f| !f.starts_with(".partial"))
        });
    }
    let jobs = api(&d, "GET", "/api/v1/jobs", None).json();
    assert_eq!(jobs.as_array().unwrap().len(), 0, "{jobs}");
    drop(d);
    // Below the recording threshold: neither an upload nor a path job.
    let import = root.join("import");
    std::fs::create_dir_all(&import).unwrap();
    write_foa(&import.join("a.wav"), 1.0);
    let d = Daemon::start_with(
        &data,
        &support::repo().join("pipelines"),
        &[
            ("STUDIOCAST_MIN_FREE_MB", "999999999"),
            ("STUDIOCAST_IMPORT_DIR", import.to_str().unwrap()),
        ],
    );
    let r = upload(
        &d,
        &form(&[
            ("spec", None, br#"{"input_format": "ambix"}"#),
            ("file", Some("a.wav"), wav),
        ]),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("min_free_mb"), "{}", r.text());
    let r = api(
        &d,
        "POST",
        "/api/v1/jobs",
        Some(r#"{"path": "a.wav", "input_format": "ambix"}"#),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    wait_for("nothing left", 5, || {
        leftovers(&data).iter().all(|f| !f.starts_with(".partial"))
    });
}

/// Uploads running at once hold their declared length against the free
/// space: together they never take the disk below `min_free_mb`.
#[test]
fn uploads_at_once_share_the_room_above_the_threshold() {
    let root = tmpdir("upload-room");
    let st = rustix::fs::statvfs(&root).unwrap();
    let free_mb = st.f_bavail * st.f_frsize / (1024 * 1024);
    // 64 MiB of room above the threshold (other tests write meanwhile: a
    // few MB either way does not change what follows).
    let min_free = (free_mb - 64).to_string();
    let d = Daemon::start_with(
        &root.join("data"),
        &support::repo().join("pipelines"),
        &[("STUDIOCAST_MIN_FREE_MB", min_free.as_str())],
    );
    let head = |len: usize| {
        format!(
            "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: {len}\r\n\r\n"
        )
    };
    // A: 40 MiB declared, body still to come: its room is held.
    let forty = 40 << 20;
    let mut a = TcpStream::connect(&d.addr).unwrap();
    write!(a, "{}", head(forty)).unwrap();
    a.write_all(format!("--{BOUNDARY}\r\n").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // B: another 40 MiB does not fit beside it.
    let mut b = TcpStream::connect(&d.addr).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(b, "{}", head(forty)).unwrap();
    let mut buf = [0u8; 1024];
    let n = b.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("held by uploads"), "{answer}");
    // A gives up: its room comes back, and a whole 40 MiB upload fits.
    drop(a);
    std::thread::sleep(Duration::from_millis(500));
    let file = vec![0u8; forty - 4096];
    let body = form(&[
        ("spec", None, br#"{"input_format": "ambix", "order": 1}"#),
        ("file", Some("big.wav"), &file),
    ]);
    let r = upload(&d, &body);
    assert_eq!(r.status, 201, "{}", r.text());
}
