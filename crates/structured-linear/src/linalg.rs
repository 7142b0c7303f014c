//! Host-side linear algebra (SVD via `faer`) used by initialisation and factorisation.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use faer::Mat;

use crate::error::LayerError;

/// Copies a 2-D tensor into a host `f64` matrix.
pub(crate) fn to_host<B: Backend>(tensor: Tensor<B, 2>) -> Result<Mat<f64>, LayerError> {
    let [rows, cols] = tensor.dims();
    let data = tensor.into_data().convert::<f64>();
    let values = data
        .to_vec::<f64>()
        .map_err(|e| LayerError::Svd(format!("{e:?}")))?;
    Ok(Mat::from_fn(rows, cols, |i, j| values[i * cols + j]))
}

/// Copies a host matrix into a 2-D tensor on `device`.
pub(crate) fn to_tensor<B: Backend>(mat: &Mat<f64>, device: &B::Device) -> Tensor<B, 2> {
    let (rows, cols) = (mat.nrows(), mat.ncols());
    let mut values = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            values.push(mat[(i, j)]);
        }
    }
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// A thin SVD `U diag(s) V^T`, singular values in decreasing order.
pub(crate) struct ThinSvd {
    pub u: Mat<f64>,
    pub s: Vec<f64>,
    pub v: Mat<f64>,
}

/// Thin SVD of `m`; non-finite entries are an error.
pub(crate) fn thin_svd(m: &Mat<f64>) -> Result<ThinSvd, LayerError> {
    if m.col_iter().any(|c| c.iter().any(|v| !v.is_finite())) {
        return Err(LayerError::Svd("matrix holds non-finite values".into()));
    }
    let svd = m
        .thin_svd()
        .map_err(|e| LayerError::Svd(format!("{e:?}")))?;
    let s = svd.S().column_vector().iter().copied().collect();
    Ok(ThinSvd {
        u: svd.U().to_owned(),
        s,
        v: svd.V().to_owned(),
    })
}

/// The singular values of a matrix, largest first.
pub fn singular_values<B: Backend>(matrix: Tensor<B, 2>) -> Result<Vec<f64>, LayerError> {
    Ok(thin_svd(&to_host(matrix)?)?.s)
}

/// Best rank-`r` approximation of `m`, split as `(A_r sqrt(S_r), sqrt(S_r) B_r^T)` so that the
/// product of the two factors is the truncated SVD (Eckart-Young optimal in Frobenius norm).
pub(crate) fn truncated_factors(
    m: &Mat<f64>,
    r: usize,
) -> Result<(Mat<f64>, Mat<f64>), LayerError> {
    let ThinSvd { u, s, v } = thin_svd(m)?;
    let left = Mat::from_fn(m.nrows(), r, |i, k| u[(i, k)] * s[k].sqrt());
    let right = Mat::from_fn(r, m.ncols(), |k, j| s[k].sqrt() * v[(j, k)]);
    Ok((left, right))
}

/// The nearest (semi-)orthogonal matrix `U V^T` to `m` (its polar factor).
pub(crate) fn nearest_orthogonal(m: &Mat<f64>) -> Result<Mat<f64>, LayerError> {
    let ThinSvd { u, v, .. } = thin_svd(m)?;
    Ok(&u * v.transpose())
}
