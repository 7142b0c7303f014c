//! Kill anywhere, lose nothing: runs `strata train` on a small model, kills it with SIGKILL at
//! seeded random moments (startup, steps, checkpoint writes: a checkpoint is written every
//! step), resumes it with `--resume`, and repeats until the run ends; then compares its
//! `metrics.jsonl` with an uninterrupted run of the same settings.
//!
//! Used by `cargo xtask chaos` (100 kills) and by a CI-sized test of the `strata` binary. Needs
//! only the binary: no burn here, so xtask can use it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::corpus::pattern_corpus;
use crate::model::SMALL_MODEL;

/// A chaos run's settings.
#[derive(Clone, Debug)]
pub struct Chaos {
    /// The `strata` binary.
    pub strata: PathBuf,
    /// Work folder: the corpus, the data, the model file, the reference and the killed runs.
    pub dir: PathBuf,
    /// Kills to inject.
    pub kills: usize,
    /// Seed of the kill moments.
    pub seed: u64,
    /// Optimizer steps of the run.
    pub steps: u64,
    /// Bound on the whole chaos phase.
    pub timeout: Duration,
}

/// What a chaos run measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ChaosReport {
    /// Kills injected.
    pub kills: usize,
    /// Kills after which the run resumed and, at the end, logged exactly the uninterrupted
    /// run's steps (all of them when the comparison passed).
    pub survived: usize,
    /// Kills that left a half-written checkpoint folder (the kill landed in a checkpoint write).
    pub during_checkpoint: usize,
    /// Kills before the run's first logged step of that session (startup, loading, resuming).
    pub before_first_step: usize,
    /// Checkpoint folders loaded and checked after the kills.
    pub checkpoints_checked: usize,
    /// Steps of the run.
    pub steps: u64,
    /// Seconds of the uninterrupted run.
    pub reference_s: f64,
    /// Seconds of the killed run, restarts included.
    pub chaos_s: f64,
}

/// The fields of a metrics record that must match the uninterrupted run exactly (not the
/// timings).
const COMPARED: &[&str] = &[
    "step",
    "loss",
    "grad_norm",
    "lr",
    "alpha",
    "tokens",
    "flops",
    "val_loss",
    "skipped",
];

impl Chaos {
    /// Writes the corpus, prepares it (300-token BPE) and writes the model file; returns the
    /// `strata train` arguments of the run (without `--out` / `--resume`).
    pub fn prepare(&self) -> Result<Vec<String>, String> {
        fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let text = pattern_corpus(&self.dir, 20, 200);
        let data = self.dir.join("data");
        let _ = fs::remove_dir_all(&data);
        self.strata_ok(&[
            "data",
            "prepare",
            "--input",
            &text.to_string_lossy(),
            "--out",
            &data.to_string_lossy(),
            "--vocab-size",
            "300",
        ])?;
        // The harness's shrunk model, with room for the data's vocabulary and a longer context.
        let model = self.dir.join("model.toml");
        let config = SMALL_MODEL
            .replace("vocab_size = 50", "vocab_size = 300")
            .replace("max_seq_len = 16", "max_seq_len = 32");
        fs::write(&model, config).map_err(|e| format!("{}: {e}", model.display()))?;
        let steps = self.steps.to_string();
        Ok([
            "train",
            "--model",
            &model.to_string_lossy(),
            "--data",
            &data.to_string_lossy(),
            "--steps",
            &steps,
            "--batch-size",
            "4",
            "--checkpoint-every",
            "1",
            "--keep",
            "2",
            "--eval-every",
            "5",
            "--eval-batches",
            "2",
            "--seed",
            "5",
        ]
        .map(String::from)
        .to_vec())
    }

