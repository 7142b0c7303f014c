//! The KV cache: explicit decoding state passed next to the model.
//!
//! Each layer's keys and values live in one buffer per kind, allocated at the first call with the
//! cache's capacity and written in place at the positions of each call, so decoding step N runs
//! the same kernels on the same shapes as step N - 1 (no concatenation of a growing tensor).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::TransformerConfig;
use crate::error::ModelError;

/// Keys and values of one layer, `[batch, n_kv_heads, capacity, head_dim]` each (post-RoPE);
/// allocated at the first write.
#[derive(Clone, Debug)]
pub(crate) struct LayerCache<B: Backend> {
    kv: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    capacity: usize,
}

impl<B: Backend> LayerCache<B> {
    /// The shapes of the key and value buffers (None before the first write).
    #[cfg(test)]
    pub(crate) fn shapes(&self) -> Option<[[usize; 4]; 2]> {
        self.kv.as_ref().map(|(k, v)| [k.dims(), v.dims()])
    }

    /// Writes `k` and `v` at positions `offset..offset + seq` and returns the keys and values to
    /// attend over: the whole buffer when `whole` (a decoding step: fixed shapes; the slots not
    /// yet written must be masked), else the positions written so far (`..offset + seq`).
    ///
    /// # Shapes
    /// - k, v: `[batch, n_kv_heads, seq, head_dim]` -> `[batch, n_kv_heads, capacity or offset + seq, head_dim]`
    pub(crate) fn write(
        &mut self,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        offset: usize,
        whole: bool,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, kvh, t, hd] = k.dims();
        let (kb, vb) = match self.kv.take() {
            Some(kv) => kv,
            None => {
                let buffer =
                    || Tensor::zeros([b, kvh, self.capacity, hd], (&k.device(), k.dtype()));
                (buffer(), buffer())
            }
        };
        let dtype = kb.dtype();
        let (k, v) = if k.dtype() == dtype {
            (k, v)
        } else {
            (k.cast(dtype), v.cast(dtype))
        };
        let at = [0..b, 0..kvh, offset..offset + t, 0..hd];
        let kb = kb.slice_assign(at.clone(), k);
        let vb = vb.slice_assign(at, v);
        self.kv = Some((kb.clone(), vb.clone()));
        if whole {
            (kb, vb)
        } else {
            (kb.narrow(2, 0, offset + t), vb.narrow(2, 0, offset + t))
        }
    }
}

/// The KV cache of one generation batch.
///
/// Positions continue from [`KvCache::len`]; going past the cache's capacity (at most the
/// model's `max_seq_len`) is an error.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<LayerCache<B>>,
    len: usize,
    capacity: usize,
    max_seq_len: usize,
    batch: Option<usize>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `config`'s model holding its whole context (`max_seq_len`).
    pub fn new(config: &TransformerConfig) -> Self {
        Self::build(config, config.max_seq_len)
    }

    /// An empty cache for `config`'s model holding `capacity` positions: the buffers are
    /// allocated to this size, so ask for what a generation needs (prompt + new tokens).
    pub fn with_capacity(config: &TransformerConfig, capacity: usize) -> Result<Self, ModelError> {
        if capacity == 0 {
            return Err(ModelError::Empty("a KV cache of capacity 0"));
        }
        if capacity > config.max_seq_len {
            return Err(ModelError::ContextOverflow {
                needed: capacity,
                capacity: config.max_seq_len,
            });
        }
        Ok(Self::build(config, capacity))
    }

    fn build(config: &TransformerConfig, capacity: usize) -> Self {
        Self {
            layers: vec![LayerCache { kv: None, capacity }; config.n_layers],
            len: 0,
            capacity,
            max_seq_len: config.max_seq_len,
            batch: None,
        }
    }

    /// Tokens cached so far (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything: the next call starts at position 0 (the buffers are kept and
    /// overwritten, so a batch of the same size runs on the same shapes again).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Checks that `t` more tokens of a batch of `b` fit, for a model of `n_layers` layers
    /// and context `max_seq_len`; returns the position of the first of them. An empty cache
    /// takes any batch size (buffers of another size are dropped).
    pub(crate) fn admit(
        &mut self,
        n_layers: usize,
        max_seq_len: usize,
        b: usize,
        t: usize,
    ) -> Result<usize, ModelError> {
        if self.layers.len() != n_layers || self.max_seq_len != max_seq_len {
            return Err(ModelError::CacheForOtherModel {
                cache_layers: self.layers.len(),
                cache_positions: self.max_seq_len,
                model_layers: n_layers,
                model_positions: max_seq_len,
            });
        }
        if let Some(batch) = self.batch {
            if batch != b && self.len > 0 {
                return Err(ModelError::CacheBatch {
                    cached: batch,
                    given: b,
                });
            }
        }
        if t == 0 {
            return Err(ModelError::Empty("no tokens"));
        }
        if self.len + t > self.capacity {
            return Err(ModelError::ContextOverflow {
                needed: self.len + t,
                capacity: self.capacity,
            });
        }
        if self.batch != Some(b) {
            self.layers.iter_mut().for_each(|l| l.kv = None);
        }
        Ok(self.len)
    }

    /// Records that `t` tokens of a batch of `b` were written.
    pub(crate) fn advance(&mut self, b: usize, t: usize) {
        self.len += t;
        self.batch = Some(b);
    }
}
