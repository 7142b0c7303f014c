//! Generation: the pre-merge dispatching model and the decoding loop over any
//! [`LanguageModel`], its tokens chosen by the device sampler (`sampling.rs`).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::cache::KvCache;
use crate::config::TransformerConfig;
use crate::error::ModelError;
use crate::model::Transformer;
use crate::sampling::{DeviceSampler, Sampler, SamplingConfig};

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

/// What to generate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct GenerateConfig {
    /// New tokens to produce at most.
    pub max_new_tokens: usize,
    /// The sampler.
    pub sampling: SamplingConfig,
    /// Stop after emitting this token (it is included in the output).
    pub stop_token: Option<u32>,
    /// Choose each token on the device ([`DeviceSampler`]: one id read back per token, fed in
    /// as it is) rather than on the host from the row of logits read back ([`Sampler`]). The
    /// same tokens either way (up to f32 rounding); worth it on a GPU, while on a CPU backend,
    /// whose logits are already in host memory, the host's sort is the cheaper search.
    #[serde(default)]
    pub on_device: bool,
}

/// Continues `prompt` with at most `max_new_tokens` tokens; returns the new tokens only.
///
/// The prompt is prefilled in one call; then one token per step through the KV cache, each
/// chosen on the device or on the host ([`GenerateConfig::on_device`]). A request that would
/// run past the model's context is refused before any work.
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
    let mut sampler = NextToken::new(config.sampling, config.on_device)?;
    // The buffers hold just this request (at least one position), so every step has one shape.
    let mut cache = KvCache::with_capacity(mc, needed.max(1))?;
    let mut out = Vec::with_capacity(config.max_new_tokens);
    let mut input = ids_tensor::<B>(prompt, device);
    while out.len() < config.max_new_tokens {
        let logits = model.forward_cached(input, &mut cache)?;
        let [_, t, v] = logits.dims();
        let (ids, next) = sampler.next(logits.narrow(1, t - 1, 1).reshape([1, v]), device)?;
        let id = ids[0];
        out.push(id);
        if config.stop_token == Some(id) {
            break;
        }
        input = next;
    }
    Ok(out)
}

/// `[1, len]` token ids on `device`.
fn ids_tensor<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [1, n]), device)
}

/// Where a decoding loop chooses its tokens: on the device ([`DeviceSampler`]) or on the host
/// ([`Sampler`], from the rows of logits read back).
pub enum NextToken {
    /// On the device: one id per sequence read back, fed in as it is.
    Device(DeviceSampler),
    /// On the host: each row of logits read back, the ids uploaded again.
    Host(Sampler),
}

impl NextToken {
    /// A chooser for validated `config`, on the device or on the host.
    pub fn new(config: SamplingConfig, on_device: bool) -> Result<Self, ModelError> {
        Ok(match on_device {
            true => NextToken::Device(DeviceSampler::new(config)?),
            false => NextToken::Host(Sampler::new(config)?),
        })
    }

    /// The next token of each row of `logits` (`[batch, vocab]`), and the next step's input
    /// holding them (`[batch, 1]`).
    pub fn next<B: Backend>(
        &mut self,
        logits: Tensor<B, 2>,
        device: &B::Device,
    ) -> Result<(Vec<u32>, Tensor<B, 2, Int>), ModelError> {
        let readback = |what, e: &dyn std::fmt::Debug| ModelError::Readback {
            what,
            problem: format!("{e:?}"),
        };
        match self {
            NextToken::Device(sampler) => {
                let next = sampler.sample(logits);
                let data = next.clone().into_data();
                let ids = data.iter::<i64>().map(|i| i as u32).collect();
                Ok((ids, next))
            }
            NextToken::Host(sampler) => {
                let [b, v] = logits.dims();
                let rows = logits.into_data().convert::<f32>().to_vec::<f32>();
                let rows = rows.map_err(|e| readback("logits", &e))?;
                let ids: Vec<u32> = rows.chunks(v).map(|r| sampler.sample(r)).collect();
                let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
                let next = Tensor::from_data(TensorData::new(data, [b, 1]), device);
                Ok((ids, next))
            }
        }
    }
}
