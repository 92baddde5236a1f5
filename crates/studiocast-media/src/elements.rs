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

/// x264 for a file job: a quality preset (veryfast, with its look-ahead
/// and macroblock tree; not zero-latency, nobody is waiting for a frame),
/// an IDR every `gop_frames` and nowhere else, so every rung of the ladder
/// cuts its segments on the same frames. No B-frames: cmafmux writes no
/// edit list, so their reorder delay would start the picture two frames
/// (67 ms at 30 fps, measured) after the sound.
pub fn x264enc_vod(bitrate_kbps: u32, gop_frames: u32) -> Result<gst::Element, MediaError> {
    let e = built(
        make("x264enc")
            .property("bitrate", bitrate_kbps)
            .property("key-int-max", gop_frames)
            .property("bframes", 0u32)
            .build(),
        "x264enc",
    )?;
    set_checked(&e, "speed-preset", VOD_X264_PRESET)?;
    e.set_property("option-string", "scenecut=0");
    Ok(e)
}

/// The x264 preset of file jobs (the benchmark gives ffmpeg the same).
pub const VOD_X264_PRESET: &str = "veryfast";

pub fn filesrc(path: &std::path::Path) -> Result<gst::Element, MediaError> {
    built(
        make("filesrc")
            .property("location", path.to_string_lossy().as_ref())
            .build(),
        "filesrc",
    )
}

/// Frames on the preset's grid from the stream's start: duplicated or
/// dropped as the source's rate asks.
pub fn videorate() -> Result<gst::Element, MediaError> {
    built(make("videorate").build(), "videorate")
}

/// Swallows a stream nobody needs (a file's audio track, decoded apart).
pub fn fakesink() -> Result<gst::Element, MediaError> {
    built(
        make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build(),
        "fakesink",
    )
}

/// Silence for the gaps in a stream's timestamps (from its segment's
/// start: a sound track that starts late gets leading silence), overlaps
/// dropped, so samples counted from 0 are at their own time.
pub fn audiorate() -> Result<gst::Element, MediaError> {
    built(
        make("audiorate").property("skip-to-first", false).build(),
        "audiorate",
    )
}

pub fn jpegenc(quality: i32) -> Result<gst::Element, MediaError> {
    built(
        make("jpegenc").property("quality", quality).build(),
        "jpegenc",
    )
}

pub fn h264parse() -> Result<gst::Element, MediaError> {
    built(make("h264parse").build(), "h264parse")
}

/// FFmpeg's AAC-LC encoder: 1–6 channels, never auto-picked (rank none).
pub fn avenc_aac(bitrate_kbps: u32) -> Result<gst::Element, MediaError> {
    built(
        make("avenc_aac")
            .property("bitrate", bitrate_kbps as i32 * 1000)
            // GStreamer maps ffmpeg's `aac_ms` (auto by default) to a
            // boolean defaulting to true, which forces mid/side on every
            // band: a lateralised binaural render came out 0.5 dB quieter
            // than it went in (ffmpeg's ebur128: -20.6 LUFS for -20.1;
            // -20.2 with it off, as ffmpeg's own encoder gives). Intensity
            // stereo keeps one channel above a frequency and pans it,
            // discarding the interaural differences binaural is made of.
            .property("aac-ms", false)
            .property("aac-is", false)
            // ffmpeg's own advice: its constant-quantizer coder is "better
            // and much faster at higher bitrates" and worse below about
            // 64 kb/s; measured here 1.8x faster than the default
            // two-loop search for stereo at 96 and 160 kb/s.
            .property_from_str(
                "aac-coder",
                if bitrate_kbps >= 96 {
                    "fast"
                } else {
                    "twoloop"
                },
            )
            .build(),
        "avenc_aac (gstreamer1.0-libav)",
    )
}

