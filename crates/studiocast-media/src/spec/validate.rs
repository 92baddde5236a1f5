//! Preset validation: everything that reaches GStreamer, a device or a
//! playlist is checked when the preset loads, with the reason.

use super::*;

pub(super) fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Text that goes into a playlist attribute: printable, no quotes.
fn label_ok(s: &str) -> bool {
    !s.trim().is_empty()
        && s.chars().count() <= 64
        && !s.chars().any(|c| c.is_control() || c == '"')
}

impl VideoSpec {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.framerate) {
            return Err(format!("framerate {} is outside 1..=60", self.framerate));
        }
        if self.renditions.is_empty() || self.renditions.len() > 6 {
            return Err("the video ladder needs 1 to 6 [[video.rendition]]".into());
        }
        for (i, r) in self.renditions.iter().enumerate() {
            if !id_ok(&r.id) || self.renditions[..i].iter().any(|o| o.id == r.id) {
                return Err(format!(
                    "video rendition id '{}' is invalid or repeated",
                    r.id.escape_debug()
                ));
            }
            if !(16..=3840).contains(&r.width)
                || !(16..=2160).contains(&r.height)
                || r.width % 2 == 1
                || r.height % 2 == 1
            {
                return Err(format!(
                    "video rendition '{}': size {}x{} is not an even size up to 3840x2160",
                    r.id, r.width, r.height
                ));
            }
            if !(100..=50_000).contains(&r.bitrate_kbps) {
                return Err(format!(
                    "video rendition '{}': bitrate {} kb/s is outside 100..=50000",
                    r.id, r.bitrate_kbps
                ));
            }
            if !["high", "main", "baseline"].contains(&r.profile.as_str()) {
                return Err(format!(
                    "video rendition '{}': profile '{}' (high, main or baseline)",
                    r.id,
                    r.profile.escape_debug()
                ));
            }
        }
        match &self.source {
            VideoSource::TestPattern { pattern } if !TEST_PATTERNS.contains(&pattern.as_str()) => {
                Err(format!(
                    "test pattern '{pattern}' is unknown (one of {})",
                    TEST_PATTERNS.join(", ")
                ))
            }
            VideoSource::Decklink { mode, .. } if !DECKLINK_MODES.contains(&mode.as_str()) => {
                Err(format!(
                    "DeckLink mode '{mode}' is unknown (auto, 1080p25, 1080i50, 720p50, … as GStreamer names them)"
                ))
            }
            VideoSource::V4l2 { device }
                if !device.starts_with("/dev/")
                    || device.contains("..")
                    || device.chars().any(|c| c.is_control()) =>
            {
                Err(format!("V4L2 device '{}' is not a /dev path", device.escape_debug()))
            }
            VideoSource::Srt(s) => s.validate(),
            _ => Ok(()),
        }
    }
}

impl SrtInput {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err("SRT port 0".into());
        }
        if !(20..=8000).contains(&self.latency_ms) {
            return Err(format!(
                "SRT latency {} ms is outside 20..=8000",
                self.latency_ms
            ));
        }
        if !(200..=30_000).contains(&self.loss_timeout_ms) {
            return Err(format!(
                "SRT loss timeout {} ms is outside 200..=30000",
                self.loss_timeout_ms
            ));
        }
        match &self.passphrase {
            Some(p) if !(10..=79).contains(&p.len()) || p.chars().any(|c| c.is_control()) => {
                return Err("SRT passphrase must be 10–79 printable characters".into());
            }
            None if self.mode == SrtMode::Listener && !self.allow_unencrypted => {
                return Err(
                    "an SRT listener needs a passphrase (anyone who reaches the port could feed the program); set allow_unencrypted = true to accept that"
                        .into(),
                );
            }
            _ => {}
        }
        let uri_safe = |x: &str| {
            !x.is_empty()
                && x.len() <= 255
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
        };
        if !self.address.as_deref().is_none_or(uri_safe)
            || !self.stream_id.as_deref().is_none_or(uri_safe)
        {
            return Err("SRT address and stream id take 1–255 of [A-Za-z0-9-._:[]]".into());
        }
        Ok(())
    }
}

