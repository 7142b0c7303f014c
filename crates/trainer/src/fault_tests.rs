//! Tests of the training loop under faults: non-finite gradients (stop at the step, or skip it
//! with `skip_nonfinite`), a stop request between steps (as SIGINT / SIGTERM make), a run killed
//! before its first checkpoint, half-written checkpoint folders, and files that cannot be
//! written. Each ends with the run resumable and its log equal to an uninterrupted run's.

use crate::run::train::FaultPlan;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::run::checkpoint;
use crate::run::train::{self, Event, Observer, Quiet, RunOptions, Start, TrainConfig};
use crate::train_tests::{err_text, losses, prepared, rng_lock, scratch, small_run};

type TB = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

fn run(config: &TrainConfig, out: &Path, options: RunOptions) -> train::Summary {
    train::train::<TB>(
        Start::Fresh(config.clone()),
        out,
        options,
        &Default::default(),
        &mut Quiet,
    )
    .unwrap()
}

/// Runs `config` without interruption into `dir/straight` and returns that folder.
fn uninterrupted(config: &TrainConfig, dir: &Path) -> PathBuf {
    let straight = dir.join("straight");
    run(config, &straight, RunOptions::default());
    straight
}

fn resume(out: &Path) -> train::Summary {
    Start::resume(out)
        .and_then(|start| {
            train::train::<TB>(
                start,
                out,
                RunOptions::default(),
                &Default::default(),
                &mut Quiet,
            )
        })
        .unwrap()
}

fn steps_kept(out: &Path) -> Vec<u64> {
    checkpoint::list(&out.join("checkpoints"))
        .into_iter()
        .map(|(step, _)| step)
        .collect()
}

/// Asserts the two runs logged the same steps with the same losses, gradient norms and alphas.
fn same_log(got: &Path, want: &Path) {
    let (got, want) = (losses(got), losses(want));
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0, "steps");
        assert_eq!(
            g.1.to_bits(),
            w.1.to_bits(),
            "step {}: loss {} vs {}",
            g.0,
            g.1,
            w.1
        );
        assert_eq!(g.2, w.2, "alpha");
    }
}

#[test]
fn non_finite_gradients_stop_the_run_at_their_step_or_are_skipped_when_allowed() {
    let _lock = rng_lock();
    let dir = scratch("fault-nonfinite");
    let data = prepared(&dir);
    let mut config = small_run(&data, 6);
    config.checkpoint_every = 2;
    let poisoned = RunOptions {
        faults: Some(std::sync::Arc::new(FaultPlan {
            nan_gradients_at: Some(2), // the third step
            ..FaultPlan::default()
        })),
        ..RunOptions::default()
    };

    // Without an allowance: the step is named, the last good checkpoint (step 2) is kept and the
    // run resumes from it.
    let stopped = dir.join("stopped");
    let err = err_text(train::train::<TB>(
        Start::Fresh(config.clone()),
        &stopped,
        poisoned.clone(),
        &Default::default(),
        &mut Quiet,
    ));
    assert!(err.contains("gradients became NaN at step 3"), "{err}");
    assert_eq!(steps_kept(&stopped), [2]);
    assert_eq!(resume(&stopped).steps, 6);
    let straight = uninterrupted(&config, &dir);
    same_log(&stopped, &straight);

    // With `skip_nonfinite = 1`: the step is logged as skipped (no update: the weights after
    // it are those before it), the run goes on and ends with finite losses.
    config.skip_nonfinite = 1;
    let skipped = dir.join("skipped");
    let s = run(&config, &skipped, poisoned);
    assert_eq!(s.steps, 6);
    let text = fs::read_to_string(skipped.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[2]["skipped"], true, "{}", records[2]);
    assert!(records[2]["grad_norm"].is_null(), "{}", records[2]);
    assert!(records.iter().filter(|r| r["skipped"] == true).count() == 1);
    assert!(losses(&skipped).iter().all(|l| l.1.is_finite()));
    // Step 3's loss is computed before its (skipped) update, so the runs agree up to step 3;
    // step 4 starts from weights without step 3's update, so they differ from there.
    let (a, b) = (losses(&skipped), losses(&straight));
    assert_eq!(a[2].1.to_bits(), b[2].1.to_bits());
    assert!(
        (a[3].1 - b[3].1).abs() > 1e-7,
        "the update of step 3 was dropped"
    );
}

