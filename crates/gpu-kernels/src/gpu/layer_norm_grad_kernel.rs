//! The layer-norm backward kernels: `dx` one cube per row, `dgamma` and `dbeta` one unit per
//! column.
//!
//! With `x̂ = (x - mean) rstd` and `g = dy gamma` (the closed form burn-autodiff's patched
//! layer-norm node uses):
//! `dx = rstd (g - mean(g) - x̂ mean(g x̂))`, `dgamma = Σ_rows dy x̂`, `dbeta = Σ_rows dy`.

use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;
use cubecl::server::CubeCountSelection;

use super::layer_norm_kernel::{block_sum, cube_width, row_mean, row_rstd};

/// Row `CUBE_POS`: its `dx`, and its mean and `rstd` in `stats[2 row]`, `stats[2 row + 1]`.
#[cube(launch)]
fn layer_norm_dx_kernel<F: Float>(
    x: &Tensor<F>,
    gamma: &Tensor<F>,
    dy: &Tensor<F>,
    dx: &mut Tensor<F>,
    stats: &mut Tensor<f32>,
    rows: u32,
    d: u32,
    eps: f32,
    #[comptime] block: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let d = d as usize;
    let start = row * d;
    let t = UNIT_POS as usize;
    let step = CUBE_DIM as usize;
    let mut sm = SharedMemory::<f32>::new(block);
    let mean = row_mean::<F>(x, start, d, &mut sm);
    let rstd = row_rstd::<F>(x, start, d, mean, eps, &mut sm);

    // mean(g) and mean(g x̂), one after the other through the same shared memory.
    let mut s1 = 0.0f32;
    let mut s2 = 0.0f32;
    let mut i = t;
    while i < d {
        let g = f32::cast_from(dy[start + i]) * f32::cast_from(gamma[i]);
        s1 += g;
        s2 += g * (f32::cast_from(x[start + i]) - mean) * rstd;
        i += step;
    }
    sync_cube();
    sm[t] = s1;
    let mean_g = block_sum(&mut sm) / d as f32;
    sync_cube();
    sm[t] = s2;
    let mean_gx = block_sum(&mut sm) / d as f32;

    let mut k = t;
    while k < d {
        let g = f32::cast_from(dy[start + k]) * f32::cast_from(gamma[k]);
        let x_hat = (f32::cast_from(x[start + k]) - mean) * rstd;
        dx[start + k] = F::cast_from(rstd * (g - mean_g - x_hat * mean_gx));
        k += step;
    }
    if t == 0 {
        stats[2 * row] = mean;
        stats[2 * row + 1] = rstd;
    }
}

/// Column `ABSOLUTE_POS`: `dgamma` and `dbeta`, summed over the rows in order.
#[cube(launch)]
fn layer_norm_dparams_kernel<F: Float>(
    x: &Tensor<F>,
    dy: &Tensor<F>,
    stats: &Tensor<f32>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    rows: u32,
    d: u32,
    #[comptime] has_beta: bool,
    #[define(F)] _dtype: StorageType,
) {
    let j = ABSOLUTE_POS;
    let d = d as usize;
    if j >= d {
        terminate!();
    }
    let mut sg = 0.0f32;
    let mut sb = 0.0f32;
    for r in 0..rows as usize {
        let g = f32::cast_from(dy[r * d + j]);
        let x_hat = (f32::cast_from(x[r * d + j]) - stats[2 * r]) * stats[2 * r + 1];
        sg += g * x_hat;
        sb += g;
    }
    dgamma[j] = F::cast_from(sg);
    if comptime![has_beta] {
        dbeta[j] = F::cast_from(sb);
    }
}

/// `(dx, dgamma, dbeta)` of a layer norm of `x` (last dimension normalised) with scale `gamma`,
/// given the output's gradient `dy`; `dbeta` only when `has_beta`.
pub(super) fn launch_backward<R: CubeRuntime>(
    x: CubeTensor<R>,
    gamma: CubeTensor<R>,
    dy: CubeTensor<R>,
    eps: f64,
    has_beta: bool,
) -> (CubeTensor<R>, CubeTensor<R>, Option<CubeTensor<R>>) {
    let (x, gamma, dy) = (
        into_contiguous(x),
        into_contiguous(gamma),
        into_contiguous(dy),
    );
    let shape = x.meta.shape().clone();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
    let new = |shape: Shape, dtype: DType| {
        empty_device_dtype::<R>(client.clone(), device.clone(), shape, dtype)
    };
    let dx = new(shape, dtype);
    let stats = new(Shape::new([2 * rows]), DType::F32);
    let dgamma = new(Shape::new([d]), dtype);
    let dbeta = new(Shape::new([d]), dtype);
    let block = cube_width(&client, d);
    layer_norm_dx_kernel::launch::<R>(
        &client,
        CubeCountSelection::new(&client, rows as u32).cube_count(),
        CubeDim::new_1d(block),
        x.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        stats.clone().into_tensor_arg(),
        rows as u32,
        d as u32,
        eps as f32,
        block as usize,
        dtype.into(),
    );
    let width = cube_width(&client, d);
    layer_norm_dparams_kernel::launch::<R>(
        &client,
        CubeCountSelection::new(&client, (d as u32).div_ceil(width)).cube_count(),
        CubeDim::new_1d(width),
        x.into_tensor_arg(),
        dy.into_tensor_arg(),
        stats.into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        rows as u32,
        d as u32,
        has_beta,
        dtype.into(),
    );
    (dx, dgamma, has_beta.then_some(dbeta))
}
