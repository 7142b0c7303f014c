//! `cargo xtask bench ffn`: times an FFN block (fc1: d -> 4d, GELU, fc2: 4d -> d; bias, input
//! requiring grad; f32, or bf16/f16 on the `-bf16`/`-f16` GPU backends) forward and
//! forward+backward for dense and each structure at the paper's 63% and 32% settings, side by
//! side in one run, and prints one JSON object per configuration.
//!
//! The configurations follow the PyTorch peer script of docs/benchmarks.md exactly (same ranks,
//! block counts and rounding), and, like it, samples are taken round-robin so that drifting load
//! on a shared machine affects every configuration alike.
//!
//! Long on purpose: the benchmark's configurations, timing and report in one place (it moves
//! under `strata bench` in a later change).

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::tensor::activation::{gelu, gelu_approximate};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use serde_json::json;
use structured_linear::{Init, Structure, StructuredLinear, StructuredLinearConfig};

const EXPANSION: usize = 4;

const USAGE: &str =
    "usage: cargo xtask bench ffn [--width W...] [--tokens T...] [--backend BACKEND...]
                            [--layers dense lowrank blockdense blockshuffle] [--ratio R...]
                            [--repeats N] [--warmup N] [--min-sample-ms MS] [--gelu erf|tanh]
                            [--out FILE]

defaults: --width 512 1024 1536 2048 --tokens 2048 --backend flex --ratio 0.63 0.32 --repeats 7
          --gelu erf (burn's native GELU; compare with the PyTorch peer's `--gelu erf`)
backends: ndarray, flex, cpu (= flex); with `--features wgpu`: wgpu, wgpu-f16; with
`--features cuda`: cuda, cuda-bf16, cuda-f16 (the whole block in that type), e.g.
  cargo run --release -p xtask --features cuda -- bench ffn --backend cuda cuda-bf16 \
      --width 1024 2048 3072 4096 5120 --tokens 30720";

/// Backends `--backend` accepts; the GPU ones need the matching xtask feature.
const BACKENDS: &[&str] = &[
    "ndarray",
    "flex",
    "cpu",
    "wgpu",
    "wgpu-f16",
    "cuda",
    "cuda-bf16",
    "cuda-f16",
];

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("ffn") => ffn(&args[1..]),
        Some("ops") => ops(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown benchmark `{other}` (available: ffn, ops)"),
    }
}

