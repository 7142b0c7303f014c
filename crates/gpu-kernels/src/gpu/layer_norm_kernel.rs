//! The layer-norm kernel: one cube per row, f32 accumulation in shared memory.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;
use cubecl::server::CubeCountSelection;

/// The sum of `sm[0..CUBE_DIM]` (a power of two), left in `sm[0]` for every unit (a tree of
/// halvings, as cubek-reduce's shared-memory sum; no plane instructions, so every wgpu device
/// runs it).
#[cube]
pub(super) fn block_sum(sm: &mut SharedMemory<f32>) -> f32 {
    sync_cube();
    let mut active = CUBE_DIM;
    let mut jump = 1;
    while active > 1 {
        active /= 2;
        let dst = jump * 2 * UNIT_POS;
        let src = jump * (2 * UNIT_POS + 1);
        if UNIT_POS < active {
            let v = sm[src as usize];
            sm[dst as usize] += v;
        }
        jump *= 2;
        sync_cube();
    }
    sm[0]
}

/// The mean of `x[start..start + d]`, for every unit of the cube.
#[cube]
pub(super) fn row_mean<F: Float>(
    x: &Tensor<F>,
    start: usize,
    d: usize,
    sm: &mut SharedMemory<f32>,
) -> f32 {
    let t = UNIT_POS as usize;
    let mut s = 0.0f32;
    let mut i = t;
    while i < d {
        s += f32::cast_from(x[start + i]);
        i += CUBE_DIM as usize;
    }
    sm[t] = s;
    block_sum(sm) / d as f32
}

/// `1 / sqrt(var + eps)` of `x[start..start + d]` with its `mean` (biased variance, two passes:
/// no cancellation), for every unit of the cube.
#[cube]
pub(super) fn row_rstd<F: Float>(
    x: &Tensor<F>,
    start: usize,
    d: usize,
    mean: f32,
    eps: f32,
    sm: &mut SharedMemory<f32>,
) -> f32 {
    let t = UNIT_POS as usize;
    let mut s = 0.0f32;
    let mut i = t;
    while i < d {
        let c = f32::cast_from(x[start + i]) - mean;
        s += c * c;
        i += CUBE_DIM as usize;
    }
    // Every unit has read the last sum from `sm[0]` before it is overwritten.
    sync_cube();
    sm[t] = s;
    1.0f32 / f32::sqrt(block_sum(sm) / d as f32 + eps)
}

/// Row `CUBE_POS` of the contiguous `x` (rows of `d` elements): the normalised, scaled and
/// shifted row.
#[cube(launch)]
fn layer_norm_kernel<F: Float>(
    x: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    out: &mut Tensor<F>,
    rows: u32,
    d: u32,
    eps: f32,
    #[comptime] block: usize,
    #[comptime] has_beta: bool,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let d = d as usize;
    let start = row * d;
    let mut sm = SharedMemory::<f32>::new(block);
    let mean = row_mean::<F>(x, start, d, &mut sm);
    let rstd = row_rstd::<F>(x, start, d, mean, eps, &mut sm);
    let mut k = UNIT_POS as usize;
    while k < d {
        let mut y = (f32::cast_from(x[start + k]) - mean) * rstd * f32::cast_from(gamma[k]);
        if comptime![has_beta] {
            y += f32::cast_from(beta[k]);
        }
        out[start + k] = F::cast_from(y);
        k += CUBE_DIM as usize;
    }
}

/// Units per cube for rows of `d` elements: a power of two, 32 to 256, fewer for short rows,
/// within the device's limit.
pub(super) fn cube_width<R: CubeRuntime>(client: &ComputeClient<R>, d: usize) -> u32 {
    let max_units = client.properties().hardware.max_units_per_cube;
    (d.next_power_of_two().clamp(32, 256) as u32).min(1 << max_units.ilog2())
}

/// Launches the kernel over the rows of `x` (its last dimension normalised); `gamma` and
/// `beta` have `x`'s float type.
pub(super) fn launch<R: CubeRuntime>(
    x: CubeTensor<R>,
    gamma: CubeTensor<R>,
    beta: Option<CubeTensor<R>>,
    eps: f64,
) -> CubeTensor<R> {
    let x = into_contiguous(x);
    let shape = x.meta.shape().clone();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    let client = x.client.clone();
    let out = empty_device_dtype::<R>(client.clone(), x.device.clone(), shape, x.dtype);
    let block = cube_width(&client, d);
    let count = CubeCountSelection::new(&client, rows as u32).cube_count();
    let has_beta = beta.is_some();
    let gamma = into_contiguous(gamma);
    let beta = beta.map(into_contiguous).unwrap_or_else(|| gamma.clone());
    let dtype = x.dtype;
    layer_norm_kernel::launch::<R>(
        &client,
        count,
        CubeDim::new_1d(block),
        x.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        rows as u32,
        d as u32,
        eps as f32,
        block as usize,
        has_beta,
        dtype.into(),
    );
    out
}
