//! `strata bench ops`: the FFN benchmark's building blocks at its d = 1024, 2048-token shapes
//! (one matmul of fc1, GELU in both forms, the tanh form as burn and as strata write it, a bias
//! add and a product on the hidden activations), and every matrix product of fc1's forward and
//! backward passes for dense, LowRank (rank 256) and BlockShuffle (4 blocks), the 32% settings,
//! in the layouts autodiff hands them over (transposed operands are views), with BlockShuffle's
//! shuffle copy, and the three products of the s models' output head in the fused loss (the
//! tied embedding, 256 tokens): to see where a CPU backend spends the time and how fast each
//! product shape runs against the dense one. One JSON line per backend and op, median of 5.

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
                "gelu tanh (strata gelu_tanh) [2048,4096]",
                0.0,
                Box::new(|| transformer::gelu_tanh(hid.clone())),
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
        let mut products = products::<B>(&device);
        products.extend(head_products::<B>(&device));
        let cases = cases
            .into_iter()
            .chain(products.iter().map(|(name, flops, f)| {
                let op: Op<B> = Box::new(f);
                (name.as_str(), *flops, op)
            }));
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

/// A timed case: its label, FLOPs (0 for a copy) and the work, which returns its output.
type Case<'a, B> = (String, f64, Box<dyn Fn() -> Tensor<B, 2> + 'a>);

/// One product `[batch, m, k] x [batch, k, n]` of fc1's passes, timed as its label and FLOPs;
/// `lhs_t` / `rhs_t` give an operand as the transposed view of a contiguous tensor, as
/// autodiff's backward pass does.
fn product<B: Backend>(
    pass: &str,
    [batch, m, k, n]: [usize; 4],
    (lhs_t, rhs_t): (bool, bool),
    device: &B::Device,
) -> Case<'static, B> {
    let normal = Distribution::Normal(0.0, 1.0);
    let operand = |rows: usize, cols: usize, t: bool| {
        if t {
            Tensor::<B, 3>::random([batch, cols, rows], normal, device).swap_dims(1, 2)
        } else {
            Tensor::<B, 3>::random([batch, rows, cols], normal, device)
        }
    };
    let side = |t: bool| if t { "^T" } else { "" };
    let label = format!(
        "{pass} [{batch}x{m},{k}]{}x[{k},{n}]{}",
        side(lhs_t),
        side(rhs_t)
    );
    let (lhs, rhs) = (operand(m, k, lhs_t), operand(k, n, rhs_t));
    let run = move || lhs.clone().matmul(rhs.clone()).reshape([batch * m, n]);
    (label, 2.0 * (batch * m * k * n) as f64, Box::new(run))
}

/// fc1's products (t = 2048, d = 1024, h = 4096) for dense, LowRank r = 256 and BlockShuffle
/// with 4 blocks (each block `[256, 256]` then `[256, 1024]`), forward and backward, and the
/// shuffle between BlockShuffle's factors (the layer's own function); each returns its output.
fn products<B: Backend>(device: &B::Device) -> Vec<Case<'static, B>> {
    let (t, d, h, r, b) = (2048, 1024, 4096, 256, 4);
    let (q, s) = (d / b, h / b);
    let plain = (false, false);
    let mut cases = vec![
        product::<B>("dense fwd", [1, t, d, h], plain, device),
        product("dense bwd dx", [1, t, h, d], (false, true), device),
        product("dense bwd dW", [1, d, t, h], (true, false), device),
        product("lowrank fwd xV", [1, t, d, r], plain, device),
        product("lowrank fwd aU", [1, t, r, h], plain, device),
        product("lowrank bwd da", [1, t, h, r], (false, true), device),
        product("lowrank bwd dU", [1, r, t, h], (true, false), device),
        product("lowrank bwd dx", [1, t, r, d], (false, true), device),
        product("lowrank bwd dV", [1, d, t, r], (true, false), device),
        product("blockshuffle fwd B1", [b, t, q, q], plain, device),
        product("blockshuffle fwd B2", [b, t, q, s], plain, device),
        product("blockshuffle bwd dz", [b, t, s, q], (false, true), device),
        product("blockshuffle bwd dB2", [b, q, t, s], (true, false), device),
    ];
    let y1 = Tensor::<B, 3>::random([b, t, q], Distribution::Normal(0.0, 1.0), device);
    cases.push((
        format!("blockshuffle shuffle copy [{b},{t},{q}]"),
        0.0,
        Box::new(move || structured_linear::shuffle(y1.clone()).reshape([b * t, q])),
    ));
    cases
}

/// The output head's products in the fused loss (`trainer::step::loss`) of a zoo s model
/// (256 tokens, d 768, vocab 32000, the embedding `e` tied as the head): the logits `h e^T`,
/// `d_hidden = g e` and `d_e = g^T h`, as 2-D products like the loss's own, with `e^T` and
/// `g^T` transposed views. They are the same in every s model (31% of s-lowrank-r192's step
/// FLOPs at 256 tokens).
fn head_products<B: Backend>(device: &B::Device) -> Vec<Case<'static, B>> {
    let (t, d, v): (usize, usize, usize) = (256, 768, 32000);
    let normal = Distribution::Normal(0.0, 1.0);
    let h = Tensor::<B, 2>::random([t, d], normal, device);
    let e = Tensor::<B, 2>::random([v, d], normal, device);
    let g = Tensor::<B, 2>::random([t, v], normal, device);
    let flops = 2.0 * (t * d * v) as f64;
    let (h2, e2, g2) = (h.clone(), e.clone(), g.clone());
    vec![
        (
            format!("head logits [{t},{d}]x[{d},{v}]^T"),
            flops,
            Box::new(move || h.clone().matmul(e.clone().transpose())),
        ),
        (
            format!("head d_hidden [{t},{v}]x[{v},{d}]"),
            flops,
            Box::new(move || g.clone().matmul(e2.clone())),
        ),
        (
            format!("head d_e [{v},{t}]^Tx[{t},{d}]"),
            flops,
            Box::new(move || g2.clone().transpose().matmul(h2.clone())),
        ),
    ]
}