/// Opus for the ambisonic rendition (48 kHz only: resample before it).
/// GStreamer 1.22's `opusenc` has no channel-mapping-family property: it
/// picks the family from the channel positions. Four unpositioned channels
/// (see [`audio_appsrc`]) get family 255, four independent mono streams, so
/// no pair of W, Y, Z, X is stereo-coupled; quadraphonic positions would
/// give family 1 with W+Y and Z+X coupled, and the AAC 4.0 positions a
/// silent downmix to mono. Chromium's MSE decodes family 255 with the four
/// channels in order (checked in the browser test). Constant bit rate gives
/// each channel the same share.
pub fn opusenc(bitrate_kbps: u32) -> Result<gst::Element, MediaError> {
    let e = built(
        make("opusenc")
            .property("bitrate", bitrate_kbps as i32 * 1000)
            .build(),
        "opusenc (gstreamer1.0-plugins-base)",
    )?;
    set_checked(&e, "bitrate-type", "cbr")?;
    Ok(e)
}

/// What sits between the PCM and the muxer for a rendition: the encoder
/// with what it needs before it, and for AAC its parser.
pub fn audio_encode_chain(
    mix: crate::spec::Mix,
    bitrate_kbps: u32,
) -> Result<Vec<gst::Element>, MediaError> {
    Ok(match mix {
        // Resampled in float, then to the encoder's 16 bits.
        crate::spec::Mix::Ambisonic => {
            vec![audioresample()?, audioconvert()?, opusenc(bitrate_kbps)?]
        }
        _ => vec![audioconvert()?, avenc_aac(bitrate_kbps)?, aacparse()?],
    })
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

/// A queue of at most `frames` buffers, for a file job's raw pictures: the
/// live `queue` holds 3 s, which is 280 MB of 1080p frames in front of
/// each encoder when a file decodes faster than it encodes.
pub fn queue_frames(frames: u32) -> Result<gst::Element, MediaError> {
    built(
        make("queue")
            .property("max-size-buffers", frames)
            .property("max-size-bytes", 0u32)
            .property("max-size-time", 0u64)
            .build(),
        "queue",
    )
}

/// decodebin that decodes only the streams `wanted` says yes to (by media
/// type: "video", "audio"); the others come out still encoded, for a
/// fakesink, instead of costing a decoder.
pub fn decodebin_only(wanted: fn(&str) -> bool) -> Result<gst::Element, MediaError> {
    let d = decodebin()?;
    d.connect("autoplug-continue", false, move |args| {
        // The file itself (typefind's caps: video/quicktime, audio/x-wav…)
        // is always demuxed; the streams it holds are decoded as wanted.
        // (The pad is decodebin's own ghost pad; its target says who made it.)
        let from_typefind = args
            .get(1)
            .and_then(|v| v.get::<gst::Pad>().ok())
            .map(
                |p| match p.downcast_ref::<gst::GhostPad>().and_then(|g| g.target()) {
                    Some(target) => target,
                    None => p,
                },
            )
            .and_then(|p| p.parent_element())
            .and_then(|e| e.factory())
            .is_some_and(|f| f.name() == "typefind");
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let go = from_typefind
            || caps
                .as_ref()
                .and_then(|c| c.structure(0))
                .map(|s| s.name().split('/').next().is_none_or(wanted))
                .unwrap_or(true);
        Some(go.to_value())
    });
    Ok(d)
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

/// The live source of one audio rendition: interleaved F32 at `rate`,
/// timestamped by the audio thread. Stereo, or four unpositioned channels
/// (ambisonic W, Y, Z, X are not loudspeaker feeds: nothing downstream may
/// remix them by position, and Opus then codes each on its own).
pub fn audio_appsrc(rate: u32, channels: usize) -> gstreamer_app::AppSrc {
    let mask = match channels {
        2 => 0x3,
        _ => 0,
    };
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", rate as i32)
        .field("channels", channels as i32)
        .field("channel-mask", gst::Bitmask::new(mask))
        .build();
    gstreamer_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(true)
        .max_bytes(4 << 20)
        .build()
}
