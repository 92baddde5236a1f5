//! `GET /api/v1/hrtf/order1.{json,wav}`: the binaural filters the engine
//! designed for the first-order ambisonic rendition, from the configured
//! SOFA set and design options, so that the player's head-tracked mode
//! renders with the engine's own filters, not generic ones.
//!
//! Public (a viewer has no API token) and cheap after the first request:
//! the body is made once per order, rate and format and kept. Only the
//! rates a stream can have are designed, so a client cannot make the
//! daemon design filters at will.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::{AppState, BoxFuture, ControlError};

/// Rates the filters are designed at (the presets' rates).
pub const RATES: [u32; 4] = [44_100, 48_000, 88_200, 96_000];
/// The orders offered: the browser renders the first-order rendition.
pub const ORDERS: [u32; 1] = [1];

/// SH-domain binaural filters: `left[k]`, `right[k]` for ACN channel k,
/// applied to AmbiX (ACN/SN3D) signals and summed per ear.
#[derive(Debug, Clone, PartialEq)]
pub struct HrtfFilters {
    /// The SOFA file's name (never its path on the server).
    pub sofa: String,
    pub method: String,
    pub max_re: bool,
    pub headphone_eq: bool,
    pub order: u32,
    pub rate: u32,
    pub left: Vec<Vec<f32>>,
    pub right: Vec<Vec<f32>>,
}

/// Where the filters come from (the binary wires the spatial engine in).
pub trait FilterSource: Send + Sync {
    fn hrtf(&self, order: u32, rate: u32) -> BoxFuture<'_, Result<HrtfFilters, ControlError>>;
}

/// How long a failed design is not tried again (a rate the headphone EQ
/// does not have, a broken set): a client cannot make the daemon design
/// over and over.
const RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone)]
enum Made {
    Body(Bytes),
    Failed(Instant),
}

/// Bodies already made, by (order, rate, wav), and failures for a while;
/// `designing` lets one request design at a time (the others wait for it
/// and then find its result), the live sessions' starts keeping their
/// share of the designer.
#[derive(Default)]
pub(crate) struct HrtfCache {
    made: Mutex<HashMap<(u32, u32, bool), Made>>,
    designing: tokio::sync::Mutex<()>,
}

impl HrtfCache {
    fn get(&self, key: (u32, u32, bool)) -> Option<Made> {
        let m = self.made.lock().ok()?.get(&key).cloned()?;
        match m {
            Made::Failed(at) if at.elapsed() > RETRY_AFTER => None,
            m => Some(m),
        }
    }

    fn put(&self, key: (u32, u32, bool), m: Made) {
        if let Ok(mut c) = self.made.lock() {
            c.insert(key, m);
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HrtfQuery {
    /// Sample rate, Hz: 44100, 48000 (the default), 88200 or 96000.
    rate: Option<u32>,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let m = message.to_string();
    match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(m),
        StatusCode::NOT_FOUND => ApiError::NotFound(m),
        _ => ApiError::Unavailable(m),
    }
    .into_response()
}

/// The spatial engine's first-order binaural filters, for the player's
/// head-tracked 360° mode: JSON (`order1.json`) or a 32-bit float WAV
/// (`order1.wav`, the left ear's filters for ACN 0…3, then the right's).
#[utoipa::path(get, path = "/api/v1/hrtf/{file}", operation_id = "hrtf_filters", tag = "player", security(()),
    params(
        ("file" = String, Path, description = "`order1.json` or `order1.wav`"),
        HrtfQuery,
    ),
    responses(
        (status = 200, description = "The filters", content(
            (HrtfDoc = "application/json"),
            (String = "audio/wav"),
        )),
        (status = 400, description = "A rate not offered, or an unknown parameter", body = crate::api::ErrorBody),
        (status = 404, description = "No such filter set, or this daemon serves none", body = crate::api::ErrorBody),
        (status = 503, description = "The filters cannot be designed now (tried again after a minute)", body = crate::api::ErrorBody),
    ))]
pub async fn filters(
    State(st): State<AppState>,
    Path(file): Path<String>,
    q: Result<Query<HrtfQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return refuse(StatusCode::BAD_REQUEST, "the query takes `rate` alone");
    };
    let Some((order, wav)) = parse_name(&file) else {
        return refuse(StatusCode::NOT_FOUND, "no such filter set");
    };
    let rate = q.rate.unwrap_or(48_000);
    if !RATES.contains(&rate) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "rate is one of 44100, 48000, 88200, 96000",
        );
    }
    if st.0.control.filters().is_none() {
        return refuse(StatusCode::NOT_FOUND, "this daemon serves no filters");
    }
    let key = (order, rate, wav);
    let made = match st.0.hrtf.get(key) {
        Some(m) => m,
        // Designed in a task of its own, which keeps the result whatever
        // happens to this request (the request timeout may drop it, and
        // the next viewer then finds the filters made).
        None => match tokio::spawn(design(st.clone(), key)).await {
            Ok(m) => m,
            Err(_) => Made::Failed(Instant::now()),
        },
    };
    let body = match made {
        Made::Body(b) => b,
        Made::Failed(_) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the filters cannot be designed now",
            )
        }
    };
    let mut res = Response::new(axum::body::Body::from(body));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if wav { "audio/wav" } else { "application/json" }),
    );
    // The set changes only with the daemon's configuration.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