    /// Runs the reference, then the killed run, and compares them. `check` loads one
    /// checkpoint folder (the caller's way: in process, or `strata eval`) and is called for
    /// every complete checkpoint on disk after every kill and at the end.
    pub fn run(
        &self,
        train: &[String],
        check: &mut dyn FnMut(&Path) -> Result<(), String>,
    ) -> Result<ChaosReport, String> {
        let mut report = ChaosReport {
            steps: self.steps,
            ..ChaosReport::default()
        };
        let reference = self.dir.join("reference");
        let chaos = self.dir.join("chaos");
        for d in [&reference, &chaos] {
            let _ = fs::remove_dir_all(d);
            let _ = fs::remove_file(d.with_extension("log"));
        }
        let first_step;
        (report.reference_s, first_step) = self.reference(train, &reference)?;
        let want = records(&reference)?;

        // Kill moments uniform in [0, startup + 2 P step times), P = steps / (1.5 kills): each
        // kill lets the run progress by at most about P steps, so the kills are spent before
        // the run ends, and some land in the startup (loading, resuming).
        let startup = first_step.unwrap_or(report.reference_s);
        let per_step = (report.reference_s - startup).max(1e-3) / self.steps.max(1) as f64;
        let progress = self.steps as f64 / (1.5 * self.kills.max(1) as f64);
        let max_delay = startup + 2.0 * progress * per_step;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let start = Instant::now();
        loop {
            if start.elapsed() > self.timeout {
                return Err(format!(
                    "the killed run did not end within {:?} ({} kills)",
                    self.timeout, report.kills
                ));
            }
            let resume = chaos.join("config.json").is_file();
            let logged_before = lines(&chaos);
            let partial_before = partial_checkpoint(&chaos.join("checkpoints"));
            let mut child = self.spawn(train, &chaos, resume)?;
            if report.kills < self.kills {
                let delay = Duration::from_secs_f64(rng.random_range(0.0..max_delay));
                match wait_up_to(&mut child, delay)? {
                    None => {
                        child.kill().map_err(|e| e.to_string())?; // SIGKILL
                        child.wait().map_err(|e| e.to_string())?;
                        report.kills += 1;
                        if lines(&chaos) <= logged_before {
                            report.before_first_step += 1;
                        }
                        let checkpoints = chaos.join("checkpoints");
                        // A partial folder left by an earlier kill is removed when a run starts;
                        // one seen now is this kill's unless nothing happened since.
                        if partial_checkpoint(&checkpoints)
                            && (!partial_before || lines(&chaos) > logged_before)
                        {
                            report.during_checkpoint += 1;
                        }
                        for ckpt in complete_checkpoints(&checkpoints) {
                            check(&ckpt).map_err(|e| {
                                format!("after kill {}: {}: {e}", report.kills, ckpt.display())
                            })?;
                            report.checkpoints_checked += 1;
                        }
                        continue;
                    }
                    Some(status) if status.success() => break,
                    Some(status) => {
                        return Err(format!(
                            "after {} kills the run failed ({status}): {}",
                            report.kills,
                            tail(&chaos.with_extension("log"))
                        ))
                    }
                }
            }
            let status = child.wait().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!(
                    "after {} kills the run failed ({status}): {}",
                    report.kills,
                    tail(&chaos.with_extension("log"))
                ));
            }
            break;
        }
        report.chaos_s = start.elapsed().as_secs_f64();
        for ckpt in complete_checkpoints(&chaos.join("checkpoints")) {
            check(&ckpt).map_err(|e| format!("at the end: {}: {e}", ckpt.display()))?;
            report.checkpoints_checked += 1;
        }
        compare(&records(&chaos)?, &want)?;
        report.survived = report.kills;
        Ok(report)
    }

    /// Runs the uninterrupted reference into `dir`: its seconds, and when its first step was
    /// logged.
    fn reference(&self, train: &[String], dir: &Path) -> Result<(f64, Option<f64>), String> {
        let start = Instant::now();
        let mut child = self.spawn(train, dir, false)?;
        let mut first_step = None;
        let status = loop {
            if first_step.is_none() && lines(dir) > 0 {
                first_step = Some(start.elapsed().as_secs_f64());
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if !status.success() {
            return Err(format!(
                "the uninterrupted run failed ({status}): {}",
                tail(&dir.with_extension("log"))
            ));
        }
        Ok((start.elapsed().as_secs_f64(), first_step))
    }

    fn spawn(&self, train: &[String], out: &Path, resume: bool) -> Result<Child, String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.with_extension("log"))
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.strata);
        command.args(train).arg("--out").arg(out);
        if resume {
            command.arg("--resume");
        }
        command
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.strata.display()))
    }

    fn strata_ok(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new(&self.strata)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.strata.display()))?;
        if !out.status.success() {
            return Err(format!(
                "strata {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

/// Complete lines of a run's metrics.jsonl (a torn last line is not one).
fn lines(run: &Path) -> usize {
    fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().filter(|l| l.ends_with('}')).count())
        .unwrap_or(0)
}

/// Every record of a run's metrics.jsonl, each line required to parse.
fn records(run: &Path) -> Result<Vec<Value>, String> {
    let path = run.join("metrics.jsonl");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Equal step sequences (no duplicated or missing step) with exactly equal values.
fn compare(got: &[Value], want: &[Value]) -> Result<(), String> {
    let steps = |r: &[Value]| r.iter().map(|v| v["step"].as_u64()).collect::<Vec<_>>();
    if steps(got) != steps(want) {
        return Err(format!(
            "logged steps differ: {:?} vs the uninterrupted {:?}",
            steps(got),
            steps(want)
        ));
    }
    for (g, w) in got.iter().zip(want) {
        for field in COMPARED {
            if g.get(field) != w.get(field) {
                return Err(format!(
                    "step {}: {field} {:?} vs the uninterrupted {:?}",
                    w["step"],
                    g.get(field),
                    w.get(field)
                ));
            }
        }
    }
    Ok(())
}

fn partial_checkpoint(dir: &Path) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
}

/// Checkpoint folders as strata lists them: `step-*` with a `state.json`.
fn complete_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
        .map(|e| e.path())
        .filter(|p| p.join("state.json").is_file())
        .collect();
    out.sort();
    out
}

/// The last lines of a log, for an error message.
fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Waits at most `delay` for `child` to end: its exit status, or none if it still runs.
fn wait_up_to(
    child: &mut Child,
    delay: Duration,
) -> Result<Option<std::process::ExitStatus>, String> {
    let t0 = Instant::now();
    while t0.elapsed() < delay {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(None)
}
