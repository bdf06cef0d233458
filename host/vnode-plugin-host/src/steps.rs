//! Where a decision's time goes on the host: a timestamp at the end of each step of
//! [`crate::PluginSlot::place`] and [`crate::PluginSlot::translate`], for `vnode bench plugins
//! --steps`.
//!
//! The steps' code is generic over [`StepObserver`]. Production calls pass [`NoSteps`], whose
//! `mark` is empty and inlined, so the daemon's decisions make no timing calls at all; only
//! [`crate::PluginSlot::place_with_steps`] and [`crate::PluginSlot::translate_with_steps`]
//! read the clock between steps.

use std::time::{Duration, Instant};

/// One step of a decision, named by where it ends (marks are made in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Load the active version (`ArcSwap`), wait for a concurrency permit, decide where the
    /// call runs.
    Entered,
    /// Set the version's configuration in the input and take a prepared instance.
    Taken,
    /// Arm the epoch deadline and start the call's clock.
    Armed,
    /// Encode the input (contract 0.3.0 only; older versions lower typed values in the call).
    Encoded,
    /// The Wasm call: lower the input, run the guest, lift the answer.
    Called,
    /// Decode the answer (contract 0.3.0 only).
    Decoded,
    /// Note the call's time (inline budget) and dropped log lines.
    Noted,
    /// Park the spent store for the warm worker (or free it).
    Retired,
    /// Check the answer against the contract's limits.
    Checked,
    /// Free the inputs, release the permit, return.
    Returned,
}

/// How many [`Step`]s there are.
pub const STEPS: usize = 10;

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; STEPS] = [
        Step::Entered,
        Step::Taken,
        Step::Armed,
        Step::Encoded,
        Step::Called,
        Step::Decoded,
        Step::Noted,
        Step::Retired,
        Step::Checked,
        Step::Returned,
    ];

    /// What the step does, for reports.
    pub fn label(self) -> &'static str {
        match self {
            Step::Entered => "enter (version, permit, inline or not)",
            Step::Taken => "take a prepared instance",
            Step::Armed => "arm the deadline (call clock)",
            Step::Encoded => "encode the input (host)",
            Step::Called => "Wasm call (lower + run + lift)",
            Step::Decoded => "decode the answer (host)",
            Step::Noted => "note call time and dropped logs",
            Step::Retired => "retire the spent store",
            Step::Checked => "check the answer's limits",
            Step::Returned => "return (free the inputs, permit)",
        }
    }
}

/// Receives the end of each step of one decision.
pub trait StepObserver {
    /// `step` has just ended.
    fn mark(&mut self, step: Step);
}

/// The production observer: records nothing, costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSteps;

impl StepObserver for NoSteps {
    #[inline(always)]
    fn mark(&mut self, _step: Step) {}
}

/// The time at which each step of one decision ended.
#[derive(Debug, Clone)]
pub struct StepTimes {
    started: Instant,
    ends: [Option<Instant>; STEPS],
}

impl StepTimes {
    /// Starts timing a decision now.
    pub fn start() -> StepTimes {
        StepTimes {
            started: Instant::now(),
            ends: [None; STEPS],
        }
    }

    /// Each step's duration, from the end of the previous step that was marked (or the start)
    /// to its own end; `None` for a step this decision did not go through (e.g. the encode
    /// step of a 0.2.0 component, whose encoding is part of the call).
    pub fn durations(&self) -> [Option<Duration>; STEPS] {
        let mut previous = self.started;
        let mut out = [None; STEPS];
        for (slot, end) in out.iter_mut().zip(self.ends) {
            if let Some(end) = end {
                *slot = Some(end.saturating_duration_since(previous));
                previous = end;
            }
        }
        out
    }
}

impl StepObserver for StepTimes {
    fn mark(&mut self, step: Step) {
        self.ends[step as usize] = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_listed_once_in_order() {
        for (i, step) in Step::ALL.into_iter().enumerate() {
            assert_eq!(step as usize, i, "{step:?}");
        }
    }

    #[test]
    fn a_skipped_step_has_no_duration_and_the_next_one_spans_it() {
        let mut times = StepTimes::start();
        times.mark(Step::Entered);
        std::thread::sleep(Duration::from_millis(2));
        times.mark(Step::Called);
        let d = times.durations();
        assert!(d[Step::Entered as usize].is_some());
        assert_eq!(d[Step::Taken as usize], None);
        assert!(d[Step::Called as usize].is_some_and(|d| d >= Duration::from_millis(2)));
        assert_eq!(d[Step::Returned as usize], None);
    }
}
