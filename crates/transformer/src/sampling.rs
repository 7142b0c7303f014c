//! Sampling: its settings ([`SamplingConfig`]), the host's [`Sampler`] (the reference), and
//! sampling on the device: the next token of every sequence chosen where the logits are, so a
//! decoding step reads back one id per sequence (4 or 8 bytes) instead of a row of logits, and
//! the chosen ids are the next step's input without a round trip through the host.
//!
//! [`DeviceSampler`] makes the choice of the host's [`Sampler`]: greedy is the arg-max; with a
//! temperature, the tokens are ranked by logit, top-k and top-p keep a prefix of that ranking,
//! and the draw walks the ranking with one uniform number `u` from the same seeded generator.
//! No backend sorts on the device (burn sorts on the host), so each of those three cuts is a
//! threshold on the logits, found by a search that tests many thresholds per pass ([`search_shape`]):
//! "the tokens above the threshold hold at least k tokens / at least p of the mass / more
//! than u of the mass". Where the host and the device differ:
//!
//! - the arithmetic: f32 on the device, f64 on the host, so a `u` within about 1e-6 of the
//!   boundary between two tokens may pick the neighbour;
//! - exactly tied logits: top-k and top-p keep every token tied with the last one kept (the
//!   host keeps the lower ids), and a draw that lands on a tie takes the lowest id (the host
//!   walks the tied tokens by id). Logits of trained models are seldom exactly equal.
//!
//! A pass costs a few kernels; a search runs 4 to 8 passes ([`search_shape`]), so greedy
//! decoding adds one reduction per token and sampling a few dozen kernels per cut.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use serde::{Deserialize, Serialize};

use crate::{loss::to_f32, ModelError};

/// How the next token is drawn from the logits.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability mass reaches p.
    pub top_p: Option<f64>,
    /// Seed of the sampler's random generator.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Checks the values; the error names the bad field.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(ModelError::invalid(
                "temperature",
                format!("must be >= 0, got {}", self.temperature),
            ));
        }
        if self.top_k == Some(0) {
            return Err(ModelError::invalid("top_k", "must be at least 1"));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ModelError::invalid(
                    "top_p",
                    format!("must lie in (0, 1], got {p}"),
                ));
            }
        }
        Ok(())
    }
}

/// Draws tokens from logits; a fixed seed repeats its draws.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for a validated configuration.
    pub fn new(config: SamplingConfig) -> Result<Self, ModelError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: StdRng::seed_from_u64(config.seed),
        })
    }

    /// The candidate tokens and their probabilities after temperature, top-k and top-p,
    /// most likely first (greedy: the argmax alone).
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        // Descending by logit, ties by lower id, NaN last.
        order.sort_by(|&a, &b| {
            let (x, y) = (logits[a as usize], logits[b as usize]);
            y.partial_cmp(&x)
                .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
                .then(a.cmp(&b))
        });
        if self.config.temperature == 0.0 || order.len() == 1 {
            return vec![(order[0], 1.0)];
        }
        let k = self.config.top_k.unwrap_or(order.len()).min(order.len());
        order.truncate(k);
        let max = logits[order[0] as usize] as f64;
        let mut probs: Vec<(u32, f64)> = order
            .iter()
            .map(|&i| {
                (
                    i,
                    ((logits[i as usize] as f64 - max) / self.config.temperature).exp(),
                )
            })
            .filter(|(_, p)| p.is_finite())
            .collect();
        let sum: f64 = probs.iter().map(|(_, p)| p).sum();
        probs.iter_mut().for_each(|(_, p)| *p /= sum);
        if let Some(top_p) = self.config.top_p {
            let mut mass = 0.0;
            let mut keep = 0;
            for (_, p) in &probs {
                keep += 1;
                mass += p;
                if mass >= top_p {
                    break;
                }
            }
            probs.truncate(keep);
            probs.iter_mut().for_each(|(_, p)| *p /= mass);
        }
        probs
    }

    /// Draws one token id.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let dist = self.distribution(logits);
        let u: f64 = self.rng.random();
        let mut acc = 0.0;
        for &(id, p) in &dist {
            acc += p;
            if u < acc {
                return id;
            }
        }
        dist.last().map_or(0, |(id, _)| *id)
    }
}

