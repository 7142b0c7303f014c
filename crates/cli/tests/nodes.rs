//! Multi-node training through the binary, on one machine: node processes on localhost
//! (loopback addresses, ports found free at run time below the ephemeral range, every wait
//! bounded) against one process
//! with the combined batch, across a stop and a resume; and a node killed mid-run.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// A port nothing listens on now, released before the nodes bind it. Not one the OS hands out:
/// those come from the ephemeral range (32768-60999 on Linux), where the nodes' own outgoing
/// connections could take it in between (a data port taken so made a peer's first download
/// fail under load). Below it, 40 ports per test process (by its pid), each handed out once.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 250) as u16 * 40;
    for _ in 0..40 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 40;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {base}..{}", base + 40)
}

/// Three distinct free ports: the coordinator's and two data ports.
fn ports() -> [u16; 3] {
    loop {
        let p = [free_port(), free_port(), free_port()];
        if p[0] != p[1] && p[1] != p[2] && p[0] != p[2] {
            return p;
        }
    }
}

/// `strata train` as node `rank` of 2, started in the background.
fn node(rank: usize, ports: [u16; 3], args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("train")
        .args(args)
        .args([
            "--nodes",
            "2",
            "--node-rank",
            &rank.to_string(),
            "--coordinator",
            &format!("127.0.0.1:{}", ports[0]),
            "--node-host",
            "127.0.0.1",
            "--node-port",
            &ports[1 + rank].to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the strata binary runs")
}

/// Waits for `child` at most `limit`; a child still running then is killed and the test fails.
fn wait_at_most(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Runs both nodes to the end; their outputs.
fn both(ports: [u16; 3], args: &[&str]) -> (Output, Output) {
    let (a, b) = (node(0, ports, args), node(1, ports, args));
    let limit = Duration::from_secs(240);
    (
        wait_at_most(a, limit, "node 0"),
        wait_at_most(b, limit, "node 1"),
    )
}

/// (step, loss, val_loss) of a run's metrics.
fn losses(run: &Path) -> Vec<(u64, f64, Option<f64>)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                r["step"].as_u64().unwrap(),
                r["loss"].as_f64().unwrap(),
                r["val_loss"].as_f64(),
            )
        })
        .collect()
}

#[test]
// Long on purpose: one end-to-end scenario over node processes: train, stop, resume, compare.
fn two_nodes_of_two_replicas_log_the_losses_of_one_process_with_their_batch_across_a_resume() {
    let dir = scratch("nodes");
    let (_, data, model) = prepared(&dir);
    let recipe = [
        "--model",
        &model,
        "--data",
        &data,
        "--steps",
        "6",
        "--lr",
        "3e-3",
        "--eval-every",
        "3",
        "--eval-batches",
        "1",
        "--json",
    ];
    // One process: 8 sequences per step.
    let one = dir.join("one");
    let out = strata(
        &[
            &["train", "--out", one.to_str().unwrap(), "--batch-size", "8"][..],
            &recipe[..],
        ]
        .concat(),
    );
    stdout_text(&out);

    // Two nodes x two replicas x two sequences: the same 8 sequences, split by (node, device).
    let two = dir.join("two");
    let two_s = two.to_str().unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        [
            &["--out", two_s, "--batch-size", "2", "--devices", "2"][..],
            &recipe[..],
            extra,
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let first = args(&["--stop-at", "3", "--node-timeout", "60"]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let (a, b) = both(ports(), &first);
    let (sa, sb) = (stdout_json(&a), stdout_json(&b));
    assert_eq!(
        (sa["steps"].clone(), sb["steps"].clone()),
        (3.into(), 3.into())
    );
    assert!(sa["stopped_early"].as_bool().unwrap() && sb["stopped_early"].as_bool().unwrap());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["nodes"].clone(), config["devices"].clone()),
        (2.into(), 2.into())
    );

    // A resume on one node alone, or with another node count, is refused before it starts.
    let alone = strata(
        &[&[
            "train",
            "--resume",
            "--out",
            two_s,
            "--data",
            &data,
            "--devices",
            "2",
        ][..]]
        .concat(),
    );
    fails_with(alone, "set for 2 node(s) but 1");

    let again = args(&["--resume", "--node-timeout", "60"]);
    let again: Vec<&str> = again
        .iter()
        .map(String::as_str)
        .filter(|a| !["--model", &model].contains(a))
        .collect();
    let (a, b) = both(ports(), &again);
    let (sa, sb) = (stdout_json(&a), stdout_json(&b));
    assert_eq!(
        (sa["steps"].clone(), sb["steps"].clone()),
        (6.into(), 6.into())
    );
    assert_eq!(sa["tokens"], 6 * 8 * 32);
    // Node 0 alone writes the run: one line per step, each once.
    let (want, got) = (losses(&one), losses(&two));
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g.1 - w.1).abs() < 1e-4 * w.1,
            "step {}: loss {} vs {}",
            g.0,
            g.1,
            w.1
        );
        match (g.2, w.2) {
            (Some(gv), Some(wv)) => assert!((gv - wv).abs() < 1e-4 * wv, "step {}", g.0),
            (None, None) => {}
            other => panic!("step {}: validation {other:?}", g.0),
        }
    }
}

