//! The training loop: open the run, then per step: step, log, maybe evaluate, maybe
//! checkpoint. AdamW with warmup + cosine, global-norm clipping, gradient accumulation,
//! self-guided training (alpha per optimizer step, fixedstep / fixedflop with replay,
//! reduce_flop), the FLOP ledger, checkpoints and exact resume.
//!
//! The run folder holds `config.json` ([`TrainConfig`]), `metrics.jsonl`, `loss.svg` and
//! `checkpoints/step-*/`. Library code never prints: progress goes to an [`Observer`].
//! The step primitives live in [`crate::step`], the settings in [`crate::config`], the run
//! folder in [`crate::run::run_dir`] and validation in [`crate::run::eval`]; they are re-exported here.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use transformer::{accounting, Transformer};

use crate::data::Manifest;
use crate::distributed::cluster::{agreement, Cluster};
use crate::distributed::parallel::{Replica, StepContext};
use crate::distributed::peers::Peers;
use crate::error::TrainError;
use crate::run::checkpoint::{self, TrainState};
use crate::run::memory::check_memory;
use crate::run::metrics::{loss_svg, MetricsLog, StepRecord};
use crate::run::readback::Pending;
use crate::run::run_dir::{claim_fresh, find_resume};
use crate::step::optim::AdamW;
use crate::step::precision::LossScaler;
use storage::write_atomic;

pub use crate::config::{Budget, TrainConfig};
pub use crate::run::eval::{evaluate, EvalResult};
pub use crate::run::memory::MemoryLimit;
pub use crate::run::report::{Event, Observer, Quiet, Summary};
pub use crate::run::run_dir::{check_run_model, read_run_config, RunDir};
pub use crate::step::loss::{cross_entropy, head_cross_entropy};
pub use crate::step::primitives::{
    apply_update, batch_tensors, check_ids, micro_step, step_seed, Compute, Update,
};

/// Where a run starts.
// Built once per run: the size of the settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// A new run with these settings (a folder holding another run is refused unless
    /// [`RunOptions::force`]).
    Fresh(TrainConfig),
    /// Continue the run in the folder from its newest checkpoint, with the settings saved in
    /// its `config.json` (see [`crate::run::run_dir::check_run_model`] to refuse another model).
    Resume,
}

/// How to treat the output folder.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Replace a run already in the folder.
    pub force: bool,
    /// Stop (with a checkpoint) after this many seconds of this session.
    pub time_limit_s: Option<f64>,
    /// Stop (with a checkpoint) once this many steps are done; `--resume` continues.
    pub stop_at_step: Option<u64>,
    /// Stop (with a checkpoint) after the step in progress once this flag is set (the CLI sets
    /// it on SIGINT / SIGTERM); `--resume` continues.
    pub stop: Option<&'static AtomicBool>,
    /// Overrides the run's `skip_nonfinite` for this session (e.g. to resume past a fault).
    pub skip_nonfinite: Option<u64>,
    /// Memory the run may use: a run whose estimate
    /// ([`transformer::accounting::training_memory`]) exceeds it is refused before it starts.
    pub memory: Option<MemoryLimit>,
    /// Tests: the data-parallel replica of this rank panics in this (0-based) step.
    #[cfg(test)]
    pub(crate) fail_at: Option<(usize, u64)>,
    /// Tests: the loss of this (0-based) step reads back as NaN.
    #[cfg(test)]
    pub(crate) poison_at: Option<u64>,
    /// Tests: the gradients of this (0-based) step are NaN.
    #[cfg(test)]
    pub(crate) poison_grads_at: Option<u64>,
}

/// Loads the weights of checkpoint `init` into `model` (the run's model): its guides are made
/// those of the checkpoint for the load, then those the run needs (`guided`): dropped, or fresh
/// ones (the structured layers merged) for a checkpoint without.
fn start_from<B: AutodiffBackend>(
    init: &Path,
    model: &mut Transformer<B>,
    guided: bool,
) -> Result<(), TrainError> {
    let dir = checkpoint::resolve(init)?;
    let state = checkpoint::read_state(&dir)?;
    let set_guides = |model: &mut Transformer<B>, on: bool| match (model.has_guides(), on) {
        (true, false) => model.drop_guides(),
        (false, true) => model.add_guides(),
        _ => {}
    };
    set_guides(model, state.guides);
    checkpoint::load_weights(&dir, model).map_err(|e| TrainError::BadRunConfig {
        path: dir.join(checkpoint::MODEL_CONFIG),
        problem: format!("the run's model does not fit the --init checkpoint: {e}"),
    })?;
    set_guides(model, guided);
    Ok(())
}

