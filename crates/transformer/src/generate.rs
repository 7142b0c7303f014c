//! Generation: the sampler (temperature, top-k, top-p, seed), the pre-merge dispatching model,
//! and the decoding loop over any [`LanguageModel`].

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::cache::KvCache;
use crate::config::TransformerConfig;
use crate::error::ModelError;
use crate::model::Transformer;

/// A model that decodes with a KV cache.
pub trait LanguageModel<B: Backend> {
    /// The model's configuration.
    fn config(&self) -> &TransformerConfig;
    /// Logits of the next tokens, continuing from `cache`.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` -> `[batch, seq, vocab_size]`
    fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ModelError>;
}

impl<B: Backend> LanguageModel<B> for Transformer<B> {
    fn config(&self) -> &TransformerConfig {
        Transformer::config(self)
    }

    fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        Transformer::forward_cached(self, tokens, cache)
    }
}

/// Default token-count threshold of [`Dispatching`]: calls with at most this many tokens use
/// the merged dense model.
///
/// Measured with `strata bench decode` on the 2-core CPU (docs/benchmarks.md): for
/// `s-lowrank-r192` the structured model decodes 1.3-1.4x faster than the merged one at every
/// batch size from 1 to 256, because CPU decoding is bound by reading the weights and the
/// structured form reads 31% of them. So on the CPU the default never merges. On GPUs, where
/// per-kernel overhead dominates small calls, the paper finds merging faster below roughly 512
/// tokens at width 2048: pass such a threshold there (`--threshold`).
pub const DEFAULT_DISPATCH_THRESHOLD: usize = 0;

/// Pre-merge with dispatch: keeps the structured model and its merged dense twin and picks per
/// call by the number of tokens in flight (`batch * seq`): few tokens (decoding) go to the
/// merged model, many (prefill, training-size batches) to the structured one. Both compute the
/// same function, so they share one KV cache.
#[derive(Debug, Clone)]
pub struct Dispatching<B: Backend> {
    /// The structured model.
    pub structured: Transformer<B>,
    /// Its merged dense twin.
    pub merged: Transformer<B>,
    /// Calls with at most this many tokens use `merged`.
    pub threshold: usize,
}

impl<B: Backend> Dispatching<B> {
    /// Builds the merged twin of `structured`. A model inside its guided phase keeps its guides:
    /// the twin merges each layer's mix at the model's alpha, so both compute the same function.
    pub fn new(structured: Transformer<B>, threshold: usize) -> Self {
        let merged = structured.merged();
        Self {
            structured,
            merged,
            threshold,
        }
    }

    /// The model that serves a call with `tokens` tokens in flight.
    pub fn pick(&self, tokens: usize) -> &Transformer<B> {
        if tokens <= self.threshold {
            &self.merged
        } else {
            &self.structured
        }
    }

    /// Full causal forward through the picked model.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` -> `[batch, seq, vocab_size]`
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, ModelError> {
        let [b, t] = tokens.dims();
        self.pick(b * t).forward(tokens)
    }
}

impl<B: Backend> LanguageModel<B> for Dispatching<B> {
    fn config(&self) -> &TransformerConfig {
        self.structured.config()
    }

    fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, t] = tokens.dims();
        self.pick(b * t).forward_cached(tokens, cache)
    }
}

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

/// What to generate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct GenerateConfig {
    /// New tokens to produce at most.
    pub max_new_tokens: usize,
    /// The sampler.
    pub sampling: SamplingConfig,
    /// Stop after emitting this token (it is included in the output).
    pub stop_token: Option<u32>,
}

/// Continues `prompt` with at most `max_new_tokens` tokens; returns the new tokens only.
///
/// The prompt is prefilled in one call; then one token per step through the KV cache. A
/// request that would run past the model's context is refused before any work.
pub fn generate<B: Backend, M: LanguageModel<B>>(
    model: &M,
    prompt: &[u32],
    config: &GenerateConfig,
    device: &B::Device,
) -> Result<Vec<u32>, ModelError> {
    let mc = model.config();
    if prompt.is_empty() {
        return Err(ModelError::Empty("the prompt has no tokens"));
    }
    if let Some(&id) = prompt.iter().find(|&&id| id as usize >= mc.vocab_size) {
        return Err(ModelError::TokenOutOfRange {
            id,
            vocab_size: mc.vocab_size,
        });
    }
    // The last new token is never fed back, so the context needs prompt + max_new - 1.
    let needed = prompt.len() + config.max_new_tokens.saturating_sub(1);
    if needed > mc.max_seq_len {
        return Err(ModelError::ContextOverflow {
            needed,
            capacity: mc.max_seq_len,
        });
    }
    let mut sampler = Sampler::new(config.sampling)?;
    // The buffers hold just this request (at least one position), so every step has one shape.
    let mut cache = KvCache::with_capacity(mc, needed.max(1))?;
    let mut out = Vec::with_capacity(config.max_new_tokens);
    let mut input = prompt.to_vec();
    while out.len() < config.max_new_tokens {
        let tokens = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                input.iter().map(|&t| t as i64).collect::<Vec<_>>(),
                [1, input.len()],
            ),
            device,
        );
        let logits = model.forward_cached(tokens, &mut cache)?;
        let [_, t, v] = logits.dims();
        let last = logits.narrow(1, t - 1, 1).reshape([v]);
        let last: Vec<f32> =
            last.into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| ModelError::Readback {
                    what: "logits",
                    problem: format!("{e:?}"),
                })?;
        let next = sampler.sample(&last);
        out.push(next);
        if config.stop_token == Some(next) {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}
