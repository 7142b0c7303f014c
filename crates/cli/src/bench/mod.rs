//! `strata bench`: benchmarks, printed as JSON lines, one file per benchmark: `decode`
//! (structured vs pre-merged decoding), `train` (training tokens/s and MFU of zoo models), `ffn`
//! (structured FFN blocks against dense, side by side), `ops` (the FFN's building blocks) and
//! `allreduce` (the multi-node gradient all-reduce alone).
//! Timings are medians of samples taken round-robin where several variants are compared, so
//! that drifting load on a shared machine affects each alike.

mod allreduce;
mod decode;
mod driver;
mod ffn;
mod ops;
mod train;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Decoding tokens/s for structured, merged and dispatching models over batch sizes.
    Decode(decode::DecodeArgs),
    /// Training tokens/s and MFU of a zoo model (forward, backward, clipping, AdamW).
    Train(train::TrainBenchArgs),
    /// Structured FFN blocks against dense at the papers' parameter ratios, forward and
    /// forward+backward.
    Ffn(ffn::FfnArgs),
    /// The FFN benchmark's building blocks (a matmul, GELU, bias add, product) on CPU backends.
    Ops(ops::OpsArgs),
    /// The multi-node gradient all-reduce alone: run on every node with the node flags of
    /// `strata train`.
    Allreduce(allreduce::AllReduceArgs),
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Decode(args) => decode::run(args),
        BenchCommand::Train(args) => train::run(args),
        BenchCommand::Ffn(args) => ffn::run(args),
        BenchCommand::Ops(args) => ops::run(args),
        BenchCommand::Allreduce(args) => allreduce::run(args),
    }
}

/// The median of samples (the mean of the middle two for an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}
