//! `strata bench allreduce`: the multi-node gradient all-reduce alone, between nodes started
//! like `strata train --nodes N` (same node flags): each node all-reduces a buffer the size of
//! a model's gradients and prints one JSON line with the median time and the bandwidths.

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;
use transformer::accounting;
use transformer::zoo::{resolve_model, Zoo};

use super::{median, round3, round4};
use crate::backend::{dispatch, BackendKind, Job};
use crate::nodes::{cluster, NodeArgs};

#[derive(Args, Debug, Clone)]
pub struct AllReduceArgs {
    /// Zoo name or config file of the model whose gradients are reduced (its parameter count).
    #[arg(long, default_value = "tiny-dense", conflicts_with = "floats")]
    model: String,
    /// The buffer's size in f32 values, instead of a model's.
    #[arg(long)]
    floats: Option<usize>,
    /// Timed all-reduces (after one untimed).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    #[command(flatten)]
    nodes: NodeArgs,
}

struct Bench {
    cluster: trainer::cluster::Cluster,
    floats: usize,
    repeats: usize,
}

impl Job for Bench {
    type Output = (Vec<f64>, f64);
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output> {
        Ok(trainer::cluster_bench::time_all_reduce::<B>(
            &self.cluster,
            &device,
            self.floats,
            self.repeats,
        )?)
    }
}

pub fn run(args: AllReduceArgs) -> Result<()> {
    let cluster = cluster(&args.nodes)?;
    let floats = match args.floats {
        Some(n) => n,
        None => {
            accounting::params(&resolve_model(&Zoo::builtin()?, &args.model)?.config).total as usize
        }
    };
    let (nodes, rank) = (cluster.nodes, cluster.rank);
    let (seconds, check) = dispatch(
        args.backend,
        Bench {
            cluster,
            floats,
            repeats: args.repeats,
        },
    )?;
    // The buffers hold rank + 1: their mean is (nodes + 1) / 2.
    let want = (nodes + 1) as f64 / 2.0;
    if (check - want).abs() > 1e-5 * want {
        bail!("the all-reduce returned {check}, not the mean {want}");
    }
    let bytes = 4.0 * floats as f64;
    let t = median(seconds.clone());
    let ring = 2.0 * (nodes - 1) as f64 / nodes as f64;
    println!(
        "{}",
        json!({
            "bench": "allreduce",
            "backend": args.backend.name(),
            "node": rank,
            "nodes": nodes,
            "floats": floats,
            "bytes": bytes,
            "median_s": round4(t),
            "min_s": round4(seconds.iter().copied().fold(f64::INFINITY, f64::min)),
            "algbw_gb_s": round3(bytes / t / 1e9),
            "busbw_gb_s": round3(ring * bytes / t / 1e9),
        })
    );
    Ok(())
}
