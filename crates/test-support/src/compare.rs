//! Reading tensors back and comparing values: every crate's tests compare this way.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

/// A tensor's values in row-major order, as `f64` whatever the backend's float type.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("a float tensor")
}

/// The value of a one-element tensor (a loss, a gradient norm), read back as `f64`.
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem()
}

/// The largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "the slices differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `|a - b|_2 / |b|_2`: the relative error of `a` against the reference `b`.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "the slices differ in length");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-300)).sqrt()
}

/// Panics unless every `got[i]` is within `tol` of `want[i]` (absolute), naming `what`, the
/// first index out of tolerance and the largest difference.
#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    // A NaN on either side is never close (`f64::max` would skip it).
    if let Some(i) = got
        .iter()
        .zip(want)
        .position(|(x, y)| (x - y).abs().is_nan() || (x - y).abs() > tol)
    {
        panic!(
            "{what}: max |got - want| = {:e} > {tol:e}; first at {i}: got {}, want {}",
            max_abs_diff(got, want),
            got[i],
            want[i]
        );
    }
}

/// Panics unless every `got[i]` is within `tol * (1 + |want[i]|)` of `want[i]` (relative for
/// large values, absolute near zero), naming `what` and the first index out of tolerance: for
/// values spanning many magnitudes (an exponential, a loss and its gradients).
#[track_caller]
pub fn assert_rel_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    // A NaN on either side is never close.
    if let Some(i) = got.iter().zip(want).position(|(x, y)| {
        let d = (x - y).abs();
        d.is_nan() || d > tol * (1.0 + y.abs())
    }) {
        panic!("{what}: first at {i}: got {}, want {}", got[i], want[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assert_close_accepts_within_and_rejects_beyond_the_tolerance() {
        assert_close(&[1.0, 2.0], &[1.0 + 1e-7, 2.0], 1e-6, "near");
        let far = std::panic::catch_unwind(|| assert_close(&[1.0, 2.0], &[1.0, 2.1], 1e-6, "far"));
        assert!(far.is_err());
        let nan = std::panic::catch_unwind(|| assert_close(&[f64::NAN], &[0.0], 1.0, "nan"));
        assert!(nan.is_err(), "NaN is never close");
        assert!((rel_err(&[3.0, 4.0], &[3.0, 0.0]) - 4.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn assert_rel_close_scales_the_tolerance_with_the_value() {
        assert_rel_close(&[1e10 + 1.0, 0.5], &[1e10, 0.5], 1e-6, "large");
        let far =
            std::panic::catch_unwind(|| assert_rel_close(&[1e10 * 1.01], &[1e10], 1e-6, "far"));
        assert!(far.is_err());
        let nan = std::panic::catch_unwind(|| assert_rel_close(&[f64::NAN], &[0.0], 1.0, "nan"));
        assert!(nan.is_err(), "NaN is never close");
    }
}