/// Make the body for `key` unless it was made meanwhile, one design at a
/// time, and keep it (or the failure) in the cache.
async fn design(st: AppState, key: (u32, u32, bool)) -> Made {
    let cache = &st.0.hrtf;
    let _one = cache.designing.lock().await;
    if let Some(m) = cache.get(key) {
        return m;
    }
    let (order, rate, wav) = key;
    let designed = match st.0.control.filters() {
        Some(src) => src.hrtf(order, rate).await,
        None => Err(ControlError::NotFound("no filters".into())),
    };
    let m = match designed {
        Ok(f) => Made::Body(Bytes::from(if wav { to_wav(&f) } else { to_json(&f) })),
        Err(e) => {
            tracing::warn!(order, rate, %e, "filters for the player not made");
            Made::Failed(Instant::now())
        }
    };
    cache.put(key, m.clone());
    m
}

/// `order1.json` → (1, false); `order1.wav` → (1, true).
fn parse_name(file: &str) -> Option<(u32, bool)> {
    let (stem, ext) = file.rsplit_once('.')?;
    let wav = match ext {
        "json" => false,
        "wav" => true,
        _ => return None,
    };
    let order: u32 = stem.strip_prefix("order")?.parse().ok()?;
    ORDERS.contains(&order).then_some((order, wav))
}

/// The JSON document. Written from the `f32`s themselves, so each number
/// has its shortest `f32` form (half the size of the `f64` one).
#[derive(Serialize)]
struct Doc<'a> {
    order: u32,
    rate: u32,
    taps: usize,
    channel_order: &'static str,
    normalization: &'static str,
    sofa: &'a str,
    method: &'a str,
    max_re: bool,
    headphone_eq: bool,
    left: &'a [Vec<f32>],
    right: &'a [Vec<f32>],
}

/// The JSON filters as the document describes them ([`Doc`] borrows; this
/// owns, for the schema alone, and a test holds the two together).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct HrtfDoc {
    order: u32,
    /// Hz.
    rate: u32,
    /// Samples per filter.
    taps: usize,
    /// `acn`.
    channel_order: String,
    /// `sn3d`.
    normalization: String,
    /// The SOFA file's name.
    sofa: String,
    /// The decoder design (`magls`, …).
    method: String,
    max_re: bool,
    headphone_eq: bool,
    /// The left ear's filter for each ACN channel.
    left: Vec<Vec<f32>>,
    right: Vec<Vec<f32>>,
}

pub(crate) fn to_json(f: &HrtfFilters) -> Vec<u8> {
    let doc = Doc {
        order: f.order,
        rate: f.rate,
        taps: f.left.first().map_or(0, Vec::len),
        channel_order: "acn",
        normalization: "sn3d",
        sofa: &f.sofa,
        method: &f.method,
        max_re: f.max_re,
        headphone_eq: f.headphone_eq,
        left: &f.left,
        right: &f.right,
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// 32-bit float WAVE_FORMAT_EXTENSIBLE: the left ear's filters for ACN
/// 0…K−1, then the right ear's, as channels.
fn to_wav(f: &HrtfFilters) -> Vec<u8> {
    let planes: Vec<&Vec<f32>> = f.left.iter().chain(&f.right).collect();
    let channels = planes.len() as u16;
    let frames = planes.first().map_or(0, |p| p.len());
    let data_len = (frames * planes.len() * 4) as u32;
    let mut out = Vec::with_capacity(68 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(60 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&0xFFFEu16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&f.rate.to_le_bytes());
    out.extend_from_slice(&(f.rate * 4 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(4 * channels).to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(&22u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    // No loudspeaker positions: these are filters, not feeds.
    out.extend_from_slice(&0u32.to_le_bytes());
    // KSDATAFORMAT_SUBTYPE_IEEE_FLOAT.
    out.extend_from_slice(&[
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B,
        0x71,
    ]);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        for p in &planes {
            out.extend_from_slice(&p.get(i).copied().unwrap_or(0.0).to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> HrtfFilters {
        HrtfFilters {
            sofa: "kemar.sofa".into(),
            method: "magls".into(),
            max_re: false,
            headphone_eq: false,
            order: 1,
            rate: 48_000,
            left: (0..4).map(|k| vec![k as f32; 3]).collect(),
            right: (0..4).map(|k| vec![-(k as f32); 3]).collect(),
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("order1.json"), Some((1, false)));
        assert_eq!(parse_name("order1.wav"), Some((1, true)));
        for bad in [
            "order3.json",
            "order1.txt",
            "order.json",
            "x1.json",
            "order1",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_wav_holds_the_left_ear_then_the_right() {
        let w = to_wav(&set());
        assert_eq!(w.len(), 68 + 3 * 8 * 4);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(w[4..8].try_into().unwrap()) as usize,
            w.len() - 8
        );
        assert_eq!(u16::from_le_bytes([w[22], w[23]]), 8);
        let frame1: Vec<f32> = w[68 + 32..68 + 64]
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(frame1, [0.0, 1.0, 2.0, 3.0, -0.0, -1.0, -2.0, -3.0]);
    }

    #[test]
    fn the_json_says_what_the_filters_apply_to() {
        let v: serde_json::Value = serde_json::from_slice(&to_json(&set())).unwrap();
        assert_eq!(v["taps"], 3);
        assert_eq!(v["normalization"], "sn3d");
        assert_eq!(v["channel_order"], "acn");
        assert_eq!(v["right"][3][0], -3.0);
    }
}
