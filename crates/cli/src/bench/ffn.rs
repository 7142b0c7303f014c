//! `strata bench ffn`: times an FFN block (fc1: d -> 4d, GELU, fc2: 4d -> d; biases, input
//! requiring grad) forward and forward+backward for dense and each structure at the papers'
//! parameter ratios (default 63% and 32%), side by side in one run, one JSON line per
//! configuration with its speedup over dense.
//!
//! The structures follow the PyTorch peer benchmark of docs/benchmarks.md exactly (ranks rounded
//! to multiples of 32, BlockDense with 4 blocks, the BlockShuffle block count nearest the ratio).
//! `--backend NAME[-PRECISION]` runs the whole block in that type: `cuda-bf16` casts the
//! weights and the input to bf16 (the `cuda`, `wgpu` and `cpu` backends; ndarray has f32 only).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::activation::gelu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use clap::{Args, ValueEnum};
use serde_json::json;
use structured_linear::{Init, Structure, StructuredLinear, StructuredLinearConfig};
use transformer::Precision;

use super::{median, round4};
use crate::backend::{dispatch, BackendKind, Job};

/// Hidden width over model width.
const EXPANSION: usize = 4;

#[derive(Args, Debug, Clone)]
pub struct FfnArgs {
    /// Model widths d (the hidden width is 4d).
    #[arg(long, num_args = 1.., value_parser = positive, default_values_t = [512, 1024, 1536, 2048])]
    width: Vec<usize>,
    /// Tokens per batch (rows of the input).
    #[arg(long, num_args = 1.., value_parser = positive, default_values_t = [2048])]
    tokens: Vec<usize>,
    /// Backends, each optionally with the block's precision: cpu (= flex), ndarray, wgpu, cuda,
    /// and e.g. cuda-bf16, cuda-f16, wgpu-f16, cpu-bf16.
    #[arg(long, num_args = 1.., value_parser = parse_backend, default_values = ["cpu"])]
    backend: Vec<FfnBackend>,
    /// Layer kinds; each structured kind runs at every `--ratio`.
    #[arg(long, num_args = 1.., value_enum, default_values = ["dense", "lowrank", "blockdense", "blockshuffle"])]
    layers: Vec<Layer>,
    /// Weight-parameter ratios of the structured blocks to dense, in (0, 1].
    #[arg(long, num_args = 1.., value_parser = ratio, default_values_t = [0.63, 0.32])]
    ratio: Vec<f64>,
    /// Timed samples per configuration (median reported).
    #[arg(long, value_parser = positive, default_value_t = 7)]
    repeats: usize,
    /// Untimed passes per configuration first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Each sample repeats the pass until it lasts at least this long.
    #[arg(long, default_value_t = 25.0)]
    min_sample_ms: f64,
    /// GELU form: erf (burn's native GELU) or tanh (the s models' form, strata's `gelu_tanh`);
    /// compare with the PyTorch peer's `--gelu`.
    #[arg(long, value_enum, default_value = "erf")]
    gelu: Gelu,
    /// Also append the JSON lines to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The kind of both FFN layers.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Dense,
    Lowrank,
    Blockdense,
    Blockshuffle,
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::Dense => "dense",
            Layer::Lowrank => "lowrank",
            Layer::Blockdense => "blockdense",
            Layer::Blockshuffle => "blockshuffle",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Gelu {
    Erf,
    Tanh,
}

/// `--backend NAME[-PRECISION]`.
#[derive(Clone, Debug)]
struct FfnBackend {
    label: String,
    kind: BackendKind,
    precision: Precision,
}

fn parse_backend(text: &str) -> Result<FfnBackend, String> {
    let (name, precision) = text.split_once('-').unwrap_or((text, "f32"));
    // `flex` is what `cpu` means; the other names are `--backend`'s everywhere.
    let kind = match name {
        "flex" => BackendKind::Cpu,
        _ => BackendKind::from_str(name, false)
            .map_err(|_| format!("unknown backend `{name}` (cpu, flex, ndarray, wgpu, cuda)"))?,
    };
    let precision: Precision = Precision::from_str(precision, false)
        .map_err(|_| format!("unknown precision `{precision}` (f32, bf16, f16)"))?;
    Ok(FfnBackend {
        label: text.to_string(),
        kind,
        precision,
    })
}

fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a positive integer")),
    }
}

fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(format!("`{text}` is not in (0, 1]")),
    }
}

