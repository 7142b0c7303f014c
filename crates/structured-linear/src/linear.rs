//! [`StructuredLinear`]: one swappable layer type over the four structures, with initialisation,
//! pre-merge and factorisation of a dense matrix.

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Distribution, Tensor};
use faer::Mat;

use crate::config::block_shuffle_inner;
use crate::config::{Init, Structure, StructuredLinearConfig};
use crate::error::LayerError;
use crate::layers::{BlockDense, BlockShuffle, Dense, LowRank};
use crate::linalg::{nearest_orthogonal, to_host, to_tensor, truncated_factors};

/// A linear layer `d_in -> d_out` whose weight is one of the structures of docs/reference.md §1.
///
/// Build it with [`StructuredLinearConfig::init`] or [`StructuredLinear::factorize`].
#[derive(Module, Debug)]
pub enum StructuredLinear<B: Backend> {
    /// One dense matrix.
    Dense(Dense<B>),
    /// `U V`.
    LowRank(LowRank<B>),
    /// `U blockdiag(V)`.
    BlockDense(BlockDense<B>),
    /// Monarch-style block shuffle.
    BlockShuffle(BlockShuffle<B>),
}

impl StructuredLinearConfig {
    /// Validates the configuration and builds the layer with its initialisation scheme; biases
    /// start at zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<StructuredLinear<B>, LayerError> {
        self.validate()?;
        let (d_in, d_out, init) = (self.d_in, self.d_out, self.init);
        let bias = self
            .bias
            .then(|| Param::from_tensor(Tensor::zeros([d_out], device)));
        let layer = match self.structure {
            Structure::Dense => StructuredLinear::Dense(Dense {
                weight: param(factor([d_in, d_out], init, device)?),
                bias,
            }),
            Structure::LowRank { rank } => {
                let (v, u) = match init {
                    Init::Svd { std } => {
                        let dense = Tensor::<B, 2>::random(
                            [d_in, d_out],
                            Distribution::Normal(0.0, std),
                            device,
                        );
                        let (v, u) = truncated_factors(&to_host(dense)?, rank)?;
                        (to_tensor(&v, device), to_tensor(&u, device))
                    }
                    _ => (
                        factor([d_in, rank], init, device)?,
                        factor([rank, d_out], init, device)?,
                    ),
                };
                StructuredLinear::LowRank(LowRank {
                    v: param(v),
                    u: param(u),
                    inner_bias: self
                        .inner_bias
                        .then(|| Param::from_tensor(Tensor::zeros([rank], device))),
                    bias,
                })
            }
            Structure::BlockDense { n_blocks, rank } => StructuredLinear::BlockDense(BlockDense {
                v: param(blocks(
                    [n_blocks, d_in / n_blocks, rank / n_blocks],
                    init,
                    device,
                )?),
                u: param(factor([rank, d_out], init, device)?),
                bias,
            }),
            Structure::BlockShuffle { n_blocks } => {
                let q = block_shuffle_inner(d_in, d_out, n_blocks);
                StructuredLinear::BlockShuffle(BlockShuffle {
                    b1: param(blocks([n_blocks, d_in / n_blocks, q], init, device)?),
                    b2: param(blocks([n_blocks, q, d_out / n_blocks], init, device)?),
                    bias,
                })
            }
        };
        Ok(layer)
    }
}

fn param<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::from_tensor(tensor)
}

/// Standard deviation of a factor whose input size is `fan_in`.
fn init_std(init: Init, fan_in: usize) -> f64 {
    match init {
        Init::Normal { std } | Init::Svd { std } | Init::Orthogonal { std } => std,
        Init::FanIn => 1.0 / (fan_in as f64).sqrt(),
    }
}

/// A dense factor `[n, m]` (input size `n`).
fn factor<B: Backend>(
    shape: [usize; 2],
    init: Init,
    device: &B::Device,
) -> Result<Tensor<B, 2>, LayerError> {
    let std = init_std(init, shape[0]);
    let sample = Tensor::random(shape, Distribution::Normal(0.0, std), device);
    match init {
        Init::Orthogonal { .. } => Ok(to_tensor(&nearest_orthogonal(&to_host(sample)?)?, device)),
        _ => Ok(sample),
    }
}

