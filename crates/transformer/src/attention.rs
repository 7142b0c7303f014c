//! Grouped-query causal self-attention and the position tables it needs.
//!
//! Nothing here is computed on the host per call: the RoPE cos/sin tables and the position
//! indices are built once per model (uploaded at init, then moved with the model like its
//! parameters) and narrowed per call; the causal mask is a comparison of position indices on the
//! device, turned into an additive bias once per forward pass and shared by its layers
//! ([`PassPositions`]). With a KV cache the keys and values are written in place into a buffer of fixed
//! capacity ([`crate::KvCache`]), so every decoding step runs the same kernels on the same shapes.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};
use std::cell::RefCell;

use crate::cache::LayerCache;
use crate::config::{Place, Position, TransformerConfig};
use crate::error::ModelError;
use crate::place::linear;
use structured_linear::SelfGuided;

/// RoPE rotation tables: angle `pos * base^(-2i / head_dim)` for every position below
/// `max_seq_len` and pair `i < head_dim / 2` (half-split pairs `(i, i + head_dim / 2)`).
///
/// Constants of the model (not parameters: never trained, never saved), in the device's default
/// float type; computed in f64 on the host once, at init. The tables are full width (each pair's
/// angle at `i` and `i + head_dim / 2`) and the "rotate half" is a product with a signed
/// permutation matrix, so that applying RoPE is contiguous work (a small matmul, two products
/// and a sum) with no strided halves and no concatenation; the result is bit for bit that of
/// `(x1 cos - x2 sin, x2 cos + x1 sin)`, the permutation's products being exact.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// `cos(angle)`, `[max_seq_len, head_dim]`.
    cos: Tensor<B, 2>,
    /// `sin(angle)`, `[max_seq_len, head_dim]`.
    sin: Tensor<B, 2>,
    /// `[head_dim, head_dim]`: `x R = (-x2, x1)` for `x = (x1, x2)`.
    rotate: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// The tables for `positions` positions of heads of `head_dim`, frequency base `base`.
    pub fn new(positions: usize, head_dim: usize, base: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * head_dim);
        let mut sin = Vec::with_capacity(positions * head_dim);
        for pos in 0..positions {
            for i in 0..head_dim {
                let pair = i % half;
                let angle = pos as f64 * base.powf(-2.0 * pair as f64 / head_dim as f64);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let mut rotate = vec![0.0f64; head_dim * head_dim];
        for i in 0..half {
            rotate[(i + half) * head_dim + i] = -1.0; // out[i] = -x[i + half]
            rotate[i * head_dim + i + half] = 1.0; // out[i + half] = x[i]
        }
        let table = |v: Vec<f64>, rows: usize| {
            Tensor::from_data(TensorData::new(v, [rows, head_dim]), device)
        };
        Self {
            cos: table(cos, positions),
            sin: table(sin, positions),
            rotate: table(rotate, head_dim),
        }
    }

    /// Rotates `x` by the angles of positions `offset..offset + seq`.
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads, head_dim]` -> same
    pub fn apply(&self, x: Tensor<B, 4>, offset: usize) -> Tensor<B, 4> {
        let [_, t, h, _] = x.dims();
        let tables = self.tables(offset, t, h, x.dtype());
        self.rotate(x, &tables)
    }

    /// The cosine and sine rows of positions `offset..offset + seq` for `heads` heads in
    /// `dtype`, each `[1, seq * heads * head_dim]`: the tables as one row shared by every batch
    /// row, so the products broadcast one row (the CPU backend's vectorised path) rather than
    /// walking a 4-d broadcast element by element.
    fn tables(&self, offset: usize, t: usize, h: usize, dtype: DType) -> RopeRows<B> {
        let d = self.cos.dims()[1];
        let row = |table: &Tensor<B, 2>| {
            let table = table.clone().narrow(0, offset, t);
            let table = if table.dtype() == dtype {
                table
            } else {
                table.cast(dtype)
            };
            table
                .reshape([t, 1, d])
                .repeat_dim(1, h)
                .reshape([1, t * h * d])
        };
        (row(&self.cos), row(&self.sin))
    }

    /// `x` rotated with rows from [`Rope::tables`] of its positions and heads.
    fn rotate(&self, x: Tensor<B, 4>, (cos, sin): &RopeRows<B>) -> Tensor<B, 4> {
        let [b, t, h, d] = x.dims();
        let row = t * h * d;
        let rotate = if self.rotate.dtype() == x.dtype() {
            self.rotate.clone()
        } else {
            self.rotate.clone().cast(x.dtype())
        };
        let rotated = x
            .clone()
            .reshape([b * t * h, d])
            .matmul(rotate)
            .reshape([b, row]);
        (x.reshape([b, row]) * cos.clone() + rotated * sin.clone()).reshape([b, t, h, d])
    }
}

/// A [`Rope`]'s cosine and sine rows for the positions and heads of one call.
type RopeRows<B> = (Tensor<B, 2>, Tensor<B, 2>);

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

/// The positions of one forward pass, shared by its layers: the model's tables, the position of
/// the first token, and the causal bias, built by the first layer that needs it (every layer of
/// a pass has the same queries and keys), so the mask's few kernels run once per pass rather
/// than once per layer.
pub(crate) struct PassPositions<'a, B: Backend> {
    pub tables: &'a Positions<B>,
    /// Position of the pass's first token.
    pub offset: usize,
    /// The bias built so far, with the (queries, keys, dtype) it was built for.
    bias: RefCell<Option<(BiasKey, Tensor<B, 2>)>>,
    /// The RoPE rows built so far, by (tokens, heads, dtype): queries' and keys' heads.
    rope: RefCell<Vec<(RopeKey, RopeRows<B>)>>,
}

/// What a pass's RoPE rows depend on: tokens, heads and the dtype.
type RopeKey = (usize, usize, DType);

/// What a causal bias depends on within one pass: queries, keys and the scores' dtype.
type BiasKey = (usize, usize, DType);

impl<'a, B: Backend> PassPositions<'a, B> {
    pub(crate) fn new(tables: &'a Positions<B>, offset: usize) -> Self {
        Self {
            tables,
            offset,
            bias: RefCell::new(None),
            rope: RefCell::new(Vec::new()),
        }
    }

    /// `x` (positions `offset..`) rotated by the model's RoPE, or as it is with learned
    /// positions; the tables' rows are built once per pass for each head count and dtype.
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads, head_dim]` -> same
    fn rope(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let Some(rope) = &self.tables.rope else {
            return x;
        };
        let [_, t, h, _] = x.dims();
        let key = (t, h, x.dtype());
        let mut memo = self.rope.borrow_mut();
        let rows = match memo.iter().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.clone(),
            None => {
                let rows = rope.tables(self.offset, t, h, key.2);
                memo.push((key, rows.clone()));
                rows
            }
        };
        rope.rotate(x, &rows)
    }

    /// 0 where query `i` may see key `j`, -inf where [`Positions::causal_mask`] hides it, in
    /// `dtype`.
    ///
    /// # Shapes
    /// - -> `[queries, keys]`
    fn causal_bias(&self, queries: usize, keys: usize, dtype: DType) -> Tensor<B, 2> {
        let key = (queries, keys, dtype);
        let mut memo = self.bias.borrow_mut();
        if let Some((k, bias)) = memo.as_ref() {
            if *k == key {
                return bias.clone();
            }
        }
        let mask = self.tables.causal_mask(queries, keys, self.offset);
        let bias = Tensor::<B, 2>::zeros([queries, keys], &mask.device())
            .mask_fill(mask, f32::NEG_INFINITY)
            .cast(dtype);
        *memo = Some((key, bias.clone()));
        bias
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
        positions: &PassPositions<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let offset = positions.offset;
        let [b, t, _] = x.dims();
        let (h, kvh, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        // RoPE on the projections' own (contiguous) layout, then heads first.
        let q = self.q.forward(x.clone()).reshape([b, t, h, hd]);
        let k = self.k.forward(x.clone()).reshape([b, t, kvh, hd]);
        let (q, k) = (positions.rope(q), positions.rope(k));
        let (q, k) = (heads_first(q), heads_first(k));
        let v = heads_first(self.v.forward(x).reshape([b, t, kvh, hd]));
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
            // An additive bias (0, or -inf where masked) shared by every batch row and head (one
            // broadcast row): the same scores and gradients as filling the masked ones, without
            // expanding a mask.
            let bias = positions.causal_bias(t, s, scores.dtype());
            (scores.reshape([b * h, t * s]) + bias.reshape([1, t * s])).reshape([b, h, t, s])
        };
        let weights = self.dropout.forward(softmax(scores, 3));
        let weights = if half { weights.cast(dtype) } else { weights };
        let out = heads_first(weights.matmul(v)).reshape([b, t, h * hd]);
        self.o.forward(out)
    }
}

/// `[a, b, c, d]` -> `[a, c, b, d]` (tokens and heads swapped, either way). With one token (a
/// decoding step) the layout in memory is the same, so it is a reshape, not a copy.
fn heads_first<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [a, b, c, d] = x.dims();
    if b == 1 || c == 1 {
        x.reshape([a, c, b, d])
    } else {
        x.swap_dims(1, 2)
    }
}
