//! The four weight structures as burn modules, each with its product and its merged dense matrix.
//!
//! Every weight is stored input-major, like burn's `Linear` (`y = x W`): a dense factor mapping
//! `n -> m` features is `[n, m]`, a block-diagonal factor with `b` blocks each mapping `n -> m`
//! is `[b, n, m]`. (PyTorch and docs/reference.md write the transposes, `[out, in]`.)

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};

/// One dense matrix: `y = x W`.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    /// `[d_in, d_out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

/// Low rank: `y = (x V + c) U`, the inner bias `c` optional.
#[derive(Module, Debug)]
pub struct LowRank<B: Backend> {
    /// First factor `V`, `[d_in, rank]`.
    pub v: Param<Tensor<B, 2>>,
    /// Second factor `U`, `[rank, d_out]`.
    pub u: Param<Tensor<B, 2>>,
    /// Optional inner bias `c`, `[rank]`, added between the factors. Because the layer is
    /// linear it folds into the output: `(x V + c) U = x V U + c U`.
    pub inner_bias: Option<Param<Tensor<B, 1>>>,
    /// `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

/// Block-diagonal then dense: `y = (x blockdiag(V_1..V_b)) U`.
#[derive(Module, Debug)]
pub struct BlockDense<B: Backend> {
    /// Diagonal blocks, `[n_blocks, d_in / n_blocks, rank / n_blocks]`; block `i` maps input chunk
    /// `i` to inner features `i * rank / n_blocks ..`.
    pub v: Param<Tensor<B, 3>>,
    /// Dense factor `U`, `[rank, d_out]`.
    pub u: Param<Tensor<B, 2>>,
    /// `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

/// Monarch-style block shuffle (docs/reference.md §1): block-diagonal `B1`, the fixed shuffle, block-diagonal
/// `B2`, and the output interleave, with `q = min(d_in, d_out) / n_blocks`.
#[derive(Module, Debug)]
pub struct BlockShuffle<B: Backend> {
    /// First factor, `[n_blocks, d_in / n_blocks, q]`: block `i` maps input chunk `i` to `y1[i*q ..]`.
    pub b1: Param<Tensor<B, 3>>,
    /// Second factor, `[n_blocks, q, d_out / n_blocks]`: block `c` maps `z_c` (every `n_blocks`-th
    /// element of `y1`, from `c`) to the outputs `t * n_blocks + c`.
    pub b2: Param<Tensor<B, 3>>,
    /// `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Dense<B> {
    /// # Shapes
    /// - x: `[n, d_in]` -> `[n, d_out]` (no bias).
    pub fn product(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.weight.val())
    }

    /// The weight itself, `[d_in, d_out]`.
    pub fn merged(&self) -> Tensor<B, 2> {
        self.weight.val()
    }
}

impl<B: Backend> LowRank<B> {
    /// # Shapes
    /// - x: `[n, d_in]` -> `[n, d_out]` (no bias).
    pub fn product(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.v.val()).matmul(self.u.val())
    }

    /// `V U`, `[d_in, d_out]`.
    pub fn merged(&self) -> Tensor<B, 2> {
        self.v.val().matmul(self.u.val())
    }
}

impl<B: Backend> BlockDense<B> {
    /// # Shapes
    /// - x: `[n, d_in]` -> `[n, d_out]` (no bias).
    pub fn product(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, p, rb] = self.v.dims();
        let n = x.dims()[0];
        let chunks = x.reshape([n, b, p]).swap_dims(0, 1); // [b, n, p]
        let inner = chunks.matmul(self.v.val()); // [b, n, rb]
        let inner = inner.swap_dims(0, 1).reshape([n, b * rb]); // [n, rank]
        inner.matmul(self.u.val())
    }

    /// `blockdiag(V) U`, `[d_in, d_out]`: row block `i` is `V_i U_i`, with `U_i` the `i`-th row
    /// block of `U`.
    pub fn merged(&self) -> Tensor<B, 2> {
        let [b, p, rb] = self.v.dims();
        let [_, d_out] = self.u.dims();
        let u = self.u.val().reshape([b, rb, d_out]);
        self.v.val().matmul(u).reshape([b * p, d_out])
    }
}

impl<B: Backend> BlockShuffle<B> {
    /// # Shapes
    /// - x: `[n, d_in]` -> `[n, d_out]` (no bias).
    pub fn product(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, p, _q] = self.b1.dims();
        let [_, _, s] = self.b2.dims();
        let n = x.dims()[0];
        let chunks = x.reshape([n, b, p]).swap_dims(0, 1); // [b, n, p]
        let y1 = chunks.matmul(self.b1.val()); // [b, n, q]: y1[i, n, j] is element i*q + j
        let z = shuffle(y1); // [b, n, q]: z[c, n, m] is element m*b + c
        let w = z.matmul(self.b2.val()); // [b, n, s]: w[c, n, t] is output t*b + c
        w.permute([1, 2, 0]).reshape([n, s * b])
    }

    /// The exact dense matrix, `[d_in, d_out]`: `blockdiag(B1)`, its columns put in shuffled
    /// order, times `blockdiag(B2)`, its columns interleaved.
    pub fn merged(&self) -> Tensor<B, 2> {
        let [b, p, q] = self.b1.dims();
        let [_, _, s] = self.b2.dims();
        let device = self.b1.device();
        let m1 = block_diag(self.b1.val()); // [d_in, b*q], column f = i*q + j
        let order: Vec<i64> = (0..b)
            .flat_map(|c| (0..q).map(move |m| (m * b + c) as i64))
            .collect();
        let order = Tensor::from_data(order.as_slice(), &device);
        let z = m1.select(1, order); // column c*q + m holds y1 element m*b + c
        let z = z.reshape([b * p, b, q]).swap_dims(0, 1); // [c, d_in, m]
        let w = z.matmul(self.b2.val()); // [c, d_in, t]
        w.permute([1, 2, 0]).reshape([b * p, s * b])
    }
}

/// BlockShuffle's shuffle between its two block products (docs/reference.md §1 step 2) on a
/// batch: `[b, n, q]` with `y[i, n, j]` = element `f = i*q + j` to `[b, n, q]` with
/// `z[c, n, m]` = element `f = m*b + c`. Public for benchmarks (`strata bench ops`).
pub fn shuffle<B: Backend>(y: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, n, q] = y.dims();
    if q.is_multiple_of(b) {
        // j = j1*b + c, so m = i*(q/b) + j1: one permutation, no intermediate copy.
        y.reshape([b, n, q / b, b])
            .permute([3, 1, 0, 2])
            .reshape([b, n, q])
    } else {
        y.swap_dims(0, 1).reshape([n, q, b]).permute([2, 0, 1])
    }
}

/// Block-diagonal matrix of `[b, p, q]` blocks, `[b*p, b*q]`.
pub(crate) fn block_diag<B: Backend>(blocks: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, p, q] = blocks.dims();
    let eye = Tensor::<B, 2>::eye(b, &blocks.device()).reshape([b, 1, b, 1]);
    (blocks.reshape([b, p, 1, q]) * eye).reshape([b * p, b * q])
}
