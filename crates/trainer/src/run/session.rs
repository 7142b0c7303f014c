//! An open run ([`Run`], opened by [`Run::open`]) and what the loop asks of it: a step, its
//! record, the read-back of the pending records with an evaluation, a checkpoint, the end.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;

use crate::config::TrainConfig;
use crate::distributed::cluster::{Cluster, Coordinator};
use crate::distributed::parallel::{Replica, StepContext, StepOutcome};
use crate::distributed::peers::Peers;
use crate::error::TrainError;
use crate::run::cadence::{Cadence, Due};
use crate::run::checkpoint::{self, TrainState};
use crate::run::metrics::{MetricsLog, StepRecord};
use crate::run::readback::Pending;
use crate::run::report::{Event, Observer, Summary};
use corpus::WindowLoader;
use storage::run::RunDir;
use storage::write_atomic;
use transformer::{evaluate, EvalResult};

/// A run between [`Run::open`] and [`Run::finish`]: the settings, the replica on this node's
/// first device (the others follow it on their own threads), where the run stands, and what
/// it writes.
pub(crate) struct Run<'c, B: AutodiffBackend> {
    pub config: TrainConfig,
    pub cadence: Cadence,
    pub state: TrainState,
    pub(super) dir: RunDir,
    /// Node 0: logs and writes the checkpoints.
    pub(super) lead: bool,
    pub(super) cluster: &'c Cluster,
    pub(super) ctx: StepContext,
    /// Taken for the length of a step (a step consumes the replica and gives it back).
    pub(super) replica: Option<Replica<B>>,
    pub(super) peers: Peers,
    pub(super) coordinator: Option<Coordinator>,
    pub(super) val_loader: WindowLoader,
    pub(super) tokenizer: Option<PathBuf>,
    pub(super) metrics: Option<MetricsLog>,
    pub(super) pending: Pending<B::InnerBackend>,
    pub(super) session: Instant,
    /// [`Run::now`].
    pub(super) step_end_s: f64,
    pub(super) elapsed_before: f64,
    pub(super) step_tokens: u64,
    pub(super) last_checkpoint: PathBuf,
    pub(super) stopped_early: bool,
    pub(super) interrupted: bool,
}

