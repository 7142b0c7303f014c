//! Opening a run: its settings (fresh, or saved in the folder when resuming) checked against
//! the devices and nodes given, its data, its folder, its model (seeded, from `--init`, or from
//! the checkpoint it resumes), and the replicas on the other devices. Every request that cannot
//! be met and every data problem fails before the folder is touched.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use transformer::{accounting, Transformer};

use crate::config::TrainConfig;
use crate::distributed::cluster::{agreement, Cluster, Coordinator};
use crate::distributed::parallel::{Replica, StepContext};
use crate::distributed::peers::Peers;
use crate::error::TrainError;
use crate::run::cadence::Cadence;
use crate::run::checkpoint::{self, TrainState};
use crate::run::memory::check_memory;
use crate::run::metrics::MetricsLog;
use crate::run::readback::Pending;
use crate::run::report::{Event, Observer};
use crate::run::run_dir::{claim_fresh, latest_checkpoint};
use crate::run::session::Run;
use crate::run::train::{self, RunOptions};
use crate::step::optim::AdamW;
use crate::step::precision::LossScaler;
use corpus::WindowLoader;
use corpus::{DataError, DataRecord, Manifest};
use storage::run::RunDir;
use storage::write_atomic;

/// The run's settings: given, or read from the folder to resume (with its newest checkpoint).
struct Settings {
    config: TrainConfig,
    resume_from: Option<PathBuf>,
    resuming: bool,
    /// The data folder this session reads, when it is not the run's recorded one.
    data_given: Option<PathBuf>,
    /// Whether a resumed run's `config.json` is written again (its data moved, or it predates
    /// the data record).
    rewrite_config: bool,
}

/// The run's data: a loader per device, the validation split, the tokenizer file.
struct Data {
    loader: WindowLoader,
    peer_loaders: Vec<WindowLoader>,
    val_loader: WindowLoader,
    tokenizer: Option<PathBuf>,
}

impl<'c, B: AutodiffBackend> Run<'c, B> {
    /// Opens the run in `out` on this node's `devices`, as node `cluster.rank`; tells
    /// `observer` it has started before waiting on the other devices and nodes.
    pub fn open(
        start: train::Start,
        out: &Path,
        options: &RunOptions,
        devices: &[B::Device],
        cluster: &'c Cluster,
        observer: &mut dyn Observer,
    ) -> Result<Self, TrainError> {
        cluster.validate()?;
        let dir = RunDir::new(out);
        let lead = cluster.rank == 0;
        let mut settings = settings::<B>(start, &dir, options, devices, cluster)?;
        let data = open_data(&mut settings, devices.len(), cluster.nodes)?;
        let config = &settings.config;
        prepare_folder(&settings, &dir, lead, options.force)?;
        let plan = config.plan()?;
        let opened = model_and_state::<B>(config, &dir, &settings.resume_from, &devices[0])?;
        if settings.resume_from.is_some() && opened.state.step >= plan.total_steps {
            return Err(TrainError::NothingToResume {
                dir: dir.root().to_path_buf(),
                why: format!("is complete ({} steps)", opened.state.step),
            });
        }
        let metrics = write_run_files(&settings, &dir, lead, opened.state.step)?;
        observer.event(Event::Started {
            plan: &plan,
            start_step: opened.state.step,
            params: opened.model.num_params(),
        });
        // FLOPs of everything but the linear layers (scores, head), per token: the paper's
        // formula.
        let fixed = accounting::forward_flops(&config.model, config.seq_len, false, false);
        let ctx = StepContext {
            config: config.clone(),
            plan,
            lr: config.lr_schedule(&plan),
            fixed_per_token: fixed.attention_scores + fixed.head,
            faults: options.faults.clone(),
        };
        let mut cadence = Cadence::new(config, plan.total_steps, cluster.is_multi());
        cadence.time_limit_s = options.time_limit_s;
        cadence.stop_at_step = options.stop_at_step;
        cadence.stop = options.stop;
        let state = opened.state.clone();
        let replicas = start_replicas(
            opened,
            data.loader,
            data.peer_loaders,
            &settings,
            devices,
            cluster,
            &ctx,
        )?;
        Ok(Run {
            pending: Pending::new(state.tokens, state.flops),
            elapsed_before: state.elapsed_s,
            last_checkpoint: settings.resume_from.unwrap_or_default(),
            step_tokens: (settings.config.global_batch() * settings.config.seq_len) as u64,
            session: Instant::now(),
            step_end_s: 0.0,
            val_loader: data.val_loader,
            tokenizer: data.tokenizer,
            stopped_early: false,
            interrupted: false,
            replica: Some(replicas.first),
            peers: replicas.peers,
            coordinator: replicas.coordinator,
            config: settings.config,
            dir,
            lead,
            cluster,
            ctx,
            cadence,
            metrics,
            state,
        })
    }
}

