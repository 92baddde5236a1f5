//! `studiocast jobs submit|list|watch|cancel` against a real daemon, as a
//! technician types them.

mod support;

use std::process::{Command, Output};

use support::{tmpdir, write_foa, Daemon, TOKEN};

fn jobs(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_studiocast"))
        .args(["jobs", "--server", &d.url(""), "--token", TOKEN])
        .args(args)
        .env("STUDIOCAST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_technician_uploads_follows_lists_and_cancels() {
    let root = tmpdir("jobs-cli");
    let wav = root.join("Lesson 4.wav");
    write_foa(&wav, 2.0);
    let long = root.join("long.wav");
    write_foa(&long, 60.0);
    let d = Daemon::start(&root.join("data"));
    let file = wav.to_str().unwrap();
    // Upload and follow: the id, then the lesson's address.
    let out = jobs(
        &d,
        &[
            "submit",
            file,
            "--input-format",
            "ambix",
            "--order",
            "1",
            "--title",
            "Scales",
            "--loudness",
            "-18",
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let id = lines.next().unwrap().to_string();
    assert!(id.starts_with("job-"), "{stdout}");
    assert_eq!(
        lines.next(),
        Some(format!("/vod/{id}/master.m3u8").as_str())
    );
    // Without a terminal, progress is plain lines ending in the state.
    assert!(
        text(&out.stderr).contains("succeeded 100%"),
        "{}",
        text(&out.stderr)
    );
    let out = jobs(&d, &["list"]);
    let listed = text(&out.stdout);
    assert!(
        listed.contains(&id) && listed.contains("succeeded") && listed.contains("Scales"),
        "{listed}"
    );
    // One long job runs; the next waits and is cancelled.
    let out = jobs(
        &d,
        &[
            "submit",
            long.to_str().unwrap(),
            "--input-format",
            "ambix",
            "--order",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = jobs(
        &d,
        &["submit", file, "--input-format", "ambix", "--order", "1"],
    );
    let queued = text(&out.stdout).trim().to_string();
    let out = jobs(&d, &["cancel", &queued]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{queued}: cancelled"));
    let out = jobs(&d, &["watch", &queued]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cancelled"),
        "{}",
        text(&out.stderr)
    );
    let out = jobs(&d, &["list", "--state", "cancelled", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["id"], queued.as_str());
    // Refusals are the daemon's words.
    let out = jobs(
        &d,
        &["submit", "--path", "x.wav", "--input-format", "ambix"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("import_dir"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_studiocast"))
        .args(["jobs", "--server", &d.url(""), "--token", "wrong", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
}
