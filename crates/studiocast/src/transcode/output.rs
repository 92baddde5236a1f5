//! A lesson's folder: made aside (a hidden partial folder beside the
//! output, one per process), made to stand on its own (masters, playlists,
//! downloads, the loudness report), then renamed into place at once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use studiocast_media::spec::{Mix, PipelineSpec};

use super::Report;

/// The prefix of `out`'s hidden partial folders (one per process: the
/// process id follows), beside it.
pub fn partial_prefix(out: &Path) -> Option<String> {
    out.file_name()
        .map(|n| format!(".{}.partial-", n.to_string_lossy()))
}

/// A hidden sibling of `out`, new and empty.
pub(super) fn partial_dir(out: &Path) -> Result<PathBuf> {
    let stale = partial_prefix(out).context("--out needs a folder name")?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    // A partial folder left by a run that died (kill -9, a power cut) is
    // garbage: whoever runs this transcode now holds it alone (a job's
    // lease), so every earlier attempt's folder goes.
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&stale) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let partial = parent.join(format!("{stale}{}", std::process::id()));
    std::fs::create_dir(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    Ok(partial)
}

/// Make the folder stand on its own (the VOD masters as `master.m3u8`
/// and `master-player.m3u8`,
/// each rendition's VOD playlist as the `index.m3u8` the master names,
/// a download per rendition, the loudness report), then rename it into
/// place.
pub(super) fn publish(
    partial: &Path,
    out: &Path,
    spec: &PipelineSpec,
    report: &Report,
    poster: Option<&[u8]>,
) -> Result<()> {
    for (vod, plain) in [
        ("master-vod.m3u8", "master.m3u8"),
        ("master-player-vod.m3u8", "master-player.m3u8"),
    ] {
        std::fs::copy(partial.join(vod), partial.join(plain))
            .with_context(|| format!("no {vod} in {}", partial.display()))?;
    }
    let video = spec
        .video
        .iter()
        .flat_map(|v| v.renditions.iter().map(|r| &r.id));
    for id in spec.audio.renditions.iter().map(|r| &r.id).chain(video) {
        let d = partial.join(id);
        std::fs::copy(d.join("vod.m3u8"), d.join("index.m3u8"))
            .with_context(|| format!("no VOD playlist for {id}"))?;
    }
    if let Some(jpeg) = poster {
        std::fs::write(partial.join("poster.jpg"), jpeg)?;
    }
    write_downloads(partial, spec)?;
    std::fs::write(
        partial.join("loudness.json"),
        serde_json::to_vec_pretty(report)?,
    )?;
    std::fs::rename(partial, out).with_context(|| {
        format!(
            "cannot move the lesson from {} to {}",
            partial.display(),
            out.display()
        )
    })?;
    Ok(())
}

/// Each audio rendition a listener can play as a file to download
/// (`downloads/{id}.m4a`): its initialisation segment and media segments,
/// in the VOD playlist's order, make a fragmented MP4 that players and
/// editors open as a whole. Copied in streaming, so memory stays flat
/// whatever the length. Not the ambisonic one: a player would play W, Y,
/// Z, X as four loudspeakers.
fn write_downloads(partial: &Path, spec: &PipelineSpec) -> Result<()> {
    let dir = partial.join("downloads");
    std::fs::create_dir_all(&dir)?;
    for r in spec
        .audio
        .renditions
        .iter()
        .filter(|r| r.mix != Mix::Ambisonic)
    {
        let src = partial.join(&r.id);
        let playlist = std::fs::read_to_string(src.join("vod.m3u8"))
            .with_context(|| format!("no VOD playlist for {}", r.id))?;
        let mut files = Vec::new();
        for line in playlist.lines() {
            if let Some(uri) = line
                .strip_prefix("#EXT-X-MAP:URI=\"")
                .and_then(|l| l.split('"').next())
            {
                anyhow::ensure!(
                    files.is_empty(),
                    "{}: more than one initialisation segment",
                    r.id
                );
                files.push(uri.to_string());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                files.push(line.trim().to_string());
            }
        }
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{}.m4a", r.id)))?);
        for f in files {
            // Names from our own packager; still, nothing outside the folder.
            anyhow::ensure!(
                !f.contains('/') && !f.starts_with('.'),
                "{}: odd segment name {f}",
                r.id
            );
            let mut seg = std::fs::File::open(src.join(&f))
                .with_context(|| format!("{}: missing {f}", r.id))?;
            std::io::copy(&mut seg, &mut out)?;
        }
        std::io::Write::flush(&mut out)?;
    }
    Ok(())
}