/// The replica on this node's first device, the others', and the coordinator node 0 serves.
struct Replicas<B: AutodiffBackend> {
    first: Replica<B>,
    peers: Peers,
    coordinator: Option<Coordinator>,
}

/// Checks the `--init` checkpoint is there, then (node 0) claims the folder for a fresh run and
/// removes the checkpoint folders a killed run left half-written. Node 0 owns the folder; the
/// others only read a checkpoint from it to resume.
fn prepare_folder(
    settings: &Settings,
    dir: &RunDir,
    lead: bool,
    force: bool,
) -> Result<(), TrainError> {
    if let (Some(init), false) = (&settings.config.init, settings.resuming) {
        checkpoint::resolve(init)?;
    }
    if lead {
        if !settings.resuming {
            claim_fresh(dir, force)?;
        }
        checkpoint::remove_partial(&dir.checkpoints());
    }
    Ok(())
}

/// Node 0 of a fresh run writes `config.json`; node 0 opens `metrics.jsonl` (cut back to the
/// checkpoint's `step` when resuming).
fn write_run_files(
    settings: &Settings,
    dir: &RunDir,
    lead: bool,
    step: u64,
) -> Result<Option<MetricsLog>, TrainError> {
    if !lead {
        return Ok(None);
    }
    if !settings.resuming || settings.rewrite_config {
        let json = serde_json::to_string_pretty(&settings.config).expect("plain config");
        write_atomic(&dir.config(), json.as_bytes())?;
    }
    Ok(Some(MetricsLog::open(
        &dir.metrics(),
        settings.resuming.then_some(step),
    )?))
}

/// Starts the replicas: this node's first (on the calling thread) and one per further device,
/// agreeing with the other nodes on the settings, the step and the model's size; node 0 serves
/// the coordinator unless one runs already (it lives until the others leave).
fn start_replicas<B: AutodiffBackend>(
    opened: Opened<B>,
    loader: WindowLoader,
    peer_loaders: Vec<WindowLoader>,
    settings: &Settings,
    devices: &[B::Device],
    cluster: &Cluster,
    ctx: &StepContext,
) -> Result<Replicas<B>, TrainError> {
    let agreed = agreement(
        &settings.config,
        opened.state.step,
        opened.model.num_params(),
    );
    let first = Replica {
        model: opened.model,
        optim: opened.optim,
        loader,
        device: devices[0].clone(),
        rank: cluster.rank * devices.len(),
        peers: devices.len() * cluster.nodes,
        scaler: opened.state.loss_scale.map(LossScaler::from),
        watch: cluster.watchdog(),
    };
    let optimizer = settings
        .resume_from
        .as_ref()
        .map(|p| p.join(checkpoint::OPTIMIZER));
    let coordinator = cluster.serve_coordinator()?;
    let peers = Peers::start(
        &first,
        devices,
        peer_loaders,
        optimizer.as_deref(),
        ctx,
        cluster,
        agreed,
    )?;
    Ok(Replicas {
        first,
        peers,
        coordinator,
    })
}

/// The settings of the run (a resumed run's from its `config.json`: a bad value names that
/// file), with this session's overrides, checked against the devices and nodes given and
/// against the memory there is.
fn settings<B: AutodiffBackend>(
    start: train::Start,
    dir: &RunDir,
    options: &RunOptions,
    devices: &[B::Device],
    cluster: &Cluster,
) -> Result<Settings, TrainError> {
    // Resuming a run killed before its first checkpoint starts it over from its saved settings.
    let (mut config, resume_from, resuming) = match start {
        train::Start::Fresh(config) => (config, None, false),
        train::Start::Resume(saved) => (*saved, latest_checkpoint(dir), true),
    };
    if let Some(n) = options.skip_nonfinite {
        config.skip_nonfinite = n;
    }
    let data_given = match (resuming, &options.data) {
        (true, Some(data)) if *data != config.data => Some(data.clone()),
        _ => None,
    };
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
    if let Some(limit) = options.memory {
        let mut model = config.model.clone();
        model.self_guided = config.sgt.is_some();
        check_memory(&config, &model, devices.len(), limit)?;
    }
    Ok(Settings {
        config,
        resume_from,
        resuming,
        data_given,
        rewrite_config: false,
    })
}

