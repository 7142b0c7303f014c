//! `strata`: the command line over strata's libraries. It parses arguments, calls the library
//! and reports; bad input ends with a one-line `error: ...` and a non-zero exit code.

mod backend;
mod bench;
mod data;
mod flags;
mod infer;
mod interop;
mod memory;
mod nodes;
mod progress;
mod report;
mod signals;
mod train;
mod watchdog;
mod zoo;

use clap::{Parser, Subcommand};

/// Train and run transformer language models with structured linear layers.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The model zoo: list the models, or show one with its parameter and FLOP counts.
    Zoo {
        #[command(subcommand)]
        command: zoo::ZooCommand,
    },
    /// Data: tokenize text into shards, or import raw uint16 tokens.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Train a model (or resume a run).
    Train(Box<train::TrainArgs>),
    /// Validation loss and perplexity of a checkpoint.
    Eval(infer::EvalArgs),
    /// Continue a prompt with a checkpoint.
    Generate(infer::GenerateArgs),
    /// Import a pretrained model.
    Import {
        #[command(subcommand)]
        command: interop::ImportCommand,
    },
    /// Convert a checkpoint's matrices into structured ones (SVD projections), optionally
    /// keeping the originals as self-guided-training guides.
    Convert(interop::ConvertArgs),
    /// Export a checkpoint for other tools.
    Export {
        #[command(subcommand)]
        command: interop::ExportCommand,
    },
    /// Serve the coordinator of multi-node training runs (`strata train --nodes N
    /// --coordinator HOST:PORT --external-coordinator`).
    Coordinator(nodes::CoordinatorArgs),
    /// Several runs on one chart: validation loss against training FLOPs by default.
    Plot(report::PlotArgs),
    /// Scaling laws: L(C) = E + A * C^-alpha fitted to each family of runs, with bootstrap
    /// intervals and residuals.
    Fit(report::FitArgs),
    /// One self-contained HTML page comparing runs: a table, the charts, the fits, the
    /// settings that differ, a sample from each.
    Report(report::ReportArgs),
    /// Benchmarks, printed as JSON lines.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() {
    keep_freed_memory();
    quiet_transport();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's message up to its first blank line (e.g. the missing arguments' names), on
            // one line, without its own "error: " prefix.
            let text = e.to_string();
            let head: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            let line = head.join(" ");
            eprintln!("error: {}", line.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Zoo { command } => zoo::run(command),
        Command::Data { command } => data::run(command),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => infer::eval(args),
        Command::Generate(args) => infer::generate_text(args),
        Command::Import { command } => interop::import(command),
        Command::Convert(args) => interop::convert(args),
        Command::Export { command } => interop::export(command),
        Command::Coordinator(args) => nodes::coordinator(args),
        Command::Plot(args) => report::plot(args),
        Command::Fit(args) => report::fit(args),
        Command::Report(args) => report::report(args),
        Command::Bench { command } => bench::run(command),
    };
    if let Err(e) = result {
        eprintln!("error: {}", flags::name_flags(&one_line(&format!("{e:#}"))));
        std::process::exit(1);
    }
}

/// Tensors are allocated and freed by the thousand per training step, many of them megabytes
/// large. glibc serves those with fresh `mmap`s and returns them at `free`, so every step
/// touches new pages (page faults were ~9% of a CPU training step). Serving them from the
/// heap, and keeping freed heap memory, lets later steps reuse warm pages. One arena: a
/// thread's own arena grows in heaps of at most 64 MiB that glibc unmaps as soon as one is
/// wholly free, whatever the trim threshold, and CPU training steps run on a rayon worker;
/// with per-thread arenas a tiny model's step took ~18,000 page faults.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// burn's multi-node transport (burn-communication's WebSocket server) installs a global
/// `tracing` subscriber printing INFO events to stdout, which would mix its messages into
/// strata's output (`--json` included). A subscriber set first makes its attempt fail. And its
/// tasks panic when a peer's connection drops: that failure reaches the training loop as an
/// all-reduce error or a watchdog timeout, so those threads' panic messages are not printed.
fn quiet_transport() {
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // tokio names its threads "tokio-runtime-worker" or "tokio-rt-worker" by version.
        let transport = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("tokio-"));
        if !transport {
            default(info);
        }
    }));
}

/// Joins a multi-line message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
