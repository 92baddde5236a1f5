//! Fast approximations for the per-bin correction and the per-band delay
//! phasors: plain arithmetic (no library calls), so that loops over bins
//! vectorise, and accurate well past what a gain or a phase needs here.

/// log₂ x for a positive normal x, within 3·10⁻⁵ (a gain within
/// 0.0002 dB): the exponent's bits and a polynomial in the mantissa.
#[inline(always)]
pub(super) fn fast_log2(x: f32) -> f32 {
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let t = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000) - 1.0;
    let p = t
        * (1.441_825_5
            + t * (-0.708_678_9 + t * (0.415_411_2 + t * (-0.194_408_3 + t * 0.045_878_95))));
    exponent as f32 + p
}

/// 2ʸ for y in [−64, 64], within 8·10⁻⁶ relative: the nearest whole
/// power from the bits of y + 1.5·2²³ (no conversion instruction, which
/// would keep the loop from vectorising cleanly), then a polynomial for
/// the rest, in [−½, ½].
#[inline(always)]
pub(super) fn fast_exp2(y: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let y = y.clamp(-64.0, 64.0);
    let r = y + MAGIC;
    let n = r - MAGIC;
    let f = y - n;
    let i = r.to_bits().wrapping_sub(MAGIC.to_bits());
    let p = 1.000_000_05
        + f * (0.693_127_2 + f * (0.240_222_1 + f * (0.055_875_68 + f * 0.009_670_789)));
    f32::from_bits(i.wrapping_add(127) << 23) * p
}

/// (sin x, cos x) within 2·10⁻⁹ for |x| < 10⁶: the quadrant, then
/// polynomials on [−π/4, π/4]. About a third of the library's cost; the
/// renderer takes four per band and frame.
#[inline]
pub(super) fn fast_sincos(x: f64) -> (f64, f64) {
    use std::f64::consts::FRAC_2_PI;
    // π/2 in two parts (Cody and Waite), so the reduction stays exact.
    const HI: f64 = std::f64::consts::FRAC_PI_2;
    const LO: f64 = 6.123_233_995_736_766e-17;
    const BIAS: f64 = 1_048_576.0;
    let x = x.clamp(-1e6, 1e6);
    // Truncation of a positive number is its floor: round to nearest.
    let q = (x * FRAC_2_PI + BIAS + 0.5) as i64 - BIAS as i64;
    let qf = q as f64;
    let r = (x - qf * HI) - qf * LO;
    let r2 = r * r;
    let s =
        r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 / 362_880.0))));
    let c = 1.0
        + r2 * (-0.5
            + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40_320.0 - r2 / 3_628_800.0))));
    match q & 3 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logarithms_and_powers_of_two_are_close() {
        let mut worst = (0.0f64, 0.0f64);
        for i in 0..20_000 {
            let x = 10f32.powf(-30.0 + 60.0 * i as f32 / 20_000.0);
            worst.0 = worst.0.max(f64::from((fast_log2(x) - x.log2()).abs()));
            let y = -64.0 + 128.0 * i as f32 / 20_000.0;
            let rel = (f64::from(fast_exp2(y)) / f64::from(y.exp2()) - 1.0).abs();
            worst.1 = worst.1.max(rel);
        }
        assert!(worst.0 < 4e-5, "log2 off by {}", worst.0);
        assert!(worst.1 < 2e-5, "exp2 off by {}", worst.1);
        // Out of range: clamped, never infinite or zero.
        assert!(fast_exp2(1e9).is_finite() && fast_exp2(-1e9) > 0.0);
    }

    #[test]
    fn sine_and_cosine_are_close_in_every_quadrant() {
        let mut worst = 0.0f64;
        for i in -200_000..200_000 {
            let x = i as f64 * 1e-3;
            let (s, c) = fast_sincos(x);
            worst = worst.max((s - x.sin()).abs()).max((c - x.cos()).abs());
        }
        assert!(worst < 2e-9, "off by {worst}");
        // Not a number in, not a number out: no panic, no bogus quadrant.
        assert!(fast_sincos(f64::NAN).0.is_nan());
    }
}
