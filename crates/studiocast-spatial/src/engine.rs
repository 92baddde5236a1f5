//! The binaural renderer a stream goes through, as `render`, jobs and the
//! live audio thread all pick it: the SH-domain convolver (any order), or
//! the parametric first-order renderer (signal-dependent, with a latency
//! its caller accounts for). One type, so every caller drives both alike.

use crate::error::Result;
use crate::parametric::ParametricRenderer;
use crate::renderer::BinauralRenderer;
use crate::rotation::Quat;

pub enum Engine {
    Linear(Box<BinauralRenderer>),
    Parametric(Box<ParametricRenderer>),
}

impl Engine {
    /// Planar ambisonic channels in, the two ears out (equal lengths; the
    /// linear renderer takes blocks of the length it was made for).
    /// Allocation-free either way.
    pub fn process(&mut self, ins: &[&[f32]], l: &mut [f32], r: &mut [f32]) -> Result<()> {
        match self {
            Engine::Linear(e) => e.process_into_buffer(ins, l, r),
            Engine::Parametric(e) => e.process(ins, l, r),
        }
    }

    /// Samples the output lags the input by (beyond the filters' own
    /// onset, which the linear renderer shares with a direct HRIR).
    pub fn latency(&self) -> usize {
        match self {
            Engine::Linear(_) => 0,
            Engine::Parametric(e) => e.latency(),
        }
    }

    /// Ambisonic channels taken.
    pub fn channels(&self) -> usize {
        match self {
            Engine::Linear(e) => e.channels(),
            Engine::Parametric(_) => 4,
        }
    }

    pub fn set_rotation(&mut self, q: Quat) {
        match self {
            Engine::Linear(e) => e.set_rotation(q),
            Engine::Parametric(e) => e.set_rotation(q),
        }
    }

    pub fn reset_rotation(&mut self, q: Quat) {
        match self {
            Engine::Linear(e) => e.reset_rotation(q),
            Engine::Parametric(e) => e.reset_rotation(q),
        }
    }
}
