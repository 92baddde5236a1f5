//! A PI controller on the capture ring's fill level.
//!
//! Let ε be the device's clock error and r the resampler's relative ratio
//! (output/input; rubato's `set_resample_ratio_relative`). For a fixed output
//! block the resampler consumes block/r input frames, so the fill level
//! (in seconds, e) moves as de/dt = ε − (1/r − 1) ≈ ε − u with r = 1/(1+u).
//! A PI law u = Kp·ē + Ki·∫ē dt on the smoothed error ē drives e to zero
//! with no steady-state error for a constant ε, and tracks a slowly
//! wandering one. Gains come from a second-order loop with natural
//! frequency ωn and damping ζ: Kp = 2ζωn, Ki = ωn².
//!
//! Everything is allocation-free and deterministic, so it can run in the
//! audio thread and be tested against a simulated clock.

/// Tuning of the controller.
#[derive(Debug, Clone, Copy)]
pub struct DriftSettings {
    /// Fill level to hold, in frames, as seen just before each block is
    /// taken (the capture path's fixed latency).
    pub target_frames: usize,
    /// Loop natural period, seconds: how fast a drift change is absorbed.
    pub period_s: f64,
    pub damping: f64,
    /// Time constant of the fill-level smoothing, seconds; it hides the
    /// device's period-sized delivery jitter from the ratio.
    pub smoothing_s: f64,
    /// Largest correction, ppm (real interfaces are within ±100).
    pub max_ppm: f64,
}