/// Elements (rows x candidates x vocabulary) a pass of a search compares at most: the number
/// of candidate thresholds per pass is the largest power of two, less one, within it (at most
/// 255, at least 15).
pub const SEARCH_ELEMENTS: usize = 1 << 22;
/// Bits of resolution a search reaches: the interval `[-128, 1]` narrows to `129 / 2^32`,
/// about 3e-8, finer than an f32's spacing near the largest logit (1.2e-7 at 1).
const SEARCH_BITS: u32 = 32;

/// Candidates per pass (`2^k - 1`, so that their fractions `j / 2^k` are exact) and passes for
/// `rows` rows of `vocab` logits: `255` and 4 passes for one row of a small vocabulary, fewer
/// candidates and more passes as rows x vocabulary grows.
pub fn search_shape(rows: usize, vocab: usize) -> (usize, usize) {
    let fit = SEARCH_ELEMENTS / (rows * vocab).max(1);
    let bits = (usize::BITS - 1 - (fit + 1).max(1).leading_zeros()).clamp(4, 8);
    let passes = SEARCH_BITS.div_ceil(bits);
    ((1usize << bits) - 1, passes as usize)
}

/// Scaled logits below this give a weight `exp(x - max)` of 0 in f32; the searches start here.
const FLOOR: f32 = -128.0;

/// Draws the next tokens on the device; a fixed seed repeats its draws.
#[derive(Debug, Clone)]
pub struct DeviceSampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl DeviceSampler {
    /// A sampler for a validated configuration.
    pub fn new(config: SamplingConfig) -> Result<Self, ModelError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: StdRng::seed_from_u64(config.seed),
        })
    }

    /// The next token of each row of `logits`, on the device (one uniform number per row is
    /// uploaded when sampling).
    ///
    /// # Shapes
    /// - logits: `[batch, vocab]` -> `[batch, 1]`
    pub fn sample<B: Backend>(&mut self, logits: Tensor<B, 2>) -> Tensor<B, 2, Int> {
        let [b, v] = logits.dims();
        let logits = to_f32(logits);
        if self.config.temperature == 0.0 || v == 1 {
            return logits.argmax(1);
        }
        let x = self.scaled(logits);
        let w = self.weights(x.clone());
        // The host's draw in f32, kept below 1 (an f64 just under 1 rounds to 1.0).
        let u: Vec<f32> = (0..b)
            .map(|_| (self.rng.random::<f64>() as f32).min(1.0 - f32::EPSILON / 2.0))
            .collect();
        let u = Tensor::<B, 2>::from_data(TensorData::new(u, [b, 1]), &x.device());
        let z = w.clone().sum_dim(1);
        // The chosen token is the first, in the ranking, whose mass takes the walk past u·z.
        let (lo, hi) = search(x.clone(), Some(w.clone()), u * z, true);
        let at = x
            .clone()
            .greater_equal(lo)
            .bool_and(x.lower(hi))
            .bool_and(w.greater_elem(0.0));
        at.float().argmax(1)
    }

    /// The probabilities the draw uses, row by row (zero outside top-k and top-p): what
    /// [`Sampler::distribution`] lists, as a dense `[batch, vocab]` tensor. Greedy: one-hot.
    pub fn probabilities<B: Backend>(&self, logits: Tensor<B, 2>) -> Tensor<B, 2> {
        let logits = to_f32(logits);
        if self.config.temperature == 0.0 || logits.dims()[1] == 1 {
            let [b, v] = logits.dims();
            let ids = Tensor::<B, 1, Int>::arange(0..v as i64, &logits.device())
                .reshape([1, v])
                .expand([b, v]);
            return ids.equal(logits.argmax(1).expand([b, v])).float();
        }
        let w = self.weights(self.scaled(logits));
        let z = w.clone().sum_dim(1);
        w / z
    }

    /// `logits / temperature`, minus each row's largest, at least [`FLOOR`].
    fn scaled<B: Backend>(&self, logits: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = logits.div_scalar(self.config.temperature);
        let max = x.clone().max_dim(1);
        (x - max).clamp_min(FLOOR)
    }

    /// `exp(x)` where top-k and top-p keep the token, 0 elsewhere.
    fn weights<B: Backend>(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, v] = x.dims();
        let mut w = x.clone().exp();
        if let Some(k) = self.config.top_k.filter(|&k| k < v) {
            let target = Tensor::<B, 2>::full([b, 1], k as f32, &x.device());
            let (lo, _) = search(x.clone(), None, target, false);
            w = w.mask_fill(x.clone().lower(lo), 0.0);
        }
        if let Some(p) = self.config.top_p.filter(|&p| p < 1.0) {
            let target = w.clone().sum_dim(1).mul_scalar(p);
            let (lo, _) = search(x.clone(), Some(w.clone()), target, false);
            w = w.mask_fill(x.lower(lo), 0.0);
        }
        w
    }
}