/// A block-diagonal factor `[b, n, m]` (each block's input size `n`).
fn blocks<B: Backend>(
    shape: [usize; 3],
    init: Init,
    device: &B::Device,
) -> Result<Tensor<B, 3>, LayerError> {
    let [b, n, m] = shape;
    let std = init_std(init, n);
    let sample = Tensor::random(shape, Distribution::Normal(0.0, std), device);
    match init {
        Init::Orthogonal { .. } => {
            let mut out = Vec::with_capacity(b);
            for block in sample.chunk(b, 0) {
                let host = to_host(block.reshape([n, m]))?;
                out.push(to_tensor::<B>(&nearest_orthogonal(&host)?, device));
            }
            Ok(Tensor::stack(out, 0))
        }
        _ => Ok(sample),
    }
}

/// Flattens all leading dimensions: `[..., d] -> [n, d]`.
pub(crate) fn flatten_tokens<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> (Tensor<B, 2>, [usize; D]) {
    let dims = x.dims();
    let n = dims[..D - 1].iter().product();
    (x.reshape([n, dims[D - 1]]), dims)
}

impl<B: Backend> StructuredLinear<B> {
    /// Applies the layer, bias included.
    ///
    /// # Shapes
    /// - x: `[..., d_in]` -> `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        // The bias is added to the tokens flattened to one axis: its gradient is then one
        // reduction over that axis, not one per leading axis.
        let (x2, mut dims) = flatten_tokens(x);
        let y = self.product(x2);
        let y = match self.bias() {
            Some(bias) => y + bias.unsqueeze::<2>(),
            None => y,
        };
        dims[D - 1] = self.d_out();
        y.reshape(dims)
    }

    /// Applies the weight only, without the bias.
    ///
    /// # Shapes
    /// - x: `[..., d_in]` -> `[..., d_out]`
    pub fn forward_no_bias<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let (x2, mut dims) = flatten_tokens(x);
        let y = self.product(x2);
        dims[D - 1] = self.d_out();
        y.reshape(dims)
    }

    /// The weight's product with tokens already flattened to one axis (no bias).
    ///
    /// # Shapes
    /// - x: `[n, d_in]` -> `[n, d_out]`
    pub(crate) fn product(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            StructuredLinear::Dense(l) => l.product(x),
            StructuredLinear::LowRank(l) => l.product(x),
            StructuredLinear::BlockDense(l) => l.product(x),
            StructuredLinear::BlockShuffle(l) => l.product(x),
        }
    }

    /// The exact dense matrix of the weight ("pre-merge"), `[d_in, d_out]`: `forward(x)` equals
    /// `x W + bias`. Differentiable with respect to the factors.
    pub fn merged_weight(&self) -> Tensor<B, 2> {
        match self {
            StructuredLinear::Dense(l) => l.merged(),
            StructuredLinear::LowRank(l) => l.merged(),
            StructuredLinear::BlockDense(l) => l.merged(),
            StructuredLinear::BlockShuffle(l) => l.merged(),
        }
    }

    /// An equivalent Dense layer (merged weight, same bias), detached from this layer's graph.
    pub fn to_dense(&self) -> StructuredLinear<B> {
        StructuredLinear::Dense(Dense {
            weight: Param::from_tensor(self.merged_weight().detach()),
            bias: self.bias().map(|b| Param::from_tensor(b.detach())),
        })
    }

    /// The effective output bias `[d_out]`, if any: the bias, plus `c U` for a LowRank inner
    /// bias `c`. `forward(x) = x merged_weight() + bias()`.
    pub fn bias(&self) -> Option<Tensor<B, 1>> {
        match (self.outer_bias(), self.inner_bias_out()) {
            (Some(b), Some(c)) => Some(b + c),
            (b, c) => b.or(c),
        }
    }

    /// The output bias `[d_out]` alone (without a LowRank inner bias).
    pub fn outer_bias(&self) -> Option<Tensor<B, 1>> {
        let bias = match self {
            StructuredLinear::Dense(l) => &l.bias,
            StructuredLinear::LowRank(l) => &l.bias,
            StructuredLinear::BlockDense(l) => &l.bias,
            StructuredLinear::BlockShuffle(l) => &l.bias,
        };
        bias.as_ref().map(|b| b.val())
    }

    /// A LowRank inner bias `c` carried to the output, `c U` `[d_out]` (None otherwise): part
    /// of the structured product, not of the output bias.
    pub fn inner_bias_out(&self) -> Option<Tensor<B, 1>> {
        match self {
            StructuredLinear::LowRank(LowRank {
                inner_bias: Some(c),
                u,
                ..
            }) => Some(
                c.val()
                    .unsqueeze::<2>()
                    .matmul(u.val())
                    .reshape([self.d_out()]),
            ),
            _ => None,
        }
    }

    /// Number of weight parameters (biases excluded).
    pub fn weight_params(&self) -> u64 {
        let n = |dims: &[usize]| dims.iter().product::<usize>() as u64;
        match self {
            StructuredLinear::Dense(l) => n(&l.weight.dims()),
            StructuredLinear::LowRank(l) => n(&l.v.dims()) + n(&l.u.dims()),
            StructuredLinear::BlockDense(l) => n(&l.v.dims()) + n(&l.u.dims()),
            StructuredLinear::BlockShuffle(l) => n(&l.b1.dims()) + n(&l.b2.dims()),
        }
    }

    /// Input features.
    pub fn d_in(&self) -> usize {
        match self {
            StructuredLinear::Dense(l) => l.weight.dims()[0],
            StructuredLinear::LowRank(l) => l.v.dims()[0],
            StructuredLinear::BlockDense(l) => {
                let [b, p, _] = l.v.dims();
                b * p
            }
            StructuredLinear::BlockShuffle(l) => {
                let [b, p, _] = l.b1.dims();
                b * p
            }
        }
    }

    /// Output features.
    pub fn d_out(&self) -> usize {
        match self {
            StructuredLinear::Dense(l) => l.weight.dims()[1],
            StructuredLinear::LowRank(l) => l.u.dims()[1],
            StructuredLinear::BlockDense(l) => l.u.dims()[1],
            StructuredLinear::BlockShuffle(l) => {
                let [b, _, s] = l.b2.dims();
                b * s
            }
        }
    }

    /// The structure, read from the weights' shapes.
    pub fn structure(&self) -> Structure {
        match self {
            StructuredLinear::Dense(_) => Structure::Dense,
            StructuredLinear::LowRank(l) => Structure::LowRank {
                rank: l.u.dims()[0],
            },
            StructuredLinear::BlockDense(l) => Structure::BlockDense {
                n_blocks: l.v.dims()[0],
                rank: l.u.dims()[0],
            },
            StructuredLinear::BlockShuffle(l) => Structure::BlockShuffle {
                n_blocks: l.b1.dims()[0],
            },
        }
    }

    /// Builds a layer of `config`'s structure from a dense matrix `weight` (`[d_in, d_out]`) and
    /// an optional bias, projecting onto the structure (`config.init` is ignored):
    ///
    /// - Dense: the matrix itself.
    /// - LowRank: truncated SVD, the best rank-r approximation in Frobenius norm.
    /// - BlockDense: row block `i` of `blockdiag(V) U` is `V_i U_i` with its own factors, so a
    ///   rank-`r/b` truncated SVD of each row block of `weight` is the optimal projection.
    /// - BlockShuffle: entry `(i*p + u, t*b + c)` of the merged matrix only involves `B1[i]`'s
    ///   columns `j` with `(i*q + j) % b == c` and the matching rows `(i*q + j) / b` of `B2[c]`,
    ///   and these sets are disjoint across the `(i, c)` pairs; so a truncated SVD of each
    ///   `[p, s]` sub-matrix `(i, c)` at that rank is the optimal projection (Dao et al.'s Monarch
    ///   projection in this layout).
    pub fn factorize(
        config: &StructuredLinearConfig,
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    ) -> Result<Self, LayerError> {
        config.validate()?;
        let (d_in, d_out) = (config.d_in, config.d_out);
        let [rows, cols] = weight.dims();
        if [rows, cols] != [d_in, d_out] {
            return Err(LayerError::ShapeMismatch {
                rows,
                cols,
                d_in,
                d_out,
            });
        }
        if bias.is_some() != config.bias {
            return Err(LayerError::BiasPresence {
                given: bias.is_some(),
                configured: config.bias,
            });
        }
        if let Some(b) = &bias {
            if b.dims()[0] != d_out {
                return Err(LayerError::BiasMismatch {
                    len: b.dims()[0],
                    d_out,
                });
            }
        }
        let device = weight.device();
        let bias = bias.map(Param::from_tensor);
        let layer = match config.structure {
            Structure::Dense => StructuredLinear::Dense(Dense {
                weight: param(weight),
                bias,
            }),
            Structure::LowRank { rank } => {
                let (v, u) = truncated_factors(&to_host(weight)?, rank)?;
                StructuredLinear::LowRank(LowRank {
                    v: param(to_tensor(&v, &device)),
                    u: param(to_tensor(&u, &device)),
                    inner_bias: config
                        .inner_bias
                        .then(|| Param::from_tensor(Tensor::zeros([rank], &device))),
                    bias,
                })
            }
            Structure::BlockDense { n_blocks, rank } => {
                let w = to_host(weight)?;
                let (p, rb) = (d_in / n_blocks, rank / n_blocks);
                let mut v_blocks = Vec::with_capacity(n_blocks);
                let mut u = Mat::<f64>::zeros(rank, d_out);
                for i in 0..n_blocks {
                    let rows = w.subrows(i * p, p).to_owned();
                    let (vi, ui) = truncated_factors(&rows, rb)?;
                    v_blocks.push(to_tensor::<B>(&vi, &device));
                    u.subrows_mut(i * rb, rb).copy_from(&ui);
                }
                StructuredLinear::BlockDense(BlockDense {
                    v: param(Tensor::stack(v_blocks, 0)),
                    u: param(to_tensor(&u, &device)),
                    bias,
                })
            }
            Structure::BlockShuffle { n_blocks: b } => {
                let (b1, b2) = blockshuffle_projection(&to_host(weight)?, b)?;
                let stack = |mats: &[Mat<f64>]| {
                    Tensor::stack(mats.iter().map(|m| to_tensor::<B>(m, &device)).collect(), 0)
                };
                StructuredLinear::BlockShuffle(BlockShuffle {
                    b1: param(stack(&b1)),
                    b2: param(stack(&b2)),
                    bias,
                })
            }
        };
        Ok(layer)
    }
}