impl DriftSettings {
    pub fn new(target_frames: usize) -> Self {
        DriftSettings {
            target_frames,
            period_s: 60.0,
            damping: 0.8,
            smoothing_s: 2.0,
            max_ppm: 1000.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DriftController {
    settings: DriftSettings,
    rate: f64,
    kp: f64,
    ki: f64,
    integral: f64,
    smoothed: f64,
    primed: bool,
    u: f64,
    /// Long-term mean of the correction: the drift estimate. The device
    /// delivers whole periods, so the instantaneous correction swings
    /// around the true drift; its half-hour average does not.
    mean_u: f64,
}

impl DriftController {
    pub fn new(settings: DriftSettings, rate: u32) -> Self {
        let wn = 2.0 * std::f64::consts::PI / settings.period_s.max(1.0);
        DriftController {
            settings,
            rate: rate.max(1) as f64,
            kp: 2.0 * settings.damping * wn,
            ki: wn * wn,
            integral: 0.0,
            smoothed: 0.0,
            primed: false,
            u: 0.0,
            mean_u: 0.0,
        }
    }

    /// Feed the ring's fill level (frames) observed before taking a block of
    /// `block` output frames. Returns the relative ratio for that block.
    pub fn update(&mut self, fill_frames: usize, block: usize) -> f64 {
        let dt = block as f64 / self.rate;
        let e = (fill_frames as f64 - self.settings.target_frames as f64) / self.rate;
        if !self.primed {
            self.smoothed = e;
            self.primed = true;
        } else {
            let a = (dt / self.settings.smoothing_s.max(dt)).min(1.0);
            self.smoothed += a * (e - self.smoothed);
        }
        let max = self.settings.max_ppm * 1e-6;
        // Anti-windup: integrate only while the output is not saturated.
        let candidate = self.integral + self.ki * self.smoothed * dt;
        let u = self.kp * self.smoothed + candidate;
        if u.abs() <= max {
            self.integral = candidate;
        }
        self.u = (self.kp * self.smoothed + self.integral).clamp(-max, max);
        self.mean_u += (dt / 1800.0).min(1.0) * (self.u - self.mean_u);
        self.ratio()
    }

    /// Relative resampling ratio (output/input) to apply now.
    pub fn ratio(&self) -> f64 {
        1.0 / (1.0 + self.u)
    }

    /// The device's clock error as the loop currently estimates it, ppm
    /// (positive: the device runs fast).
    pub fn estimated_drift_ppm(&self) -> f64 {
        self.mean_u * 1e6
    }

    /// Fill-level error, seconds (positive: more audio queued than wanted).
    pub fn error_s(&self) -> f64 {
        self.smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated capture: the device delivers `period` frames at its own
    /// clock (nominal rate × (1 + drift)), the pipeline takes `block` output
    /// frames at the nominal clock through an ideal resampler at the
    /// controller's ratio. Returns the worst A/V offset after `settle_s`
    /// and the controller.
    fn simulate(
        hours: f64,
        drift_ppm: impl Fn(f64) -> f64,
        settle_s: f64,
    ) -> (f64, DriftController) {
        simulate_with(hours, drift_ppm, settle_s, DriftSettings::new(4096))
    }

    fn simulate_with(
        hours: f64,
        drift_ppm: impl Fn(f64) -> f64,
        settle_s: f64,
        settings: DriftSettings,
    ) -> (f64, DriftController) {
        let rate = 48_000u32;
        let (period, block) = (256usize, 1024usize);
        let target = settings.target_frames;
        let mut c = DriftController::new(settings, rate);
        // The controller sees the level just before each block is taken.
        let mut fill = (target - block) as f64;
        let mut device_phase = 0.0f64; // frames the device owes us
        let steps = (hours * 3600.0 * rate as f64 / block as f64) as usize;
        let dt = block as f64 / rate as f64;
        let mut worst: f64 = 0.0;
        for i in 0..steps {
            let t = i as f64 * dt;
            // The device delivers in whole periods at its own speed.
            device_phase += block as f64 * (1.0 + drift_ppm(t) * 1e-6);
            while device_phase >= period as f64 {
                fill += period as f64;
                device_phase -= period as f64;
            }
            let before = fill;
            let r = c.update(fill.max(0.0).floor() as usize, block);
            // A real ring would under-run here; the simulation lets the
            // level go negative so the uncontrolled case can be measured.
            fill -= block as f64 / r;
            // A/V offset: how far the audio delay moved from its start.
            let offset = (before - target as f64) / rate as f64;
            if t > settle_s {
                worst = worst.max(offset.abs());
            }
        }
        (worst, c)
    }

    #[test]
    fn two_hours_at_plus_and_minus_100_ppm_stay_within_10_ms() {
        for ppm in [100.0, -100.0, 37.0, 0.0] {
            let (worst, c) = simulate(2.0, |_| ppm, 0.0);
            eprintln!(
                "{ppm} ppm: worst A/V offset {:.2} ms, estimate {:.1} ppm",
                worst * 1e3,
                c.estimated_drift_ppm()
            );
            assert!(
                worst <= 0.010,
                "{ppm} ppm: A/V offset reached {:.1} ms",
                worst * 1e3
            );
            assert!(
                (c.estimated_drift_ppm() - ppm).abs() < 5.0,
                "{ppm} ppm estimated as {}",
                c.estimated_drift_ppm()
            );
        }
    }

    #[test]
    fn wandering_drift_is_tracked() {
        // Temperature wander: 60 ± 40 ppm over a 20-minute cycle.
        let (worst, _) = simulate(
            2.0,
            |t| 60.0 + 40.0 * (2.0 * std::f64::consts::PI * t / 1200.0).sin(),
            0.0,
        );
        eprintln!("wandering drift: worst A/V offset {:.2} ms", worst * 1e3);
        assert!(worst <= 0.010, "A/V offset reached {:.1} ms", worst * 1e3);
    }

    #[test]
    fn without_control_the_offset_grows() {
        // The same simulation with the correction disabled (ratio pinned at
        // 1): the offset reaches about 720 ms in two hours at 100 ppm. This
        // is the control experiment that shows the measurement can fail.
        let mut s = DriftSettings::new(4096);
        s.max_ppm = 0.0;
        let (worst, _) = simulate_with(2.0, |_| 100.0, 0.0, s);
        assert!(
            worst > 0.7,
            "uncontrolled offset only {:.1} ms",
            worst * 1e3
        );
    }

    #[test]
    fn ratio_is_bounded_and_smooth() {
        let mut c = DriftController::new(DriftSettings::new(4096), 48_000);
        // A huge fill error saturates at ±1000 ppm, never beyond.
        let r = c.update(200_000, 1024);
        assert!((r - 1.0).abs() <= 1001e-6, "{r}");
        let r2 = c.update(0, 1024);
        assert!((r2 - 1.0).abs() <= 1001e-6);
        // Period-sized jitter moves the ratio by far less than 10 ppm.
        let mut c = DriftController::new(DriftSettings::new(4096), 48_000);
        let mut last = c.update(4096, 1024);
        let mut max_step: f64 = 0.0;
        for i in 0..1000 {
            let fill = 4096 + if i % 2 == 0 { 256 } else { 0 };
            let r = c.update(fill, 1024);
            max_step = max_step.max((r - last).abs());
            last = r;
        }
        assert!(max_step < 10e-6, "ratio step {max_step}");
    }
}
