//! Element builders: every GStreamer element name and property name the
//! project uses lives here, once.

use gst::prelude::*;
use gstreamer as gst;

use crate::MediaError;

fn make<'a>(factory: &'static str) -> gst::element_factory::ElementBuilder<'a> {
    gst::ElementFactory::make(factory)
}

/// Set an enum or flags property from its text form (a nick such as
/// "zerolatency"), refusing a value the element does not know with the
/// list of those it does. `set_property_from_str` panics instead, and
/// preset strings reach here.
fn set_checked(e: &gst::Element, prop: &str, text: &str) -> Result<(), MediaError> {
    let factory = e
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_default();
    let pspec = e
        .find_property(prop)
        .ok_or_else(|| MediaError::Gst(format!("{factory} has no property '{prop}'")))?;
    match gst::glib::Value::deserialize_with_pspec(text, &pspec) {
        Ok(v) => {
            e.set_property_from_value(prop, &v);
            Ok(())
        }
        Err(_) => {
            let known = gst::glib::EnumClass::with_type(pspec.value_type())
                .map(|c| {
                    c.values()
                        .iter()
                        .map(|v| v.nick().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            Err(MediaError::Spec(format!(
                "{factory}: '{text}' is not a valid {prop} ({known})"
            )))
        }
    }
}

fn built(
    r: Result<gst::Element, gst::glib::BoolError>,
    factory: &str,
) -> Result<gst::Element, MediaError> {
    r.map_err(|e| {
        let name = factory.split_whitespace().next().unwrap_or(factory);
        if gst::ElementFactory::find(name).is_none() {
            MediaError::MissingElement(factory.to_string())
        } else {
            MediaError::Gst(format!("{name}: {e}"))
        }
    })
}

pub fn videotestsrc(pattern: &str) -> Result<gst::Element, MediaError> {
    let e = built(
        make("videotestsrc").property("is-live", true).build(),
        "videotestsrc",
    )?;
    set_checked(&e, "pattern", pattern)?;
    Ok(e)
}

pub fn clockoverlay() -> Result<gst::Element, MediaError> {
    let e = built(
        make("clockoverlay")
            .property("time-format", "%Y-%m-%d %H:%M:%S")
            .property("font-desc", "Sans 28")
            .build(),
        "clockoverlay",
    )?;
    set_checked(&e, "halignment", "center")?;
    set_checked(&e, "valignment", "bottom")?;
    Ok(e)
}

pub fn capsfilter(caps: gst::Caps) -> Result<gst::Element, MediaError> {
    built(
        make("capsfilter").property("caps", caps).build(),
        "capsfilter",
    )
}

pub fn videoconvert() -> Result<gst::Element, MediaError> {
    built(make("videoconvert").build(), "videoconvert")
}

pub fn audioconvert() -> Result<gst::Element, MediaError> {
    built(make("audioconvert").build(), "audioconvert")
}

/// x264 tuned for live: zero-latency, no B-frames, one IDR per segment,
/// no scene-cut key frames.
pub fn x264enc(bitrate_kbps: u32, gop_frames: u32) -> Result<gst::Element, MediaError> {
    let e = built(
        make("x264enc")
            .property("bitrate", bitrate_kbps)
            .property("key-int-max", gop_frames)
            .property("bframes", 0u32)
            // GStreamer's x264enc turns trellis on whatever the preset
            // says; x264's veryfast has it off. It was the encoders' top
            // cost (17 % of the daemon's cycles with two rungs).
            .property("trellis", false)
            .build(),
        "x264enc",
    )?;
    set_checked(&e, "tune", "zerolatency")?;
    set_checked(&e, "speed-preset", "veryfast")?;
    // Key frames only where asked (the GOP, or the pump's forced key
    // units): a scene cut would give one rung an IDR the others lack, and
    // its fragment would end early, out of step with the ladder.
    e.set_property("option-string", "scenecut=0");
    Ok(e)
}

pub fn h264parse() -> Result<gst::Element, MediaError> {
    built(make("h264parse").build(), "h264parse")
}

/// FFmpeg's AAC-LC encoder: 1–6 channels, never auto-picked (rank none).
pub fn avenc_aac(bitrate_kbps: u32) -> Result<gst::Element, MediaError> {
    built(
        make("avenc_aac")
            .property("bitrate", bitrate_kbps as i32 * 1000)
            .build(),
        "avenc_aac (gstreamer1.0-libav)",
    )
}

pub fn aacparse() -> Result<gst::Element, MediaError> {
    built(make("aacparse").build(), "aacparse")
}

pub fn queue() -> Result<gst::Element, MediaError> {
    built(
        make("queue")
            .property("max-size-buffers", 0u32)
            .property("max-size-bytes", 0u32)
            .property("max-size-time", 3_000_000_000u64)
            .build(),
        "queue",
    )
}

/// CMAF muxer: one fragment per HLS segment. `force_keys`: the muxer asks
/// upstream for a key frame at each fragment start (leave it off when the
/// encoder or the pump already places them). `slack`: time the muxer waits
/// beyond the latency upstream reports; x264 in zero-latency mode reports
/// none, yet takes tens of ms per frame, and a muxer that gives up before
/// the next GOP's key frame arrives cuts the fragment on a timeout.
///
/// `chunk`: CMAF chunks of about this length inside each fragment (the
/// LL-HLS parts); cmafmux marks a fragment's first chunk as the only one
/// without DELTA_UNIT.
pub fn cmafmux(
    fragment: gst::ClockTime,
    chunk: Option<gst::ClockTime>,
    force_keys: bool,
    slack: gst::ClockTime,
) -> Result<gst::Element, MediaError> {
    let mut b = make("cmafmux")
        .property("fragment-duration", fragment)
        .property("send-force-keyunit", force_keys)
        .property("latency", slack);
    if let Some(c) = chunk {
        b = b.property("chunk-duration", c);
    }
    built(b.build(), "cmafmux")
}

/// One picture to every rung of the ladder.
pub fn tee() -> Result<gst::Element, MediaError> {
    built(make("tee").build(), "tee")
}

/// Ask a cmafmux to start a fragment at running time `at` (the next
/// segment boundary): the first frame at or after it starts the fragment.
pub fn cmafmux_split_at(mux: &gst::Element, at: gst::ClockTime) {
    mux.emit_by_name::<()>("split-at-running-time", &[&at]);
}

pub fn videoscale() -> Result<gst::Element, MediaError> {
    built(make("videoscale").build(), "videoscale")
}

pub fn audioresample() -> Result<gst::Element, MediaError> {
    built(make("audioresample").build(), "audioresample")
}

/// Demuxes, parses and decodes whatever the input carries (MPEG-TS with
/// H.264/HEVC and AAC/PCM, MJPEG from a camera, …).
pub fn decodebin() -> Result<gst::Element, MediaError> {
    built(make("decodebin").build(), "decodebin")
}

/// An SRT receiver. `uri` is `srt://host:port?mode=listener|caller`.
pub fn srtsrc(
    uri: &str,
    latency_ms: u32,
    passphrase: Option<&str>,
    stream_id: Option<&str>,
) -> Result<gst::Element, MediaError> {
    let mut b = make("srtsrc")
        .property("uri", uri)
        .property("latency", latency_ms as i32)
        .property("wait-for-connection", true)
        // Wake often, so a lost sender is torn down (and the port listened
        // on again) in milliseconds rather than seconds.
        .property("poll-timeout", 100i32);
    if let Some(p) = passphrase {
        b = b.property("passphrase", p);
    }
    if let Some(s) = stream_id {
        b = b.property("streamid", s);
    }
    built(b.build(), "srtsrc (gstreamer1.0-plugins-bad)")
}

pub fn v4l2src(device: &str) -> Result<gst::Element, MediaError> {
    built(
        make("v4l2src").property("device", device).build(),
        "v4l2src (gstreamer1.0-plugins-good)",
    )
}

pub fn decklinkvideosrc(device_number: u32, mode: &str) -> Result<gst::Element, MediaError> {
    let e = built(
        make("decklinkvideosrc")
            .property("device-number", device_number as i32)
            .build(),
        "decklinkvideosrc (gstreamer1.0-plugins-bad)",
    )?;
    set_checked(&e, "mode", mode)?;
    Ok(e)
}

/// SDI embedded audio: DeckLink delivers 2, 8 or 16 channels.
pub fn decklinkaudiosrc(device_number: u32, channels: u16) -> Result<gst::Element, MediaError> {
    let ch = match channels {
        0..=2 => "2",
        3..=8 => "8",
        _ => "16",
    };
    let e = built(
        make("decklinkaudiosrc")
            .property("device-number", device_number as i32)
            .build(),
        "decklinkaudiosrc (gstreamer1.0-plugins-bad)",
    )?;
    set_checked(&e, "channels", ch)?;
    Ok(e)
}

pub fn textoverlay(text: &str) -> Result<gst::Element, MediaError> {
    let e = built(
        make("textoverlay")
            .property("text", text)
            .property("font-desc", "Sans 36")
            .build(),
        "textoverlay",
    )?;
    set_checked(&e, "halignment", "center")?;
    set_checked(&e, "valignment", "center")?;
    Ok(e)
}

/// Interlaced camera and SDI signals (1080i) become progressive for the
/// web; progressive input passes through untouched.
pub fn deinterlace() -> Result<gst::Element, MediaError> {
    built(make("deinterlace").build(), "deinterlace")
}

/// The live source of one audio rendition: interleaved stereo F32 at
/// `rate`, timestamped by the audio thread.
pub fn audio_appsrc(rate: u32) -> gstreamer_app::AppSrc {
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", rate as i32)
        .field("channels", 2i32)
        .field("channel-mask", gst::Bitmask::new(0x3))
        .build();
    gstreamer_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(true)
        .max_bytes(4 << 20)
        .build()
}
