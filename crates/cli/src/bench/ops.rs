//! `strata bench ops`: the FFN benchmark's building blocks at its d = 1024, 2048-token shapes
//! (one matmul of fc1, GELU in both forms, a bias add and a product on the hidden activations),
//! to see where a CPU backend spends the time. One JSON line per backend and op, median of 5.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::tensor::activation::{gelu, gelu_approximate};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use clap::Args;
use serde_json::json;

use super::{median, round4};
use crate::backend::{dispatch, BackendKind, Job};

#[derive(Args, Debug, Clone)]
pub struct OpsArgs {
    /// CPU backends to time, side by side.
    #[arg(long, num_args = 1.., value_enum, default_values = ["cpu", "ndarray"])]
    backend: Vec<BackendKind>,
}

pub fn run(args: OpsArgs) -> Result<()> {
    for &backend in &args.backend {
        if !matches!(backend, BackendKind::Cpu | BackendKind::Ndarray) {
            bail!(
                "`bench ops` times the CPU backends (cpu, ndarray), not `{}`",
                backend.name()
            );
        }
        dispatch(backend, Ops { backend })?;
    }
    Ok(())
}

struct Ops {
    backend: BackendKind,
}

impl Job for Ops {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let (t, d, h): (usize, usize, usize) = (2048, 1024, 4096);
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<B, 2>::random([t, d], normal, &device);
        let w = Tensor::<B, 2>::random([d, h], normal, &device);
        let hid = Tensor::<B, 2>::random([t, h], normal, &device);
        let bias = Tensor::<B, 1>::random([h], normal, &device);
        type Op<'a, B> = Box<dyn Fn() -> Tensor<B, 2> + 'a>;
        let cases: Vec<(&str, f64, Op<B>)> = vec![
            (
                "matmul [2048,1024]x[1024,4096]",
                2.0 * (t * d * h) as f64,
                Box::new(|| x.clone().matmul(w.clone())),
            ),
            ("gelu erf [2048,4096]", 0.0, Box::new(|| gelu(hid.clone()))),
            (
                "gelu tanh (burn gelu_approximate) [2048,4096]",
                0.0,
                Box::new(|| gelu_approximate(hid.clone())),
            ),
            (
                "bias add [2048,4096] + [4096]",
                0.0,
                Box::new(|| hid.clone() + bias.clone().unsqueeze::<2>()),
            ),
            (
                "mul [2048,4096] * [2048,4096]",
                0.0,
                Box::new(|| hid.clone() * hid.clone()),
            ),
        ];
        for (name, flops, f) in cases {
            let run = || -> Result<()> {
                let y = f();
                B::sync(&device)?;
                drop(y);
                Ok(())
            };
            run()?;
            let mut samples = Vec::new();
            for _ in 0..5 {
                let t0 = Instant::now();
                run()?;
                samples.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            let ms = median(samples);
            let mut line = json!({
                "bench": "ops",
                "backend": self.backend.name(),
                "op": name,
                "ms": round4(ms),
            });
            if flops > 0.0 {
                line["gflops"] = json!(round4(flops / ms / 1e6));
            }
            println!("{line}");
        }
        Ok(())
    }
}