/// Trains (or resumes) the run in `out` on `device`, reporting to `observer`.
pub fn train<B: AutodiffBackend>(
    start: Start,
    out: &Path,
    options: RunOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    train_on::<B>(start, out, options, std::slice::from_ref(device), observer)
}

/// Trains (or resumes) the run in `out` data-parallel over `devices` (one replica each; see
/// [`crate::distributed::parallel`]), reporting to `observer`. The run's `devices` setting must match.
pub fn train_on<B: AutodiffBackend>(
    start: Start,
    out: &Path,
    options: RunOptions,
    devices: &[B::Device],
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    train_nodes::<B>(start, out, options, devices, &Cluster::single(), observer)
}

/// [`train_on`] as node `cluster.rank` of `cluster.nodes` (see [`crate::distributed::cluster`]): every node
/// runs this with the same settings and its own `devices`, and evaluates when the run does;
/// node 0 alone logs and writes the checkpoints into `out` (a folder every node can read, for
/// `--resume`). The run's `nodes` and `devices` settings must match.
pub fn train_nodes<B: AutodiffBackend>(
    start: Start,
    out: &Path,
    options: RunOptions,
    devices: &[B::Device],
    cluster: &Cluster,
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    cluster.validate()?;
    let lead = cluster.rank == 0;
    let dir = RunDir::new(out);
    // Resuming a run killed before its first checkpoint starts it over from its saved settings.
    let (config, resumed, resuming) = match start {
        Start::Fresh(config) => (config, None, false),
        Start::Resume => {
            let (checkpoint, saved) = find_resume(&dir)?;
            (saved, checkpoint, true)
        }
    };
    let mut config = config;
    if let Some(n) = options.skip_nonfinite {
        config.skip_nonfinite = n;
    }
    let config = &config;
    // A resumed run's settings come from its config.json: a bad value names that file.
    config.validate().map_err(|e| match resuming {
        true => TrainError::BadRunConfig {
            path: dir.config(),
            problem: e.to_string(),
        },
        false => e,
    })?;
    if config.devices != devices.len() {
        return Err(TrainError::DeviceCount {
            run: config.devices,
            given: devices.len(),
        });
    }
    if config.nodes != cluster.nodes {
        return Err(TrainError::NodeCount {
            run: config.nodes,
            given: cluster.nodes,
        });
    }
    for device in devices {
        config.precision.check::<B>(device)?;
    }
    let device = &devices[0];
    // Requests that cannot be met, and data problems, fail before the folder is touched.
    if let Some(limit) = options.memory {
        let mut model = config.model.clone();
        model.self_guided = config.sgt.is_some();
        check_memory(config, &model, devices.len(), limit)?;
    }
    // Data problems surface before the output folder is touched.
    let manifest = Manifest::load(&config.data)?;
    manifest.check_vocab(&config.model_name, config.model.vocab_size)?;
    let open_loader = || {
        manifest.loader(
            &config.data,
            &manifest.train,
            config.seq_len,
            config.seed,
            true,
        )
    };
    let loader = open_loader()?;
    let per_micro_batch = config.batch_size * devices.len() * cluster.nodes;
    if loader.windows() < per_micro_batch {
        return Err(TrainError::Setting {
            setting: "batch_size",
            problem: format!(
                "a micro-batch of {per_micro_batch} sequences of {} tokens needs as many windows; the training data has {} (lower --batch-size or --seq-len, or add data)",
                config.seq_len,
                loader.windows()
            ),
        });
    }
    let peer_loaders = (1..devices.len())
        .map(|_| open_loader())
        .collect::<Result<Vec<_>, _>>()?;
    let val_loader =
        manifest.loader(&config.data, &manifest.validation, config.seq_len, 0, false)?;
    let tokenizer = manifest.tokenizer.as_ref().map(|t| config.data.join(t));
    if let Some(t) = &tokenizer {
        if !t.is_file() {
            return Err(TrainError::Tokenizer(format!("{} is missing", t.display())));
        }
    }
    // The checkpoint to start from must be there before the folder is touched.
    if let (Some(init), false) = (&config.init, resuming) {
        checkpoint::resolve(init)?;
    }
    // Node 0 owns the folder; the others only read a checkpoint from it to resume.
    if !resuming && lead {
        claim_fresh(&dir, options.force)?;
    }
    // Checkpoint folders a killed run left half-written.
    if lead {
        checkpoint::remove_partial(&dir.checkpoints());
    }
    let plan = config.plan()?;

    // The model: seeded init, guides when self-guided, then the checkpoint if resuming.
    let mut model_config = config.model.clone();
    if config.sgt.is_some() {
        model_config.self_guided = true;
    }
    B::seed(device, config.seed);
    let mut model: Transformer<B> = model_config.init(device)?;
    let mut optim = AdamW::<B::InnerBackend>::new(config.adamw);
    let mut state = TrainState {
        seed: config.seed,
        guides: model.has_guides(),
        loss_scale: config
            .precision
            .scaled()
            .then(|| LossScaler::default().into()),
        ..TrainState::default()
    };
    if let (Some(init), None) = (&config.init, &resumed) {
        start_from(init, &mut model, config.sgt.is_some())?;
    }
    if let Some(ckpt) = &resumed {
        state = checkpoint::read_state(ckpt)?;
        if !state.guides {
            model.drop_guides();
        }
        checkpoint::load_weights(ckpt, &mut model).map_err(|e| TrainError::BadRunConfig {
            path: dir.config(),
            problem: format!("its model does not fit the checkpoint: {e}"),
        })?;
        let optimizer = ckpt.join(checkpoint::OPTIMIZER);
        optim.load(&optimizer, device)?;
        optim.check_fits(&model, &optimizer)?;
        if state.step >= plan.total_steps {
            return Err(TrainError::NothingToResume {
                dir: dir.root().to_path_buf(),
                why: format!("is complete ({} steps)", state.step),
            });
        }
    } else if !resuming && lead {
        let json = serde_json::to_string_pretty(config).expect("plain config");
        write_atomic(&dir.config(), json.as_bytes())?;
    }
    if let Some(sgt) = &config.sgt {
        model.set_reduce_flop(sgt.reduce_flop);
    }
    let mut metrics = match lead {
        true => Some(MetricsLog::open(
            &dir.metrics(),
            resuming.then_some(state.step),
        )?),
        false => None,
    };
    observer.event(Event::Started {
        plan: &plan,
        start_step: state.step,
        params: model.num_params(),
    });

    // FLOPs of everything but the linear layers (scores, head), per token: the paper's formula.
    let fixed = accounting::forward_flops(&config.model, config.seq_len, false, false);
    let ctx = StepContext {
        config: config.clone(),
        plan,
        lr: config.lr_schedule(&plan),
        fixed_per_token: fixed.attention_scores + fixed.head,
        #[cfg(test)]
        fail_at: options.fail_at,
        #[cfg(test)]
        poison_grads_at: options.poison_grads_at,
    };
    let step_tokens = (config.global_batch() * config.seq_len) as u64;
    let agreed = agreement(config, state.step, model.num_params());
    let mut replica = Replica {
        model,
        optim,
        loader,
        device: device.clone(),
        rank: cluster.rank * devices.len(),
        peers: devices.len() * cluster.nodes,
        scaler: state.loss_scale.map(LossScaler::from),
        watch: cluster.watchdog(),
    };
    let resume_optimizer = resumed.as_ref().map(|p| p.join(checkpoint::OPTIMIZER));
    // Node 0 serves the coordinator unless one runs already; it lives until the others leave.
    let coordinator = cluster.serve_coordinator()?;
    let peers = Peers::start(
        &replica,
        devices,
        peer_loaders,
        resume_optimizer.as_deref(),
        &ctx,
        cluster,
        agreed,
    )?;
    let session = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut pending = Pending::new(state.tokens, state.flops);
    let (mut stopped_early, mut interrupted) = (false, false);
    let mut last_checkpoint = resumed.clone().unwrap_or_default();

    // Whether to stop once `done` steps are done, `now` seconds into this session.
    let wants_stop = |done: u64, now: f64| {
        done < plan.total_steps
            && (options.stop.is_some_and(|s| s.load(Ordering::SeqCst))
                || options.time_limit_s.is_some_and(|l| now >= l)
                || options.stop_at_step.is_some_and(|s| done >= s))
    };
    for step in state.step..plan.total_steps {
        peers.begin(step)?;
        let loss_scale = replica.scaler.map(|s| s.scale);
        // Over several nodes the wish to stop is decided before the step and shared in it, so
        // every node stops after the same step.
        let stop_wish = cluster.is_multi() && wants_stop(step + 1, session.elapsed().as_secs_f64());
        let done;
        (replica, done) = match replica.step(step, &ctx, stop_wish) {
            Ok(stepped) => stepped,
            Err(e) => return Err(peers.abort(e)),
        };
        state.step = step + 1;
        observer.event(Event::Issued(state.step));
        state.tokens += step_tokens;
        state.flops += done.flops;
        state.cursor = replica.loader.cursor();
        state.alpha = plan.alpha(step);
        state.guides = replica.model.has_guides();
        state.loss_scale = replica.scaler.map(Into::into);
        let now = session.elapsed().as_secs_f64();
        state.elapsed_s = elapsed_before + now;

        let last = state.step == plan.total_steps;
        let signalled = options.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        let stop_now = match cluster.is_multi() {
            true => done.stop,
            false => wants_stop(state.step, now),
        };
        let eval_now = last
            || stop_now
            || (config.eval_every > 0 && state.step.is_multiple_of(config.eval_every));
        let checkpoint_now = last
            || stop_now
            || (config.checkpoint_every > 0 && state.step.is_multiple_of(config.checkpoint_every));
        // The loss and gradient norm stay on the device; the record is completed when they
        // are read (below), with every other pending step's.
        let record = StepRecord {
            step: state.step,
            total_steps: plan.total_steps,
            tokens: state.tokens,
            lr: ctx.lr.at(step),
            alpha: state.alpha,
            guides_used: done.guides_used,
            skipped: !done.applied,
            loss_scale,
            flops: state.flops,
            elapsed_s: state.elapsed_s,
            ..StepRecord::default()
        };
        if record.skipped_nonfinite() {
            state.nonfinite_skips += 1;
            if state.nonfinite_skips > config.skip_nonfinite {
                return Err(peers.abort(TrainError::TooManyNonFinite {
                    step: state.step,
                    skips: state.nonfinite_skips,
                    allowed: config.skip_nonfinite,
                }));
            }
        }
        let logged = eval_now || state.step.is_multiple_of(config.log_every);
        #[cfg(test)]
        let mut done = done;
        #[cfg(test)]
        if options.poison_at == Some(step) {
            done.loss = done.loss.mul_scalar(f64::NAN);
        }
        pending.push(record, logged, done.loss, done.grad_norm);
        if eval_now || checkpoint_now || pending.due() {
            let mut records = pending.read(config.peak_flops)?;
            // Every node evaluates (the same numbers), so that the others spend node 0's
            // evaluation time evaluating rather than waiting on it in the next all-reduce.
            if eval_now {
                // The trained model in the training precision, every guide in use (not
                // reduce_flop's last draw): the function `strata eval` scores on the checkpoint.
                let mut trained = replica.model.valid();
                trained.set_reduce_flop(false);
                let r = evaluate(
                    &config.precision.apply(trained),
                    &val_loader,
                    config.batch_size,
                    config.eval_batches * config.devices * config.nodes,
                    device,
                )?;
                if let Some(record) = records.last_mut() {
                    record.val_loss = Some(r.val_loss);
                    record.val_ppl = Some(r.ppl);
                }
                state.val_loss = Some(r.val_loss);
            }
            for record in &records {
                if let Some(metrics) = &mut metrics {
                    metrics.append(record)?;
                }
                observer.event(Event::Step(record));
            }
            if let (true, Some(metrics)) = (eval_now, &metrics) {
                write_atomic(
                    &dir.plot(),
                    loss_svg(metrics.records(), &config.model_name).as_bytes(),
                )?;
            }
        }
        if checkpoint_now && lead {
            last_checkpoint = checkpoint::save(
                &dir.checkpoints(),
                &replica.model,
                &replica.optim,
                &state,
                tokenizer.as_deref(),
                config.keep,
            )?;
            observer.event(Event::Checkpoint(&last_checkpoint));
        }
        if stop_now {
            (stopped_early, interrupted) = (true, signalled);
            break;
        }
    }
    peers.finish::<B>()?;
    // The other nodes leave the coordinator node 0 serves before it stops (bounded: a node
    // that died without leaving is forgotten when its connection closes).
    if let Some(coordinator) = coordinator {
        coordinator.wait_idle(cluster.timeout);
    }
    if let Some(metrics) = &metrics {
        write_atomic(
            &dir.plot(),
            loss_svg(metrics.records(), &config.model_name).as_bytes(),
        )?;
    }
    let summary = Summary {
        model: config.model_name.clone(),
        params: replica.model.num_params(),
        steps: state.step,
        tokens: state.tokens,
        flops: state.flops,
        elapsed_s: state.elapsed_s,
        tokens_per_s: state.tokens as f64 / state.elapsed_s.max(1e-9),
        val_loss: state.val_loss,
        val_ppl: state.val_loss.map(f64::exp),
        stopped_early,
        interrupted,
        checkpoint: last_checkpoint,
    };
    observer.event(Event::Finished(&summary));
    Ok(summary)
}
