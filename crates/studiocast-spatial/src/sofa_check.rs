//! Checks on what a SOFA file declares, made before `sofar` is asked to open
//! it at the stream rate.
//!
//! `sofar::reader::OpenOptions::open_data` resamples as soon as the file's
//! `Data.SamplingRate` differs from the requested rate, sizing its buffers
//! from that rate and the declared dimensions: a 1 Hz rate asks for about
//! 139 GB and aborts the process, and a NaN rate fails its "differs by more
//! than 0.1 Hz" test, so 44.1 kHz filters would silently be used as 48 kHz
//! ones. The
//! values are therefore read first through sofar's HDF5 layer
//! (`sofar::hdf`), which decodes each dataset on its own without resampling,
//! and checked here. See `HrtfSet::from_sofa_bytes` for what this cannot
//! bound (the HDF5 layer's own allocations).

use sofar::hdf::{DataFormat, DataObject, ParsedHdf};

/// Bounds on untrusted SOFA content.
pub(crate) const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;
pub(crate) const MAX_DIRECTIONS: usize = 100_000;
pub(crate) const MIN_DIRECTIONS: usize = 4;
pub(crate) const MAX_TAPS: usize = 32_768;
/// Impulse-response values (M × R × N), before and after resampling:
/// 128 MiB as f32, 46 times MIT KEMAR (710 × 2 × 512).
pub(crate) const MAX_IR_VALUES: usize = 1 << 25;
/// Sample rates a SOFA file may declare, Hz.
pub(crate) const MIN_RATE: f32 = 8_000.0;
pub(crate) const MAX_RATE: f32 = 192_000.0;
/// sofar's resampler (rubato's FFT resampler, one filter at a time) works in
/// blocks of rate / gcd(rates) samples on each side. Blocks far longer than a
/// filter give nothing usable: from 44 101 Hz (gcd 1 with 48 kHz) every
/// resampled filter came out silent. The worst standard pair, 11 025 Hz to
/// 192 kHz, needs 147:2560.
pub(crate) const MAX_RATE_BLOCK: u64 = 2_560;
/// Longest per-ear delay, seconds: interaural differences stay under 1 ms
/// and propagation to a loudspeaker 5 m away is 15 ms. Longer delays would
/// only lengthen every filter (and the design with it).
pub(crate) const MAX_DELAY_S: f32 = 0.02;

/// Read `Data.SamplingRate`, the shape of `Data.IR` and `Data.Delay` and
/// check them against the bounds above and the target `rate`. The error is
/// a sentence for the technician.
pub(crate) fn inspect(bytes: &[u8], target: u32) -> Result<(), String> {
    let parsed = sofar::hdf::parse_with_children(bytes)
        .map_err(|e| format!("not a readable SOFA (HDF5) file: {e}"))?;
    let rate = declared_rate(&parsed)?;
    check_resampling(rate, target)?;
    let m = declared_measurements(&parsed, rate, target)?;
    check_delays(&parsed, m, rate)
}

fn dataset(parsed: &ParsedHdf<'_>, name: &str) -> Result<Option<DataObject>, String> {
    match parsed.get_child(name) {
        None => Ok(None),
        Some(Ok(obj)) => Ok(Some(obj)),
        Some(Err(e)) => Err(format!("{name} is unreadable: {e}")),
    }
}