/// The run's data, checked: the manifest fits the model, a micro-batch over every device has
/// windows enough, the tokenizer file is there.
fn open_data(settings: &mut Settings, devices: usize, nodes: usize) -> Result<Data, TrainError> {
    let manifest = record_data(settings)?;
    let config = &settings.config;
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
    let per_micro_batch = config.batch_size * devices * nodes;
    if loader.windows() < per_micro_batch {
        return Err(TrainError::Setting {
            setting: "batch_size",
            problem: format!(
                "a micro-batch of {per_micro_batch} sequences of {} tokens needs as many windows; the training data has {} (lower `batch_size` or `seq_len`, or add data)",
                config.seq_len,
                loader.windows()
            ),
        });
    }
    let peer_loaders = (1..devices)
        .map(|_| open_loader())
        .collect::<Result<Vec<_>, _>>()?;
    let val_loader =
        manifest.loader(&config.data, &manifest.validation, config.seq_len, 0, false)?;
    let tokenizer = manifest.tokenizer.as_ref().map(|t| config.data.join(t));
    if let Some(t) = &tokenizer {
        if !t.is_file() {
            return Err(DataError::Tokenizer(format!("{} is missing", t.display())).into());
        }
    }
    Ok(Data {
        loader,
        peer_loaders,
        val_loader,
        tokenizer,
    })
}

/// The manifest of the run's data folder: a fresh run records what the folder holds; a resumed
/// run reads its recorded folder or the one given instead, which must hold the same data (it
/// becomes the run's folder).
fn record_data(settings: &mut Settings) -> Result<Manifest, TrainError> {
    let config = &mut settings.config;
    let recorded = config.data.clone();
    if let Some(given) = &settings.data_given {
        config.data = given.clone();
    }
    let manifest = Manifest::load(&config.data).map_err(|e| match (e, settings.resuming) {
        (DataError::NoData { problem, .. }, true) if settings.data_given.is_none() => {
            TrainError::RunDataGone {
                dir: recorded.clone(),
                problem,
            }
        }
        (e, _) => e.into(),
    })?;
    let found = DataRecord::of(&manifest, &config.data)?;
    let added = config.data_record.is_none();
    match &config.data_record {
        Some(run) => {
            if let Some(difference) = run.difference(&found) {
                return Err(TrainError::OtherData {
                    given: config.data.clone(),
                    run: recorded,
                    difference,
                });
            }
        }
        None => config.data_record = Some(found),
    }
    settings.rewrite_config = settings.resuming && (settings.data_given.is_some() || added);
    Ok(manifest)
}

/// The model, its optimizer and where the run stands, before the first step of this session.
struct Opened<B: AutodiffBackend> {
    model: Transformer<B>,
    optim: AdamW<B::InnerBackend>,
    state: TrainState,
}

/// The model (seeded init, guides when self-guided; then the `--init` checkpoint, or the
/// checkpoint the run resumes with its optimizer state) and where the run stands.
fn model_and_state<B: AutodiffBackend>(
    config: &TrainConfig,
    dir: &RunDir,
    resume_from: &Option<PathBuf>,
    device: &B::Device,
) -> Result<Opened<B>, TrainError> {
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
    match resume_from {
        Some(ckpt) => {
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
        }
        None => {
            if let Some(init) = &config.init {
                start_from(init, &mut model, config.sgt.is_some())?;
            }
        }
    }
    if let Some(sgt) = &config.sgt {
        model.set_reduce_flop(sgt.reduce_flop);
    }
    Ok(Opened {
        model,
        optim,
        state,
    })
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
        problem: format!("the run's model does not fit the `init` checkpoint: {e}"),
    })?;
    set_guides(model, guided);
    Ok(())
}
