//! The real-time binaural renderer: optional scene rotation (head tracking)
//! followed by the SH-domain convolver. Allocation-free per block.

use crate::convolver::ShConvolver;
use crate::design::ShFilters;
use crate::error::{Result, SpatialError};
use crate::rotation::{Quat, SceneRotator};
use crate::sh::MAX_ORDER;

const MAX_CHANNELS: usize = (MAX_ORDER + 1) * (MAX_ORDER + 1);

pub struct BinauralRenderer {
    conv: ShConvolver,
    rotator: SceneRotator,
    /// Planar scratch for rotated input, channel c at [c·block..].
    work: Vec<f32>,
}

impl BinauralRenderer {
    pub fn new(filters: &ShFilters, block: usize) -> Result<Self> {
        let conv = ShConvolver::new(filters, block)?;
        Ok(BinauralRenderer {
            work: vec![0.0; conv.channels() * block],
            rotator: SceneRotator::new(filters.order),
            conv,
        })
    }

    pub fn block(&self) -> usize {
        self.conv.block()
    }

    pub fn channels(&self) -> usize {
        self.conv.channels()
    }

    /// New scene orientation, reached smoothly by the end of the next block.
    pub fn set_rotation(&mut self, q: Quat) {
        self.rotator.set_target(q);
    }

    /// Jump to an orientation without interpolation (before playback).
    pub fn reset_rotation(&mut self, q: Quat) {
        self.rotator.reset(q);
    }

    pub fn reset(&mut self) {
        self.conv.reset();
    }

    /// Render one block of AmbiX input to binaural stereo.
    pub fn process_into_buffer(
        &mut self,
        input: &[&[f32]],
        left: &mut [f32],
        right: &mut [f32],
    ) -> Result<()> {
        let b = self.conv.block();
        let k = self.conv.channels();
        if input.len() != k {
            return Err(SpatialError::ChannelMismatch {
                expected: k,
                actual: input.len(),
            });
        }
        if self.rotator.is_identity() {
            return self.conv.process_into_buffer(input, left, right);
        }
        for (c, inp) in input.iter().enumerate() {
            if inp.len() != b {
                return Err(SpatialError::BlockMismatch {
                    expected: b,
                    actual: inp.len(),
                });
            }
            self.work[c * b..(c + 1) * b].copy_from_slice(inp);
        }
        self.rotator.process(&mut self.work, b);
        let mut refs: [&[f32]; MAX_CHANNELS] = [&[]; MAX_CHANNELS];
        for (c, r) in refs.iter_mut().enumerate().take(k) {
            *r = &self.work[c * b..(c + 1) * b];
        }
        self.conv.process_into_buffer(&refs[..k], left, right)
    }

    /// Convenience form that allocates its output.
    pub fn process(&mut self, input: &[&[f32]]) -> Result<(Vec<f32>, Vec<f32>)> {
        let b = self.conv.block();
        let (mut l, mut r) = (vec![0.0; b], vec![0.0; b]);
        self.process_into_buffer(input, &mut l, &mut r)?;
        Ok((l, r))
    }
}

/// Fold a headphone-equalisation FIR pair into SH filters, so it costs
/// nothing at run time. Different left/right EQ makes the set asymmetric.
pub fn fold_headphone_eq(
    filters: &ShFilters,
    eq_left: &[f32],
    eq_right: &[f32],
) -> Result<ShFilters> {
    if eq_left.is_empty() || eq_right.is_empty() {
        return Err(SpatialError::Design("empty headphone EQ".into()));
    }
    let lim = crate::design::MAX_FILTER_LEN;
    let taps = filters.taps + eq_left.len().max(eq_right.len()) - 1;
    if taps > lim {
        return Err(SpatialError::Limit {
            what: "SH filter length with headphone EQ",
            value: taps,
            limit: lim,
        });
    }
    let conv = |f: &[f32], e: &[f32]| {
        let mut o = vec![0.0f32; taps];
        for (i, a) in f.iter().enumerate() {
            for (j, b) in e.iter().enumerate() {
                o[i + j] += a * b;
            }
        }
        o
    };
    let same = eq_left == eq_right;
    Ok(ShFilters {
        order: filters.order,
        sample_rate: filters.sample_rate,
        taps,
        symmetric: filters.symmetric && same,
        left: filters.left.iter().map(|f| conv(f, eq_left)).collect(),
        right: filters.right.iter().map(|f| conv(f, eq_right)).collect(),
        method: filters.method,
    })
}