/// A dataset's values as sofar converts them (`Hrtf::convert_data_to_f32`):
/// 32/64-bit floats and 32/64-bit signed integers, narrowed to f32.
fn values(obj: &DataObject) -> Option<Vec<f32>> {
    let d = &obj.data;
    match obj.dt.class_and_version & 0x0F {
        1 => {
            let precision = match obj.dt.data_fmt {
                Some(DataFormat::Float { bit_precision, .. }) => bit_precision,
                _ => 64,
            };
            match precision {
                64 => Some(
                    d.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                        .collect(),
                ),
                32 => Some(
                    d.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                        .collect(),
                ),
                _ => None,
            }
        }
        0 => match obj.dt.size {
            8 => Some(
                d.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
            ),
            4 => Some(
                d.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f32)
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// Plain decimals, but exponent notation for huge values (1e30, not 31 digits).
fn num(v: f32) -> String {
    if v.is_finite() && v.abs() >= 1e7 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn declared_rate(parsed: &ParsedHdf<'_>) -> Result<u32, String> {
    const NAME: &str = "Data.SamplingRate";
    let obj = dataset(parsed, NAME)?.ok_or_else(|| format!("{NAME} is missing"))?;
    let vals = values(&obj).ok_or_else(|| format!("{NAME} has an unsupported data type"))?;
    // sofar resamples from the first value; a per-measurement rate that
    // varies cannot be honoured, so every value must agree with it.
    let Some(&rate) = vals.first() else {
        return Err(format!("{NAME} is empty"));
    };
    if !rate.is_finite() {
        return Err(format!("{NAME} is {rate}, not a finite number of Hz"));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(format!(
            "{NAME} is {} Hz; only {MIN_RATE}..={MAX_RATE} Hz is accepted",
            num(rate)
        ));
    }
    // sofar's resampler takes whole hertz (it truncates the rate).
    if rate.fract() != 0.0 {
        return Err(format!("{NAME} is {rate} Hz, not a whole number of Hz"));
    }
    if let Some(other) = vals.iter().find(|v| v.to_bits() != rate.to_bits()) {
        return Err(format!(
            "{NAME} varies between measurements ({rate} and {other} Hz)"
        ));
    }
    Ok(rate as u32)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn check_resampling(rate: u32, target: u32) -> Result<(), String> {
    if rate == target {
        return Ok(());
    }
    let g = gcd(rate as u64, target as u64);
    let (a, b) = (rate as u64 / g, target as u64 / g);
    if a > MAX_RATE_BLOCK || b > MAX_RATE_BLOCK {
        return Err(format!(
            "resampling {rate} Hz to {target} Hz needs {a}:{b}-sample blocks \
             (at most {MAX_RATE_BLOCK}); use a set measured at a standard rate"
        ));
    }
    Ok(())
}

/// Check the shape of `Data.IR` (M × R × N) before and after resampling;
/// returns M.
fn declared_measurements(parsed: &ParsedHdf<'_>, rate: u32, target: u32) -> Result<usize, String> {
    let obj = dataset(parsed, "Data.IR")?.ok_or("Data.IR is missing")?;
    let dims = &obj.ds.dimension_size;
    if obj.ds.dimensionality != 3 || dims.len() != 3 {
        return Err(format!(
            "Data.IR has {} dimensions, expected 3 (M × R × N)",
            obj.ds.dimensionality
        ));
    }
    let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let (m, r, n) = (as_usize(dims[0]), as_usize(dims[1]), as_usize(dims[2]));
    if r != 2 {
        return Err(format!("expected 2 receivers (ears), found {r}"));
    }
    if !(MIN_DIRECTIONS..=MAX_DIRECTIONS).contains(&m) {
        return Err(format!(
            "{m} measurements (allowed {MIN_DIRECTIONS}..={MAX_DIRECTIONS})"
        ));
    }
    // Resampling turns N taps into ⌈N·target/rate⌉.
    let resampled = (n as u64 * target as u64).div_ceil(rate as u64);
    let resampled = as_usize(resampled);
    for (what, taps) in [("", n), (" after resampling", resampled)] {
        if taps == 0 || taps > MAX_TAPS {
            return Err(format!(
                "{taps} taps per filter{what} (allowed 1..={MAX_TAPS})"
            ));
        }
        let total = m.saturating_mul(r).saturating_mul(taps);
        if total > MAX_IR_VALUES {
            return Err(format!(
                "{m} × {r} × {taps} impulse-response values{what} (limit {MAX_IR_VALUES})"
            ));
        }
    }
    Ok(m)
}

/// `Data.Delay` (samples at the file's rate, 1 × R or M × R) must be finite,
/// non-negative and at most `MAX_DELAY_S`. A missing delay means none.
fn check_delays(parsed: &ParsedHdf<'_>, m: usize, rate: u32) -> Result<(), String> {
    const NAME: &str = "Data.Delay";
    let Some(obj) = dataset(parsed, NAME)? else {
        return Ok(());
    };
    let Some(vals) = values(&obj) else {
        return Err(format!("{NAME} has an unsupported data type"));
    };
    if !(vals.is_empty() || vals.len() == 2 || vals.len() == m * 2) {
        return Err(format!(
            "{NAME} holds {} values, expected 2 or {} (M × R)",
            vals.len(),
            m * 2
        ));
    }
    let limit = MAX_DELAY_S * rate as f32;
    for (i, &d) in vals.iter().enumerate() {
        if !d.is_finite() || d < 0.0 || d > limit {
            return Err(format!(
                "{NAME} of measurement {}, ear {} is {} samples; \
                 0..={limit} ({} ms at {rate} Hz) is accepted",
                i / 2,
                i % 2,
                num(d),
                MAX_DELAY_S * 1000.0
            ));
        }
    }
    Ok(())
}