struct Options {
    widths: Vec<usize>,
    tokens: Vec<usize>,
    backends: Vec<String>,
    layers: Vec<String>,
    ratios: Vec<f64>,
    repeats: usize,
    warmup: usize,
    min_sample_ms: f64,
    out: Option<String>,
    tanh_gelu: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        widths: vec![512, 1024, 1536, 2048],
        tokens: vec![2048],
        backends: vec!["flex".into()],
        layers: ["dense", "lowrank", "blockdense", "blockshuffle"]
            .map(String::from)
            .to_vec(),
        ratios: vec![0.63, 0.32],
        repeats: 7,
        warmup: 2,
        min_sample_ms: 25.0,
        out: None,
        tanh_gelu: false,
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let mut values = Vec::new();
        i += 1;
        while i < args.len() && !args[i].starts_with("--") {
            values.push(args[i].clone());
            i += 1;
        }
        let one = |values: &[String]| -> Result<String> {
            match values {
                [v] => Ok(v.clone()),
                _ => bail!("`{flag}` takes one value"),
            }
        };
        let nums = |values: &[String]| -> Result<Vec<usize>> {
            if values.is_empty() {
                bail!("`{flag}` needs at least one value");
            }
            values
                .iter()
                .map(|v| match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("`{flag}`: `{v}` is not a positive integer"),
                })
                .collect()
        };
        match flag {
            "--width" => o.widths = nums(&values)?,
            "--tokens" => o.tokens = nums(&values)?,
            "--backend" => {
                for b in &values {
                    if !BACKENDS.contains(&b.as_str()) {
                        bail!(
                            "`--backend`: unknown backend `{b}` ({})",
                            BACKENDS.join(", ")
                        );
                    }
                    let feature = b.split('-').next().unwrap_or(b);
                    let built = (feature != "wgpu" || cfg!(feature = "wgpu"))
                        && (feature != "cuda" || cfg!(feature = "cuda"));
                    if !built {
                        bail!(
                            "backend `{b}` needs xtask built with it: \
                             cargo run --release -p xtask --features {feature} -- bench ffn ..."
                        );
                    }
                }
                o.backends = values;
            }
            "--layers" => {
                for l in &values {
                    if !["dense", "lowrank", "blockdense", "blockshuffle"].contains(&l.as_str()) {
                        bail!("`--layers`: unknown layer `{l}`");
                    }
                }
                o.layers = values;
            }
            "--ratio" => {
                o.ratios = values
                    .iter()
                    .map(|v| match v.parse::<f64>() {
                        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
                        _ => bail!("`--ratio`: `{v}` is not in (0, 1]"),
                    })
                    .collect::<Result<_>>()?
            }
            "--repeats" => o.repeats = nums(&[one(&values)?])?[0],
            "--warmup" => o.warmup = one(&values)?.parse().context("`--warmup`")?,
            "--min-sample-ms" => {
                o.min_sample_ms = one(&values)?.parse().context("`--min-sample-ms`")?
            }
            "--out" => o.out = Some(one(&values)?),
            "--gelu" => {
                o.tanh_gelu = match one(&values)?.as_str() {
                    "erf" => false,
                    "tanh" => true,
                    other => bail!("`--gelu`: `{other}` is not erf or tanh"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag `{other}`\n{USAGE}"),
        }
    }
    Ok(o)
}

fn ffn(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let mut out = match &o.out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open `{path}`"))?,
        ),
        None => None,
    };
    for backend in &o.backends {
        for &width in &o.widths {
            for &tokens in &o.tokens {
                let lines = match backend.as_str() {
                    "ndarray" => group::<Autodiff<NdArray>>("ndarray", width, tokens, &o)?,
                    "flex" | "cpu" => group::<Autodiff<Flex>>("flex", width, tokens, &o)?,
                    gpu => gpu_group(gpu, width, tokens, &o)?,
                };
                for line in lines {
                    println!("{line}");
                    if let Some(f) = out.as_mut() {
                        writeln!(f, "{line}")?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The FFN group on a GPU backend (`wgpu[-f16]`, `cuda[-bf16|-f16]`).
fn gpu_group(backend: &str, width: usize, tokens: usize, o: &Options) -> Result<Vec<String>> {
    match backend {
        #[cfg(feature = "wgpu")]
        "wgpu" => group::<Autodiff<burn::backend::Wgpu>>(backend, width, tokens, o),
        #[cfg(feature = "wgpu")]
        "wgpu-f16" => {
            group::<Autodiff<burn::backend::Wgpu<burn::tensor::f16>>>(backend, width, tokens, o)
        }
        #[cfg(feature = "cuda")]
        "cuda" => group::<Autodiff<burn::backend::Cuda>>(backend, width, tokens, o),
        #[cfg(feature = "cuda")]
        "cuda-bf16" => {
            group::<Autodiff<burn::backend::Cuda<burn::tensor::bf16>>>(backend, width, tokens, o)
        }
        #[cfg(feature = "cuda")]
        "cuda-f16" => {
            group::<Autodiff<burn::backend::Cuda<burn::tensor::f16>>>(backend, width, tokens, o)
        }
        _ => {
            let _ = (width, tokens, o);
            bail!("backend `{backend}` is not built in (checked when parsing)")
        }
    }
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
fn structure(layer: &str, width: usize, ratio: f64) -> Structure {
    let (d, e, align) = (width as f64, EXPANSION as f64, 32);
    match layer {
        "lowrank" => Structure::LowRank {
            rank: round_to(ratio * 2.0 * e * d * d / (2.0 * (1.0 + e) * d), align),
        },
        "blockdense" => {
            let k = 4;
            let m = align / gcd(align, k) * k;
            let per_r = (1.0 + e) * d * (1.0 + 1.0 / k as f64);
            Structure::BlockDense {
                n_blocks: k,
                rank: round_to(ratio * 2.0 * e * d * d / per_r, m),
            }
        }
        "blockshuffle" => {
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
        _ => Structure::Dense,
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
            gelu_approximate(h)
        } else {
            gelu(h)
        };
        self.fc2.forward(h)
    }
}

struct Config<B: AutodiffBackend> {
    layer: String,
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

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn group<B: AutodiffBackend>(
    backend: &str,
    width: usize,
    tokens: usize,
    o: &Options,
) -> Result<Vec<String>> {
    let device = B::Device::default();
    B::seed(&device, 1234);
    let (d, h) = (width, EXPANSION * width);
    let mut configs: Vec<Config<B>> = Vec::new();
    for layer in &o.layers {
        let settings: Vec<Option<f64>> = if layer == "dense" {
            vec![None]
        } else {
            o.ratios.iter().map(|r| Some(*r)).collect()
        };
        for setting in settings {
            let s = structure(layer, width, setting.unwrap_or(1.0));
            let make = |d_in, d_out| {
                StructuredLinearConfig::new(d_in, d_out)
                    .with_structure(s)
                    .with_init(Init::FanIn)
            };
            let (c1, c2) = (make(d, h), make(h, d));
            let model = Ffn {
                fc1: c1.init::<B>(&device).context("fc1")?,
                fc2: c2.init::<B>(&device).context("fc2")?,
                tanh_gelu: o.tanh_gelu,
            };
            configs.push(Config {
                layer: layer.clone(),
                setting,
                structure: s,
                weights: c1.weight_params() + c2.weight_params(),
                inner: model.valid(),
                model,
                samples_fwd: vec![],
                samples_fwdbwd: vec![],
                reps_fwd: 1,
                reps_fwdbwd: 1,
            });
        }
    }
    let x =
        Tensor::<B::InnerBackend, 2>::random([tokens, d], Distribution::Normal(0.0, 1.0), &device);
    let dy = Tensor::<B, 2>::random([tokens, d], Distribution::Normal(0.0, 1.0), &device);
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
    // Warm up and calibrate the inner repetitions so that one sample lasts at least min_sample_ms.
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
    let dense_weights = (2 * d * h) as f64;
    let dense = configs
        .iter()
        .find(|c| c.layer == "dense")
        .map(|c| (median(&c.samples_fwd), median(&c.samples_fwdbwd)));
    let lines = configs
        .iter()
        .map(|c| {
            let (fwd_ms, fwdbwd_ms) = (median(&c.samples_fwd), median(&c.samples_fwdbwd));
            let ratio = c.weights as f64 / dense_weights;
            let mut line = json!({
                "bench": "ffn",
                "backend": backend,
                "layer": c.layer,
                "setting": c.setting,
                "structure": c.structure,
                "width": width,
                "tokens": tokens,
                "gelu": if o.tanh_gelu { "tanh" } else { "erf" },
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
        .collect();
    Ok(lines)
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// `cargo xtask bench ops`: the building blocks of the FFN benchmark at its d = 1024, 2048-token
/// shapes (one matmul of fc1, GELU and a bias add on the hidden activations), to see where the
/// time goes. One JSON line per backend and op, median of 5.
fn ops(args: &[String]) -> Result<()> {
    let mut backends = vec!["flex".to_string(), "ndarray".to_string()];
    match args {
        [] => {}
        [flag, rest @ ..] if flag == "--backend" && !rest.is_empty() => backends = rest.to_vec(),
        _ => bail!("usage: cargo xtask bench ops [--backend ndarray|flex...]"),
    }
    for backend in &backends {
        match backend.as_str() {
            "ndarray" => ops_on::<NdArray>("ndarray"),
            "flex" | "cpu" => ops_on::<Flex>("flex"),
            other => bail!("unknown CPU backend `{other}` (ndarray, flex, cpu)"),
        }
    }
    Ok(())
}

fn ops_on<B: Backend>(backend: &str) {
    let device = B::Device::default();
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
        let run = || {
            let y = f();
            B::sync(&device).ok();
            drop(y);
        };
        run();
        let samples: Vec<f64> = (0..5)
            .map(|_| {
                let t0 = Instant::now();
                run();
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let ms = median(&samples);
        let mut line = json!({"bench": "ops", "backend": backend, "op": name, "ms": round4(ms)});
        if flops > 0.0 {
            line["gflops"] = json!(round4(flops / ms / 1e6));
        }
        println!("{line}");
    }
}