pub fn run(args: FfnArgs) -> Result<()> {
    if !(args.min_sample_ms.is_finite() && args.min_sample_ms >= 0.0) {
        bail!("`--min-sample-ms` must be a non-negative number");
    }
    let mut out = match &args.out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => None,
    };
    for backend in &args.backend {
        for &width in &args.width {
            for &tokens in &args.tokens {
                let group = Group {
                    args: &args,
                    backend,
                    width,
                    tokens,
                };
                for line in dispatch(backend.kind, group)? {
                    println!("{line}");
                    if let Some(f) = out.as_mut() {
                        writeln!(f, "{line}").context("cannot append to --out")?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn round_to(x: f64, m: usize) -> usize {
    (((x / m as f64).round() as usize) * m).max(m)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The structure of both FFN layers for a layer kind and a target parameter ratio, chosen as the
/// PyTorch peer does (ranks rounded to multiples of 32, BlockDense with 4 blocks).
fn structure(layer: Layer, width: usize, ratio: f64) -> Structure {
    let (d, e, align) = (width as f64, EXPANSION as f64, 32);
    match layer {
        Layer::Lowrank => Structure::LowRank {
            rank: round_to(ratio * 2.0 * e * d * d / (2.0 * (1.0 + e) * d), align),
        },
        Layer::Blockdense => {
            let k = 4;
            let m = align / gcd(align, k) * k;
            let per_r = (1.0 + e) * d * (1.0 + 1.0 / k as f64);
            Structure::BlockDense {
                n_blocks: k,
                rank: round_to(ratio * 2.0 * e * d * d / per_r, m),
            }
        }
        Layer::Blockshuffle => {
            let ideal = (1.0 + e) / e / ratio;
            let n_blocks = (1..=width)
                .filter(|b| width.is_multiple_of(*b))
                .min_by(|a, b| {
                    let da = (*a as f64 - ideal).abs();
                    let db = (*b as f64 - ideal).abs();
                    da.total_cmp(&db).then(a.cmp(b))
                })
                .unwrap_or(1);
            Structure::BlockShuffle { n_blocks }
        }
        Layer::Dense => Structure::Dense,
    }
}

/// fc2(GELU(fc1(x))).
#[derive(Module, Debug)]
struct Ffn<B: Backend> {
    fc1: StructuredLinear<B>,
    fc2: StructuredLinear<B>,
    tanh_gelu: bool,
}

impl<B: Backend> Ffn<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = self.fc1.forward(x);
        let h = if self.tanh_gelu {
            transformer::gelu_tanh(h)
        } else {
            gelu(h)
        };
        self.fc2.forward(h)
    }
}

/// One configuration of the group and its samples.
struct Config<B: AutodiffBackend> {
    layer: Layer,
    setting: Option<f64>,
    structure: Structure,
    weights: u64,
    model: Ffn<B>,
    inner: Ffn<B::InnerBackend>,
    samples_fwd: Vec<f64>,
    samples_fwdbwd: Vec<f64>,
    reps_fwd: usize,
    reps_fwdbwd: usize,
}

/// Every configuration at one backend, width and token count, timed round-robin.
struct Group<'a> {
    args: &'a FfnArgs,
    backend: &'a FfnBackend,
    width: usize,
    tokens: usize,
}

impl Job for Group<'_> {
    type Output = Vec<String>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<String>> {
        self.timed::<Autodiff<B>>(device)
    }
}

impl Group<'_> {
    fn timed<B: AutodiffBackend>(&self, device: B::Device) -> Result<Vec<String>> {
        let (o, precision) = (self.args, self.backend.precision);
        precision.check::<B>(&device)?;
        B::seed(&device, 1234);
        let (d, h) = (self.width, EXPANSION * self.width);
        let mut configs: Vec<Config<B>> = Vec::new();
        for &layer in &o.layers {
            let settings: Vec<Option<f64>> = if layer == Layer::Dense {
                vec![None]
            } else {
                o.ratio.iter().map(|r| Some(*r)).collect()
            };
            for setting in settings {
                let s = structure(layer, self.width, setting.unwrap_or(1.0));
                let make = |d_in, d_out| {
                    StructuredLinearConfig::new(d_in, d_out)
                        .with_structure(s)
                        .with_init(Init::FanIn)
                };
                let (c1, c2) = (make(d, h), make(h, d));
                let model = Ffn::<B> {
                    fc1: c1.init(&device).context("fc1")?,
                    fc2: c2.init(&device).context("fc2")?,
                    tanh_gelu: o.gelu == Gelu::Tanh,
                };
                // The whole block in the benchmark's precision: the weights become leaves of
                // that type (no cast inside the timed passes).
                let inner = precision.apply(model.valid());
                configs.push(Config {
                    layer,
                    setting,
                    structure: s,
                    weights: c1.weight_params() + c2.weight_params(),
                    model: Ffn::from_inner(inner.clone()),
                    inner,
                    samples_fwd: vec![],
                    samples_fwdbwd: vec![],
                    reps_fwd: 1,
                    reps_fwdbwd: 1,
                });
            }
        }
        let normal = Distribution::Normal(0.0, 1.0);
        let x = precision.apply_tensor(Tensor::<B::InnerBackend, 2>::random(
            [self.tokens, d],
            normal,
            &device,
        ));
        let dy = Tensor::<B, 2>::from_inner(precision.apply_tensor(Tensor::random(
            [self.tokens, d],
            normal,
            &device,
        )));
        let fwd = |c: &Config<B>| {
            let y = c.inner.forward(x.clone());
            B::sync(&device).ok();
            drop(y);
        };
        let fwdbwd = |c: &Config<B>| {
            let xg = Tensor::<B, 2>::from_inner(x.clone()).require_grad();
            let y = c.model.forward(xg);
            let grads = (y * dy.clone()).sum().backward();
            B::sync(&device).ok();
            drop(grads);
        };
        let time = |f: &dyn Fn(), reps: usize| {
            let t0 = Instant::now();
            for _ in 0..reps {
                f();
            }
            t0.elapsed().as_secs_f64() * 1e3 / reps as f64
        };
        // Warm up and calibrate the inner repetitions so that one sample lasts at least
        // min_sample_ms.
        for c in configs.iter_mut() {
            for _ in 0..o.warmup {
                fwd(c);
                fwdbwd(c);
            }
            let one = time(&|| fwd(c), 1);
            c.reps_fwd = (o.min_sample_ms / one.max(1e-3)).ceil().max(1.0) as usize;
            let one = time(&|| fwdbwd(c), 1);
            c.reps_fwdbwd = (o.min_sample_ms / one.max(1e-3)).ceil().max(1.0) as usize;
        }
        for _ in 0..o.repeats {
            for c in configs.iter_mut() {
                let ms = time(&|| fwd(c), c.reps_fwd);
                c.samples_fwd.push(ms);
                let ms = time(&|| fwdbwd(c), c.reps_fwdbwd);
                c.samples_fwdbwd.push(ms);
            }
        }
        Ok(self.report(&configs))
    }

    /// One JSON line per configuration, with speedups over dense when dense ran.
    fn report<B: AutodiffBackend>(&self, configs: &[Config<B>]) -> Vec<String> {
        let dense_weights = (2 * self.width * EXPANSION * self.width) as f64;
        let medians = |c: &Config<B>| {
            (
                median(c.samples_fwd.clone()),
                median(c.samples_fwdbwd.clone()),
            )
        };
        let dense = configs
            .iter()
            .find(|c| c.layer == Layer::Dense)
            .map(medians);
        configs
            .iter()
            .map(|c| {
                let (fwd_ms, fwdbwd_ms) = medians(c);
                let ratio = c.weights as f64 / dense_weights;
                let mut line = json!({
                    "bench": "ffn",
                    "backend": self.backend.label,
                    "precision": self.backend.precision.name(),
                    "layer": c.layer.name(),
                    "setting": c.setting,
                    "structure": c.structure,
                    "width": self.width,
                    "tokens": self.tokens,
                    "gelu": if self.args.gelu == Gelu::Tanh { "tanh" } else { "erf" },
                    "params_ratio": round4(ratio),
                    "ideal_speedup": round4(1.0 / ratio),
                    "fwd_ms": round4(fwd_ms),
                    "fwdbwd_ms": round4(fwdbwd_ms),
                    "repeats": c.samples_fwd.len(),
                });
                if let Some((dense_fwd, dense_fwdbwd)) = dense {
                    let speedup = dense_fwdbwd / fwdbwd_ms;
                    line["speedup_fwd"] = json!(round4(dense_fwd / fwd_ms));
                    line["speedup_fwdbwd"] = json!(round4(speedup));
                    line["efficiency_fwdbwd"] = json!(round4(speedup * ratio));
                }
                line.to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_meet_the_ratio_as_the_peer_rounds_them() {
        // d = 1024, 63%: LowRank rank 0.63 * 8d^2 / 10d = 516 -> 512 (a multiple of 32).
        assert_eq!(
            structure(Layer::Lowrank, 1024, 0.63),
            Structure::LowRank { rank: 512 }
        );
        // BlockShuffle: (1 + 4) / 4 / 0.32 = 3.9 blocks -> the divisor 4.
        assert_eq!(
            structure(Layer::Blockshuffle, 1024, 0.32),
            Structure::BlockShuffle { n_blocks: 4 }
        );
        assert!(matches!(
            structure(Layer::Blockdense, 1024, 0.32),
            Structure::BlockDense { n_blocks: 4, rank } if rank % 32 == 0
        ));
        assert!(parse_backend("cuda-bf16").is_ok());
        assert!(parse_backend("tpu").is_err());
        assert!(parse_backend("cpu-f8").is_err());
    }
}
