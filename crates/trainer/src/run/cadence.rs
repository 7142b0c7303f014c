//! When a run evaluates, logs, checkpoints and stops: decided once per step from the step
//! count, the session's seconds and the stop flag. Stopping early (a time limit, a step to
//! stop at, a signal) always comes with an evaluation and a checkpoint, and never before the
//! last step (the last step ends the run anyway).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::TrainConfig;

/// The run's cadence and its reasons to stop early.
#[derive(Clone, Debug)]
pub(crate) struct Cadence {
    pub total_steps: u64,
    pub eval_every: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub time_limit_s: Option<f64>,
    pub stop_at_step: Option<u64>,
    pub stop: Option<&'static AtomicBool>,
    /// Several nodes: the stop is agreed in the step (see [`Cadence::wish`]).
    pub multi_node: bool,
}

/// What is due after a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    pub eval: bool,
    pub log: bool,
    pub checkpoint: bool,
    pub stop: bool,
    /// The stop was asked for by a signal.
    pub interrupted: bool,
}

impl Cadence {
    /// The cadence of `config` over `total_steps`, with this session's reasons to stop early.
    pub fn new(config: &TrainConfig, total_steps: u64, multi_node: bool) -> Self {
        Cadence {
            total_steps,
            eval_every: config.eval_every,
            checkpoint_every: config.checkpoint_every,
            log_every: config.log_every,
            time_limit_s: None,
            stop_at_step: None,
            stop: None,
            multi_node,
        }
    }

    fn signalled(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Whether to stop once `done` steps are done, `now` seconds into the session.
    fn wants_stop(&self, done: u64, now: f64) -> bool {
        done < self.total_steps
            && (self.signalled()
                || self.time_limit_s.is_some_and(|l| now >= l)
                || self.stop_at_step.is_some_and(|s| done >= s))
    }

    /// This node's wish to stop after the step about to run (whose completion makes `done`),
    /// shared in the step when there are several nodes so that all stop after the same step.
    pub fn wish(&self, done: u64, now: f64) -> bool {
        self.multi_node && self.wants_stop(done, now)
    }

    /// What is due once `done` steps are done, `now` seconds into the session; `agreed` is the
    /// stop the nodes agreed on in the step (used only with several nodes).
    pub fn after(&self, done: u64, now: f64, agreed: bool) -> Due {
        let last = done == self.total_steps;
        let stop = match self.multi_node {
            true => agreed,
            false => self.wants_stop(done, now),
        };
        let every = |n: u64| n > 0 && done.is_multiple_of(n);
        let eval = last || stop || every(self.eval_every);
        Due {
            eval,
            log: eval || done.is_multiple_of(self.log_every),
            checkpoint: last || stop || every(self.checkpoint_every),
            stop,
            interrupted: stop && self.signalled(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadence() -> Cadence {
        Cadence {
            total_steps: 10,
            eval_every: 4,
            checkpoint_every: 3,
            log_every: 2,
            time_limit_s: None,
            stop_at_step: None,
            stop: None,
            multi_node: false,
        }
    }

    #[test]
    fn evaluations_checkpoints_and_logs_fall_on_their_steps_and_the_last() {
        let c = cadence();
        let due: Vec<Due> = (1..=10).map(|d| c.after(d, 0.0, false)).collect();
        let on = |f: fn(&Due) -> bool| -> Vec<u64> {
            (1..=10).filter(|&d| f(&due[d as usize - 1])).collect()
        };
        assert_eq!(on(|d| d.eval), [4, 8, 10]);
        assert_eq!(on(|d| d.checkpoint), [3, 6, 9, 10]);
        assert_eq!(on(|d| d.log), [2, 4, 6, 8, 10]);
        assert_eq!(on(|d| d.stop), Vec::<u64>::new());
    }

    #[test]
    fn an_early_stop_evaluates_and_checkpoints_but_never_on_the_last_step() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let mut c = cadence();
        c.stop_at_step = Some(5);
        let due = c.after(5, 0.0, false);
        assert!(due.stop && due.eval && due.checkpoint && !due.interrupted);
        c = cadence();
        c.time_limit_s = Some(1.0);
        assert!(!c.after(1, 0.5, false).stop);
        assert!(c.after(1, 1.0, false).stop);
        assert!(
            !c.after(10, 9.0, false).stop,
            "the last step is not an early stop"
        );
        c = cadence();
        c.stop = Some(&FLAG);
        FLAG.store(true, Ordering::SeqCst);
        let due = c.after(2, 0.0, false);
        assert!(due.stop && due.interrupted);
        assert!(!c.wish(2, 0.0), "one node decides after the step");
        c.multi_node = true;
        assert!(c.wish(2, 0.0));
        assert!(
            !c.after(2, 0.0, false).stop,
            "several nodes stop when they agreed"
        );
        assert!(c.after(2, 0.0, true).interrupted);
    }
}