impl<B: AutodiffBackend> Run<'_, B> {
    /// The steps still to run.
    pub fn steps(&self) -> std::ops::Range<u64> {
        self.state.step..self.cadence.total_steps
    }

    /// Seconds since this session started, at the end of the step just run.
    pub fn now(&self) -> f64 {
        self.step_end_s
    }

    fn replica(&self) -> &Replica<B> {
        self.replica
            .as_ref()
            .expect("the replica is back between steps")
    }

    /// Runs optimizer step `step` (0-based) on every device and node and advances the state;
    /// the outcome's loss and gradient norm stay on the device.
    pub fn step(&mut self, step: u64) -> Result<StepOutcome<B::InnerBackend>, TrainError> {
        self.peers.begin(step)?;
        // Over several nodes the wish to stop is decided before the step and shared in it, so
        // every node stops after the same step.
        let wish = self
            .cadence
            .wish(step + 1, self.session.elapsed().as_secs_f64());
        let replica = self
            .replica
            .take()
            .expect("the replica is back between steps");
        let (replica, done) = match replica.step(step, &self.ctx, wish) {
            Ok(stepped) => stepped,
            Err(e) => return Err(self.peers.abort(e)),
        };
        let state = &mut self.state;
        state.step = step + 1;
        state.tokens += self.step_tokens;
        state.flops += done.flops;
        state.cursor = replica.loader.cursor();
        state.alpha = self.ctx.plan.alpha(step);
        state.guides = replica.model.has_guides();
        state.loss_scale = replica.scaler.map(Into::into);
        self.step_end_s = self.session.elapsed().as_secs_f64();
        state.elapsed_s = self.elapsed_before + self.step_end_s;
        self.replica = Some(replica);
        Ok(done)
    }

    /// Records the step just run (`loss_scale`: the scale it ran with) as pending until the
    /// next read-back; too many non-finite steps end the run.
    pub fn record(
        &mut self,
        done: StepOutcome<B::InnerBackend>,
        loss_scale: Option<f64>,
        due: Due,
    ) -> Result<(), TrainError> {
        let step = self.state.step - 1;
        let record = StepRecord {
            step: self.state.step,
            total_steps: self.cadence.total_steps,
            tokens: self.state.tokens,
            lr: self.ctx.lr.at(step),
            alpha: self.state.alpha,
            guides_used: done.guides_used,
            skipped: !done.applied,
            loss_scale,
            flops: self.state.flops,
            elapsed_s: self.state.elapsed_s,
            ..StepRecord::default()
        };
        if record.skipped_nonfinite() {
            self.state.nonfinite_skips += 1;
            if self.state.nonfinite_skips > self.config.skip_nonfinite {
                return Err(self.peers.abort(TrainError::TooManyNonFinite {
                    step: self.state.step,
                    skips: self.state.nonfinite_skips,
                    allowed: self.config.skip_nonfinite,
                }));
            }
        }
        let mut loss = done.loss;
        if self
            .ctx
            .faults
            .as_ref()
            .is_some_and(|f| f.poison_loss(step))
        {
            loss = loss.mul_scalar(f64::NAN);
        }
        self.pending.push(record, due.log, loss, done.grad_norm);
        Ok(())
    }

    /// The scale the next step's loss is multiplied by (f16), for its record.
    pub fn loss_scale(&self) -> Option<f64> {
        self.replica().scaler.map(|s| s.scale)
    }

    /// Whether the pending records are to be read back now (`due`: something needs them).
    pub fn read_due(&self, due: Due) -> bool {
        due.eval || due.checkpoint || self.pending.due()
    }

    /// Reads the pending records back in one transfer, evaluates when `eval` (the last record
    /// then carries the validation loss), appends them to `metrics.jsonl` and reports them.
    pub fn log(&mut self, eval: bool, observer: &mut dyn Observer) -> Result<(), TrainError> {
        let mut records = self.pending.read(self.config.peak_flops)?;
        if eval {
            let result = self.evaluate()?;
            if let Some(record) = records.last_mut() {
                record.val_loss = Some(result.val_loss);
                record.val_ppl = Some(result.ppl);
            }
            self.state.val_loss = Some(result.val_loss);
        }
        for record in &records {
            if let Some(metrics) = &mut self.metrics {
                metrics.append(record)?;
            }
            observer.event(Event::Step(record));
        }
        if eval {
            self.write_plot()?;
        }
        Ok(())
    }

    /// The validation loss of the trained model in the training precision, every guide in use
    /// (not reduce_flop's last draw): the function `strata eval` scores on the checkpoint.
    /// Every node evaluates (the same numbers), so that the others spend node 0's evaluation
    /// time evaluating rather than waiting on it in the next all-reduce.
    fn evaluate(&self) -> Result<EvalResult, TrainError> {
        let replica = self.replica();
        let mut trained = replica.model.valid();
        trained.set_reduce_flop(false);
        let batches = self.val_loader.batches_in_order(
            self.config.batch_size,
            self.config.eval_batches * self.config.devices * self.config.nodes,
        );
        Ok(evaluate(
            &self.config.precision.apply(trained),
            batches,
            &replica.device,
        )?)
    }

    /// `loss.svg` from the records so far (node 0); none while no record has a finite loss
    /// (a chart that cannot be drawn does not stop the run).
    fn write_plot(&self) -> Result<(), TrainError> {
        if let Some(metrics) = &self.metrics {
            let chart = results::plot::run_chart(metrics.records(), &self.config.model_name);
            if let Ok(svg) = chart.svg() {
                write_atomic(&self.dir.plot(), svg.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint of where the run stands (node 0).
    pub fn checkpoint(&mut self, observer: &mut dyn Observer) -> Result<(), TrainError> {
        if !self.lead {
            return Ok(());
        }
        let replica = self.replica();
        self.last_checkpoint = checkpoint::save(
            &self.dir.checkpoints(),
            &replica.model,
            &replica.optim,
            &self.state,
            self.tokenizer.as_deref(),
            self.config.keep,
        )?;
        observer.event(Event::Checkpoint(&self.last_checkpoint));
        Ok(())
    }

    /// Ends the run early after the step just run (`interrupted`: by a signal).
    pub fn stop(&mut self, interrupted: bool) {
        (self.stopped_early, self.interrupted) = (true, interrupted);
    }

    /// Joins the other devices' replicas, lets the other nodes leave the coordinator node 0
    /// serves (bounded: a node that died without leaving is forgotten when its connection
    /// closes), draws the loss curve and sums the run up.
    pub fn finish(mut self) -> Result<Summary, TrainError> {
        self.peers.finish::<B>()?;
        if let Some(coordinator) = &self.coordinator {
            coordinator.wait_idle(self.cluster.timeout);
        }
        self.write_plot()?;
        let state = &self.state;
        Ok(Summary {
            model: self.config.model_name.clone(),
            params: self.replica().model.num_params(),
            steps: state.step,
            tokens: state.tokens,
            flops: state.flops,
            elapsed_s: state.elapsed_s,
            tokens_per_s: state.tokens as f64 / state.elapsed_s.max(1e-9),
            val_loss: state.val_loss,
            val_ppl: state.val_loss.map(f64::exp),
            stopped_early: self.stopped_early,
            interrupted: self.interrupted,
            checkpoint: self.last_checkpoint,
            data: self.config.data.clone(),
        })
    }
}