impl ChannelMap<'_> {
    pub(super) fn validate(&self) -> Result<(), String> {
        let n = self.channels as u32;
        if n == 0 || n > 64 {
            return Err(format!("{} device channels (1..=64)", self.channels));
        }
        if self.ambisonic.is_none()
            && self.objects.is_empty()
            && self.bed.is_none()
            && self.stereo.is_none()
        {
            return Err(
                "the audio source maps no channels (ambisonic, object, bed or stereo)".into(),
            );
        }
        // u32: a first channel near u16::MAX plus a layout must not wrap.
        let in_range = |c: u32, what: &str| {
            if c == 0 || c > n {
                Err(format!("{what} channel {c} is outside 1..={n}"))
            } else {
                Ok(())
            }
        };
        if let Some(a) = self.ambisonic {
            let fmt = a.format().ok_or_else(|| {
                format!("normalisation '{}' (ambix, n3d or fuma)", a.normalisation)
            })?;
            fmt.to_ambix_map(self.order).map_err(|e| e.to_string())?;
            let k = ((self.order + 1) * (self.order + 1)) as u32;
            let first = a.first_channel as u32;
            if first == 0 || first - 1 + k > n {
                return Err(format!(
                    "an order-{} bus needs {k} channels from channel {first}, the device has {n}",
                    self.order
                ));
            }
        }
        for o in self.objects {
            in_range(o.channel as u32, "object")?;
            if let Some(n) = &o.name {
                if n.is_empty() || n.chars().count() > 40 || n.chars().any(char::is_control) {
                    return Err(format!(
                        "object name {n:?}: 1 to 40 characters, no control characters"
                    ));
                }
            }
            let pos = studiocast_spatial::encoder::Position {
                azimuth_deg: o.azimuth,
                elevation_deg: o.elevation,
                distance_m: 1.0,
            };
            pos.validate("object").map_err(|e| e.to_string())?;
            if !o.gain_db.is_finite() || o.gain_db > 40.0 {
                return Err(format!("object gain {} dB", o.gain_db));
            }
        }
        if let Some(b) = self.bed {
            let layout: studiocast_spatial::encoder::Layout = b
                .layout
                .parse()
                .map_err(|e: studiocast_spatial::SpatialError| e.to_string())?;
            in_range(b.first_channel as u32, "bed")?;
            in_range(b.first_channel as u32 + layout.channels() as u32 - 1, "bed")?;
        }
        if let Some(st) = self.stereo {
            in_range(st.left as u32, "stereo left")?;
            in_range(st.right as u32, "stereo right")?;
        }
        Ok(())
    }
}

pub(super) fn validate_renditions(r: &[AudioRendition], taken: &[&str]) -> Result<(), String> {
    if r.is_empty() {
        return Err("at least one [[audio.rendition]] is needed".into());
    }
    if r.iter().filter(|x| x.default).count() != 1 {
        return Err("exactly one audio rendition must be default".into());
    }
    for (i, x) in r.iter().enumerate() {
        if !id_ok(&x.id) || taken.contains(&x.id.as_str()) || r[..i].iter().any(|o| o.id == x.id) {
            return Err(format!(
                "audio rendition id '{}' is invalid or repeated",
                x.id.escape_debug()
            ));
        }
        if !label_ok(&x.name) {
            return Err(format!(
                "audio rendition name '{}' must be 1–64 printable characters without quotes",
                x.name.escape_debug()
            ));
        }
        match (x.mix, x.order) {
            (Mix::Ambisonic, None | Some(1)) => {}
            (Mix::Ambisonic, Some(o)) => {
                return Err(format!(
                    "audio rendition '{}': ambisonic order {o} is not offered (1 only)",
                    x.id
                ))
            }
            (_, Some(_)) => {
                return Err(format!(
                    "audio rendition '{}': order applies to mix = \"ambisonic\" only",
                    x.id
                ))
            }
            (_, None) => {}
        }
        if x.default && x.mix == Mix::Ambisonic {
            return Err(format!(
                "audio rendition '{}': an ambisonic rendition cannot be the default \
                 (a plain player would play its four channels as loudspeakers)",
                x.id
            ));
        }
        if !(32..=512).contains(&x.bitrate_kbps) {
            return Err(format!(
                "audio bitrate {} kb/s is outside 32..=512",
                x.bitrate_kbps
            ));
        }
    }
    Ok(())
}