/// The blocks of BlockShuffle's two factors, on the host.
type BlockFactors = (Vec<Mat<f64>>, Vec<Mat<f64>>);

/// The optimal BlockShuffle factors `(B1 blocks [p, q], B2 blocks [q, s])` of a dense `[d_in,
/// d_out]` matrix with `b` blocks (see [`StructuredLinear::factorize`]): each `(i, c)`
/// sub-matrix gets a truncated SVD at the rank its disjoint index set allows.
fn blockshuffle_projection(w: &Mat<f64>, b: usize) -> Result<BlockFactors, LayerError> {
    let (d_in, d_out) = (w.nrows(), w.ncols());
    let q = block_shuffle_inner(d_in, d_out, b);
    let (p, s) = (d_in / b, d_out / b);
    let mut b1: Vec<Mat<f64>> = (0..b).map(|_| Mat::zeros(p, q)).collect();
    let mut b2: Vec<Mat<f64>> = (0..b).map(|_| Mat::zeros(q, s)).collect();
    for i in 0..b {
        for c in 0..b {
            let js: Vec<usize> = (0..q).filter(|j| (i * q + j) % b == c).collect();
            if js.is_empty() {
                continue;
            }
            let sub = Mat::from_fn(p, s, |u, t| w[(i * p + u, t * b + c)]);
            let (left, right) = truncated_factors(&sub, js.len())?;
            for (k, &j) in js.iter().enumerate() {
                let m = (i * q + j) / b;
                for u in 0..p {
                    b1[i][(u, j)] = left[(u, k)];
                }
                for t in 0..s {
                    b2[c][(m, t)] = right[(k, t)];
                }
            }
        }
    }
    Ok((b1, b2))
}