/// Per row of `x` (`[batch, vocab]`, values in `[FLOOR, 0]`), an interval `[lo, hi)` narrower
/// than an f32's spacing near 1 around the threshold where the mass of the tokens at or above
/// it (their `weight`, or their count without one) falls below `target` (`[batch, 1]`):
/// `mass(x >= lo) >= target > mass(x >= hi)`, or with `strict`,
/// `mass(x >= lo) > target >= mass(x >= hi)`. The token with the value in `[lo, hi)` is the
/// ranking's last kept (or, strict, the first past the target).
fn search<B: Backend>(
    x: Tensor<B, 2>,
    weight: Option<Tensor<B, 2>>,
    target: Tensor<B, 2>,
    strict: bool,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [b, v] = x.dims();
    let device = x.device();
    let (c, passes) = search_shape(b, v);
    // Multiples of 1 / (c + 1), a power of two: exact, so a candidate and the bound taken from
    // it are the same float.
    let fractions: Vec<f32> = (1..=c).map(|j| j as f32 / (c + 1) as f32).collect();
    let fractions = Tensor::<B, 2>::from_data(TensorData::new(fractions, [1, c]), &device);
    // One copy of the row per candidate, made once (at most `SEARCH_ELEMENTS`): each pass
    // then compares a tensor with a column of candidates broadcast along it.
    let x = x.reshape([b, 1, v]).repeat_dim(1, c);
    let weight = weight.map(|w| w.reshape([b, 1, v]).repeat_dim(1, c));
    let mut lo = Tensor::<B, 2>::full([b, 1], FLOOR, &device);
    let mut hi = Tensor::<B, 2>::full([b, 1], 1.0, &device);
    for _ in 0..passes {
        let width = hi - lo.clone();
        let candidates = lo.clone() + width.clone() * fractions.clone();
        let above = x
            .clone()
            .greater_equal(candidates.reshape([b, c, 1]))
            .float();
        let mass = match &weight {
            Some(w) => above * w.clone(),
            None => above,
        }
        .sum_dim(2)
        .reshape([b, c]);
        // The mass falls as the threshold rises, so the candidates that hold are a prefix:
        // their count says which two candidates are the new bounds.
        let held = match strict {
            true => mass.greater(target.clone()),
            false => mass.greater_equal(target.clone()),
        }
        .float()
        .sum_dim(1);
        let step = width.div_scalar((c + 1) as f32);
        hi = lo.clone() + step.clone() * (held.clone() + 1.0);
        lo = lo + step * held;
    }
    (lo, hi)
}