/// Sets the stop flag when step 3 is issued, as a signal handler would.
struct StopAt3(&'static AtomicBool);

impl Observer for StopAt3 {
    fn event(&mut self, event: Event<'_>) {
        if let Event::Issued(3) = event {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_stop_request_finishes_the_step_checkpoints_and_resumes_exactly() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let _lock = rng_lock();
    let dir = scratch("fault-stop");
    let data = prepared(&dir);
    let config = small_run(&data, 6);
    let out = dir.join("stopped");
    let s = train::train::<TB>(
        Start::Fresh(config.clone()),
        &out,
        RunOptions {
            stop: Some(&STOP),
            ..RunOptions::default()
        },
        &Default::default(),
        &mut StopAt3(&STOP),
    )
    .unwrap();
    assert!(s.interrupted && s.stopped_early && s.steps == 3, "{s:?}");
    assert_eq!(steps_kept(&out), [3]);
    assert!(s.checkpoint.ends_with(checkpoint::step_dir_name(3)));
    assert_eq!(resume(&out).steps, 6);
    same_log(&out, &uninterrupted(&config, &dir));
}

#[test]
fn a_run_killed_before_its_first_checkpoint_resumes_from_the_start() {
    let _lock = rng_lock();
    let dir = scratch("fault-early");
    let data = prepared(&dir);
    let config = small_run(&data, 4);
    let out = dir.join("run");
    run(
        &config,
        &out,
        RunOptions {
            stop_at_step: Some(2),
            ..RunOptions::default()
        },
    );
    // What a kill between config.json and the first checkpoint leaves: the settings, a log of
    // steps that no checkpoint holds, and a half-written checkpoint folder.
    fs::remove_dir_all(out.join("checkpoints")).unwrap();
    fs::create_dir_all(out.join("checkpoints/.tmp-step-000000002")).unwrap();
    fs::write(
        out.join("checkpoints/.tmp-step-000000002/model.safetensors"),
        b"half",
    )
    .unwrap();
    assert_eq!(resume(&out).steps, 4);
    assert!(!out.join("checkpoints/.tmp-step-000000002").exists());
    same_log(&out, &uninterrupted(&config, &dir));
}

#[test]
fn a_checkpoint_that_cannot_be_written_names_the_file_and_keeps_the_last_one() {
    let _lock = rng_lock();
    let dir = scratch("fault-write");
    let data = prepared(&dir);
    let mut config = small_run(&data, 4);
    config.checkpoint_every = 2;
    let out = dir.join("run");
    run(
        &config,
        &out,
        RunOptions {
            stop_at_step: Some(2),
            ..RunOptions::default()
        },
    );
    // The next checkpoint's folder name is taken by a file: placing it fails as a full disk
    // would (the steps ran; root ignores permissions, so a file in the way it is).
    let partial = out.join("checkpoints/.tmp-step-000000004");
    fs::write(out.join("checkpoints/step-000000004"), b"not a folder").unwrap();
    let e = err_text(Start::resume(&out).and_then(|start| {
        train::train::<TB>(
            start,
            &out,
            RunOptions::default(),
            &Default::default(),
            &mut Quiet,
        )
    }));
    assert!(e.contains("step-000000004"), "names the file: {e}");
    assert!(!partial.exists(), "the partial folder is removed");
    assert_eq!(steps_kept(&out), [2], "the last checkpoint is intact");
    // Space freed: the run resumes and ends like an uninterrupted one.
    fs::remove_file(out.join("checkpoints/step-000000004")).unwrap();
    assert_eq!(resume(&out).steps, 4);
    same_log(&out, &uninterrupted(&config, &dir));

    // metrics.jsonl that cannot be opened for appending: one error naming it, before any step.
    let other = dir.join("other");
    fs::create_dir_all(other.join("metrics.jsonl")).unwrap();
    let e = err_text(train::train::<TB>(
        Start::Fresh(config.clone()),
        &other,
        RunOptions::default(),
        &Default::default(),
        &mut Quiet,
    ));
    assert!(e.contains("metrics.jsonl"), "{e}");
}

#[test]
fn requests_that_cannot_fit_are_refused_before_the_first_step() {
    let dir = scratch("fault-fit");
    let data = prepared(&dir);
    let config = small_run(&data, 2);
    let out = dir.join("run");
    let refuse = |config: &TrainConfig, options: RunOptions| {
        err_text(train::train::<TB>(
            Start::Fresh(config.clone()),
            &out,
            options,
            &Default::default(),
            &mut Quiet,
        ))
    };
    // The estimate against a machine of 1 MiB: refused with the estimate and its parts.
    let tiny_machine = RunOptions {
        memory: Some(train::MemoryLimit {
            bytes: 1 << 20,
            shared: true,
            place: "this machine",
        }),
        ..RunOptions::default()
    };
    let e = refuse(&config, tiny_machine);
    assert!(
        e.contains("needs about")
            && e.contains("this machine has 0.0 GiB")
            && e.contains("4 x 32 tokens"),
        "{e}"
    );
    assert!(!out.exists(), "nothing written");
    // Two CPU replicas count twice.
    let mut two = config.clone();
    two.devices = 2;
    let estimate = transformer::accounting::training_memory(&config.model, 4, 32, 4).peak;
    let fits_one = RunOptions {
        memory: Some(train::MemoryLimit {
            bytes: estimate + estimate / 2,
            shared: true,
            place: "this machine",
        }),
        ..RunOptions::default()
    };
    let devices = [Default::default(), Default::default()];
    let e = err_text(train::train_on::<TB>(
        Start::Fresh(two),
        &out,
        fits_one.clone(),
        &devices,
        &mut Quiet,
    ));
    assert!(e.contains("2 replicas"), "{e}");
    let _lock = rng_lock();
    assert_eq!(run(&config, &out, fits_one).steps, 2, "one replica fits");

    // A micro-batch larger than the training data's windows.
    let mut wide = config.clone();
    wide.batch_size = 100_000;
    let e = refuse(&wide, RunOptions::default());
    assert!(e.contains("batch_size") && e.contains("windows"), "{e}");
}