#[test]
fn a_killed_node_ends_the_other_with_an_error_within_the_timeout_and_the_checkpoint_stays() {
    let dir = scratch("nodes-kill");
    let (_, data, model) = prepared(&dir);
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let timeout = 10.0;
    let t = timeout.to_string();
    let args = [
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        run_s,
        "--steps",
        "100000",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "2",
        "--node-timeout",
        &t,
    ];
    for victim in [1, 0] {
        let p = ports();
        let mut nodes = [Some(node(0, p, &args)), Some(node(1, p, &args))];
        // Wait for a checkpoint (bounded), then kill the victim.
        let start = Instant::now();
        while !run
            .join("checkpoints")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
        {
            assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut killed = nodes[victim].take().unwrap();
        killed.kill().unwrap();
        killed.wait().unwrap();
        let killed_at = Instant::now();
        let other = nodes[1 - victim].take().unwrap();
        let out = wait_at_most(
            other,
            Duration::from_secs_f64(timeout + 20.0),
            "the other node",
        );
        let waited = killed_at.elapsed().as_secs_f64();
        assert!(
            waited < timeout + 10.0,
            "ended {waited:.1} s after the kill"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "victim {victim}: {err}");
        let last = err.trim_end().lines().last().unwrap_or("");
        assert!(last.starts_with("error: "), "victim {victim}: {err}");
        // The last checkpoint is whole: it evaluates.
        let eval = strata(&["eval", "--checkpoint", run_s, "--data", &data, "--json"]);
        assert!(stdout_json(&eval)["val_loss"].as_f64().unwrap().is_finite());
        std::fs::remove_dir_all(&run).unwrap();
    }
}

#[test]
fn a_hung_node_or_a_missing_coordinator_ends_the_wait_within_the_timeout() {
    let dir = scratch("nodes-hang");
    let (_, data, model) = prepared(&dir);
    let run = dir.join("run");
    let base = [
        "--model",
        &model,
        "--data",
        &data,
        "--steps",
        "100000",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "2",
        "--node-timeout",
        "4",
    ];
    let args = [&base[..], &["--out", run.to_str().unwrap()]].concat();
    // Node 1 stops answering (SIGSTOP) once the run is under way: node 0's watchdog ends it.
    let p = ports();
    let (a, mut b) = (node(0, p, &args), node(1, p, &args));
    let start = Instant::now();
    while !run
        .join("checkpoints")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())
    {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signals a child process of this test by its pid.
    unsafe { libc::kill(b.id() as i32, libc::SIGSTOP) };
    let stopped = Instant::now();
    let out = wait_at_most(a, Duration::from_secs(30), "node 0");
    let waited = stopped.elapsed().as_secs_f64();
    b.kill().unwrap();
    b.wait().unwrap();
    assert!(
        (3.5..15.0).contains(&waited),
        "ended {waited:.1} s after the stop"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: node 0: no answer from the other nodes within 4 s"),
        "{err}"
    );

    // A node whose coordinator never comes up gives up after the timeout, writing nothing.
    let lonely_run = dir.join("lonely");
    let lonely_args = [&base[..], &["--out", lonely_run.to_str().unwrap()]].concat();
    let lonely = node(1, ports(), &lonely_args);
    let start = Instant::now();
    let out = wait_at_most(lonely, Duration::from_secs(30), "the lonely node");
    assert!(start.elapsed() < Duration::from_secs(15));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .contains("registering with the coordinator"),
        "{err}"
    );
    assert!(!lonely_run.exists(), "node 1 writes nothing");
}

#[test]
fn nodes_train_through_a_standalone_coordinator_which_serves_one_run_with_once() {
    let dir = scratch("nodes-coordinator");
    let (_, data, model) = prepared(&dir);
    let p = ports();
    let coordinator = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["coordinator", "--port", &p[0].to_string(), "--once"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = dir.join("run");
    let args = [
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--eval-batches",
        "1",
        "--external-coordinator",
        "--node-timeout",
        "60",
        "--json",
    ];
    let (a, b) = both(p, &args);
    assert_eq!(stdout_json(&a)["steps"], 3);
    assert_eq!(stdout_json(&b)["steps"], 3);
    let out = wait_at_most(coordinator, Duration::from_secs(30), "the coordinator");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodes have left"));
    // A busy port is refused in one line.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = listener.local_addr().unwrap().port().to_string();
    fails_with(
        strata(&["coordinator", "--port", &busy]),
        "cannot listen on port",
    );
}
