//! Faults around `strata train`, end to end: SIGTERM / SIGINT (stop after the step with a
//! checkpoint, exit 0; a second signal exits at once), a full disk (a file-size limit, and a
//! small tmpfs where the test may mount one) and non-finite settings. After each the run
//! resumes and logs what an uninterrupted run logs.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `strata train` of the small model for `steps` steps, checkpointing every 2, into `out`,
/// followed by `extra`.
fn train_args(model: &str, data: &str, out: &Path, steps: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--model", model, "--data", data, "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(out.to_string_lossy().into_owned());
    for s in [
        "--steps",
        steps,
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--seed",
        "3",
    ]
    .iter()
    .chain(extra)
    {
        a.push(s.to_string());
    }
    a
}

/// Starts `strata` with `args`, its output going to `<out>.log` (no pipe to fill up).
fn spawn(args: &[String]) -> Child {
    let out = args
        .iter()
        .position(|a| a == "--out")
        .map(|i| Path::new(&args[i + 1]).with_extension("log"))
        .expect("an --out");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("strata starts")
}

/// Waits at most `limit` for `child` (then kills it and fails).
fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("strata did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most a minute) until the run in `out` has logged `n` steps.
fn wait_for_steps(child: &mut Child, out: &Path, n: usize) {
    let start = Instant::now();
    while logged_steps(out).len() < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "strata ended before step {n}"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no step {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (step, loss) of every line of the run's metrics.jsonl.
fn logged_steps(out: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn kept_checkpoints(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we own.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Waits (at most 10 s) until `sig`, sent to `child`, is no longer pending (Linux's
/// `/proc/PID/status`, `ShdPnd`): it was delivered, so a second one cannot merge with it.
fn wait_delivered(child: &Child, sig: libc::c_int) {
    let start = Instant::now();
    let bit = 1u64 << (sig - 1);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
        let pending = status.ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("ShdPnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        });
        if pending.is_none_or(|p| p & bit == 0) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "signal {sig} still pending"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs `args` to the end and returns its log.
fn uninterrupted(args: &[String], out: &Path) -> Vec<(u64, f64)> {
    let mut child = spawn(args);
    assert!(wait(&mut child, Duration::from_secs(300)).success());
    logged_steps(out)
}

/// `args` followed by `extra`.
fn plus(args: &[String], extra: &[&str]) -> Vec<String> {
    args.iter()
        .cloned()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

/// `args --resume`, which must succeed.
fn resume_to_end(args: &[String]) {
    stdout_text(&strata(&plus(args, &["--resume"])));
}

#[test]
fn sigterm_stops_after_the_step_with_a_checkpoint_and_the_run_resumes_exactly() {
    let dir = scratch("faults-sigterm");
    let (_, data, model) = prepared(&dir);
    let out = dir.join("run");
    let args = train_args(&model, &data, &out, "40", &[]);
    let mut child = spawn(&args);
    wait_for_steps(&mut child, &out, 3);
    signal(&child, libc::SIGTERM);
    let status = wait(&mut child, Duration::from_secs(60));
    let err = std::fs::read_to_string(out.with_extension("log")).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(
        err.contains("continue with: strata train --resume"),
        "{err}"
    );
    let stopped_at = logged_steps(&out).last().unwrap().0;
    assert!(stopped_at < 40, "stopped early");
    assert_eq!(
        kept_checkpoints(&out).last().unwrap(),
        &format!("step-{stopped_at:09}"),
        "a checkpoint of the last step"
    );
    resume_to_end(&args);
    let straight = dir.join("straight");
    let want = uninterrupted(&train_args(&model, &data, &straight, "40", &[]), &straight);
    assert_eq!(logged_steps(&out), want);
}

#[test]
fn a_second_signal_exits_at_once_and_the_checkpoints_stay_loadable() {
    let dir = scratch("faults-sigint");
    let (_, data, model) = prepared(&dir);
    let out = dir.join("run");
    let args = train_args(&model, &data, &out, "400", &[]);
    let mut child = spawn(&args);
    wait_for_steps(&mut child, &out, 5);
    signal(&child, libc::SIGINT);
    // Two SIGINTs pending at once are delivered as one: send the second once the first is in.
    wait_delivered(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let status = wait(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{status:?}");
    // Every checkpoint left loads, and the run resumes.
    for name in kept_checkpoints(&out) {
        if name.starts_with("step-") {
            let ckpt = out.join("checkpoints").join(&name);
            let eval = strata(&[
                "eval",
                "--checkpoint",
                &ckpt.to_string_lossy(),
                "--data",
                &data,
                "--max-batches",
                "1",
            ]);
            stdout_text(&eval);
        }
    }
    let resume = plus(&args, &["--resume", "--stop-at", "8"]);
    assert!(wait(&mut spawn(&resume), Duration::from_secs(120)).success());
    assert!(kept_checkpoints(&out).contains(&"step-000000008".to_string()));
}

/// Runs `args` with a file-size limit of `bytes` (writes past it fail with EFBIG, as on a full
/// disk, instead of killing the process).
fn with_file_limit(args: &[String], bytes: u64) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().unwrap()
}

/// The size of a checkpoint's weights file.
fn weights_size(out: &Path, step: u64) -> u64 {
    std::fs::metadata(
        out.join("checkpoints")
            .join(format!("step-{step:09}"))
            .join("model.safetensors"),
    )
    .unwrap()
    .len()
}

#[test]
fn a_write_that_fails_ends_the_run_with_one_line_and_keeps_the_last_checkpoint() {
    let dir = scratch("faults-disk");
    let (_, data, model) = prepared(&dir);
    let straight = dir.join("straight");
    let want = uninterrupted(&train_args(&model, &data, &straight, "6", &[]), &straight);

    // A file-size limit below the weights file: the checkpoint of step 4 cannot be written.
    let out = dir.join("run");
    let args = train_args(&model, &data, &out, "6", &[]);
    stdout_text(&strata(&plus(&args, &["--stop-at", "2"])));
    let failed = with_file_limit(&plus(&args, &["--resume"]), weights_size(&out, 2) / 2);
    ends_with_error(&failed, "model.safetensors");
    assert_eq!(
        kept_checkpoints(&out),
        ["step-000000002"],
        "nothing partial"
    );
    // Space again: the run resumes from step 2 and logs what an uninterrupted run logs.
    resume_to_end(&args);
    assert_eq!(logged_steps(&out), want);

    // A real full disk where this test may mount a small tmpfs (root, e.g. in CI).
    let mount = dir.join("disk");
    std::fs::create_dir_all(&mount).unwrap();
    let tmpfs = |opts: &str| {
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&mount)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !tmpfs("size=64m") {
        eprintln!("skipped the tmpfs part: cannot mount a tmpfs here");
        return;
    }
    let out = mount.join("run");
    let args = train_args(&model, &data, &out, "6", &[]);
    stdout_text(&strata(&plus(&args, &["--stop-at", "2"])));
    // Room for what is there and half a checkpoint more.
    let used: u64 = walk_size(&out);
    let room = used + weights_size(&out, 2) / 2;
    let remount = |size: u64| {
        Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&mount)
            .status()
            .unwrap()
            .success()
    };
    assert!(remount(room.div_ceil(4096) * 4096 + 4096));
    let full = strata(&plus(&args, &["--resume"]));
    let err = String::from_utf8_lossy(&full.stderr).into_owned();
    let unmount = || {
        let _ = Command::new("umount").arg(&mount).status();
    };
    if full.status.success() || !err.contains("No space left") {
        unmount();
        panic!("expected ENOSPC: {err}");
    }
    ends_with_error(&full, "step-000000004");
    assert_eq!(kept_checkpoints(&out), ["step-000000002"]);
    assert!(remount(64 << 20));
    resume_to_end(&args);
    let got = logged_steps(&out);
    unmount();
    assert_eq!(got, want);
}

/// A non-zero exit whose standard error (progress lines first) ends with one `error:` line
/// containing `needle`.
fn ends_with_error(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "{err}"
    );
}

/// Bytes of every file under `dir`.
fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[test]
fn skip_nonfinite_takes_a_count() {
    let dir = scratch("faults-flags");
    let (_, data, model) = prepared(&dir);
    let out = dir.join("run");
    let args = train_args(&model, &data, &out, "2", &[]);
    fails_with(
        strata(&plus(&args, &["--skip-nonfinite", "-1"])),
        "--skip-nonfinite",
    );
    stdout_text(&strata(&plus(&args, &["--skip-nonfinite", "3"])));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["skip_nonfinite"], 3);
}

#[test]
fn a_run_that_cannot_fit_in_memory_is_refused_with_the_estimate() {
    let dir = scratch("faults-memory");
    let (_, data, model) = prepared(&dir);
    // The small model with a context of a million tokens: the attention scores alone of one
    // batch need terabytes.
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    config["max_seq_len"] = 1_000_000.into();
    let huge = dir.join("huge.json");
    std::fs::write(&huge, config.to_string()).unwrap();
    let out = dir.join("run");
    let args = train_args(
        &huge.to_string_lossy(),
        &data,
        &out,
        "1",
        &["--seq-len", "1000000"],
    );
    let start = Instant::now();
    fails_with(strata(&args), "needs about");
    assert!(start.elapsed() < Duration::from_secs(30), "refused at once");
    assert!(!out.exists(), "nothing written");
}
