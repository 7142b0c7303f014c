//! Grouped-query causal self-attention and the position tables it needs.
//!
//! Nothing here is computed on the host per call: the RoPE cos/sin tables and the position
//! indices are built once per model (uploaded at init, then moved with the model like its
//! parameters) and narrowed per call; the causal mask is a comparison of position indices on the
//! device. With a KV cache the keys and values are written in place into a buffer of fixed
//! capacity ([`crate::KvCache`]), so every decoding step runs the same kernels on the same shapes.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};

use crate::cache::LayerCache;
use crate::config::{Place, Position, TransformerConfig};
use crate::error::ModelError;
use crate::place::linear;
use structured_linear::SelfGuided;

/// RoPE rotation tables: angle `pos * base^(-2i / head_dim)` for every position below
/// `max_seq_len` and pair `i < head_dim / 2` (half-split pairs `(i, i + head_dim / 2)`).
///
/// Constants of the model (not parameters: never trained, never saved), in the device's default
/// float type; computed in f64 on the host once, at init.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// `cos(angle)`, `[max_seq_len, head_dim / 2]`.
    cos: Tensor<B, 2>,
    /// `sin(angle)`, `[max_seq_len, head_dim / 2]`.
    sin: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// The tables for `positions` positions of heads of `head_dim`, frequency base `base`.
    pub fn new(positions: usize, head_dim: usize, base: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for pos in 0..positions {
            for i in 0..half {
                let angle = pos as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let table = |v: Vec<f64>| Tensor::from_data(TensorData::new(v, [positions, half]), device);
        Self {
            cos: table(cos),
            sin: table(sin),
        }
    }

    /// Rotates `x` by the angles of positions `offset..offset + seq`.
    ///
    /// # Shapes
    /// - x: `[batch, heads, seq, head_dim]` -> same
    pub fn apply(&self, x: Tensor<B, 4>, offset: usize) -> Tensor<B, 4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        let dtype = x.dtype();
        let table = |t_: &Tensor<B, 2>| {
            let part = t_.clone().narrow(0, offset, t).reshape([1, 1, t, half]);
            if part.dtype() == dtype {
                part
            } else {
                part.cast(dtype)
            }
        };
        let (cos, sin) = (table(&self.cos), table(&self.sin));
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
        let r2 = x1 * sin + x2 * cos;
        Tensor::cat(vec![r1, r2], 3).reshape([b, h, t, d])
    }
}

/// What attention needs to know about positions, built once per model.
#[derive(Module, Debug)]
pub struct Positions<B: Backend> {
    /// `0..max_seq_len`, `[max_seq_len]` (a constant, like [`Rope`]'s tables).
    index: Tensor<B, 1, Int>,
    /// The RoPE tables (None with learned positions).
    rope: Option<Rope<B>>,
}

impl<B: Backend> Positions<B> {
    /// The tables of `config`'s model on `device`.
    pub(crate) fn new(config: &TransformerConfig, device: &B::Device) -> Self {
        let n = config.max_seq_len;
        let index = (0..n as i64).collect::<Vec<_>>();
        Self {
            index: Tensor::from_data(TensorData::new(index, [n]), device),
            rope: match config.position {
                Position::Rope { base } => Some(Rope::new(n, config.head_dim(), base, device)),
                Position::Learned => None,
            },
        }
    }

    /// `true` where query `i` (at position `offset + i`) must not see key `j` (`j > offset + i`):
    /// the future, and the not yet written slots of a KV cache.
    ///
    /// # Shapes
    /// - -> `[queries, keys]`
    pub(crate) fn causal_mask(
        &self,
        queries: usize,
        keys: usize,
        offset: usize,
    ) -> Tensor<B, 2, Bool> {
        let k = self.index.clone().narrow(0, 0, keys).reshape([1, keys]);
        let q = self
            .index
            .clone()
            .narrow(0, offset, queries)
            .reshape([queries, 1]);
        k.expand([queries, keys]).greater(q.expand([queries, keys]))
    }
}

/// Grouped-query causal self-attention.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `d_model -> d_attn`.
    pub q: SelfGuided<B>,
    /// `d_model -> kv_dim`.
    pub k: SelfGuided<B>,
    /// `d_model -> kv_dim`.
    pub v: SelfGuided<B>,
    /// `d_attn -> d_model`.
    pub o: SelfGuided<B>,
    /// Dropout on the attention probabilities (training only).
    dropout: Dropout,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> Attention<B> {
    pub(crate) fn new(
        config: &TransformerConfig,
        layer: usize,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            q: linear(config, layer, Place::Q, device)?,
            k: linear(config, layer, Place::K, device)?,
            v: linear(config, layer, Place::V, device)?,
            o: linear(config, layer, Place::O, device)?,
            dropout: DropoutConfig::new(config.attn_dropout).init(),
            n_heads: config.n_heads,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim(),
        })
    }

    /// Attention of `x` (positions `offset..`) over the cache's keys plus its own; writes its
    /// keys and values into `cache` when one is given.
    ///
    /// With a cache, one query token attends over the cache's whole capacity (the slots not yet
    /// written are masked), so every decoding step has the same shapes; a prefill attends over
    /// the positions written so far.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]` -> `[batch, seq, d_model]`
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        positions: &Positions<B>,
        offset: usize,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, kvh, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let q = self
            .q
            .forward(x.clone())
            .reshape([b, t, h, hd])
            .swap_dims(1, 2);
        let k = self
            .k
            .forward(x.clone())
            .reshape([b, t, kvh, hd])
            .swap_dims(1, 2);
        let v = self.v.forward(x).reshape([b, t, kvh, hd]).swap_dims(1, 2);
        let (q, k) = match &positions.rope {
            Some(rope) => (rope.apply(q, offset), rope.apply(k, offset)),
            None => (q, k),
        };
        let (k, v) = match cache {
            Some(cache) => cache.write(k, v, offset, t == 1),
            None => (k, v),
        };
        let s = k.dims()[2];
        // Grouped-query attention: each kv head serves n_heads / n_kv_heads query heads.
        let group = h / kvh;
        let expand = |x: Tensor<B, 4>| {
            if group == 1 {
                x
            } else {
                x.unsqueeze_dim::<5>(2)
                    .expand([b, kvh, group, s, hd])
                    .reshape([b, h, s, hd])
            }
        };
        let (k, v) = (expand(k), expand(v));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt());
        // Half-precision scores are normalised in f32 (as PyTorch's autocast does).
        let dtype = scores.dtype();
        let half = matches!(dtype, DType::F16 | DType::BF16);
        let scores = if half {
            scores.cast(DType::F32)
        } else {
            scores
        };
        // One query that sees every key (no cache, or a full one) needs no mask.
        let scores = if t == 1 && s == offset + 1 {
            scores
        } else {
            let mask = positions
                .causal_mask(t, s, offset)
                .reshape([1, 1, t, s])
                .expand([b, h, t, s]);
            scores.mask_fill(mask, f32::NEG_INFINITY)
        };
        let weights = self.dropout.forward(softmax(scores, 3));
        let weights = if half { weights.cast(dtype) } else { weights };
        let out = weights.matmul(v).swap_dims(1, 2).reshape([b, t, h * hd]);
        self.o.forward(out)
    }
}
