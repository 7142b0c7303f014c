//! strata patch: elementwise work split over rayon's pool, and a vectorisable `exp`.
//!
//! The release runs every elementwise operation (unary, binary, scalar) on the calling thread,
//! so on a training step most of the non-matmul work used one core. Here a buffer of at least
//! [`PAR_MIN`] elements is cut into a few contiguous chunks per thread and the chunks run on
//! rayon's pool; smaller buffers stay on the calling thread (a dispatch costs microseconds).
//! Every element is computed by the same scalar code either way, so results are bit-identical
//! to the serial path.
//!
//! [`exp_f32`] replaces the scalar libm `expf` call (which no loop can vectorise) with the
//! Cephes single-precision polynomial (range reduction by ln 2, degree-5 polynomial, relative
//! error about 2e-7), written branch-free so that loops over it vectorise; on x86-64 the loops
//! are also compiled for AVX2 + FMA and chosen at run time.

use core::mem::MaybeUninit;

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Elements below which an elementwise operation stays on the calling thread.
pub const PAR_MIN: usize = 1 << 15;

/// Chunk length for `n` elements: about four chunks per pool thread, at least 8K elements,
/// a multiple of 64 (whole cache lines for 4-byte elements).
#[cfg(feature = "rayon")]
fn chunk_len(n: usize, threads: usize) -> usize {
    n.div_ceil(threads * 4).max(8192).next_multiple_of(64)
}

/// Chunk length for `n` elements when the work should be split, `None` when it should not.
#[inline]
fn split_len(n: usize) -> Option<usize> {
    #[cfg(feature = "rayon")]
    {
        if n >= PAR_MIN {
            let threads = rayon::current_num_threads();
            if threads > 1 {
                return Some(chunk_len(n, threads));
            }
        }
    }
    let _ = n;
    None
}

/// Runs `f(start, chunk)` over contiguous chunks of `dst` (in parallel when large enough);
/// `start` is the chunk's offset in `dst`.
#[inline]
pub fn for_each_chunk_mut<E: Send>(dst: &mut [E], f: impl Fn(usize, &mut [E]) + Sync + Send) {
    match split_len(dst.len()) {
        #[cfg(feature = "rayon")]
        Some(c) => dst
            .par_chunks_mut(c)
            .enumerate()
            .for_each(|(i, chunk)| f(i * c, chunk)),
        _ => f(0, dst),
    }
}

/// Like [`for_each_chunk_mut`], but every chunk holds whole rows of `row_len` elements.
#[inline]
pub fn for_each_rows_mut<E: Send>(
    dst: &mut [E],
    row_len: usize,
    f: impl Fn(usize, &mut [E]) + Sync + Send,
) {
    match split_len(dst.len()) {
        #[cfg(feature = "rayon")]
        Some(c) if row_len > 0 => {
            let c = c.div_ceil(row_len) * row_len;
            dst.par_chunks_mut(c)
                .enumerate()
                .for_each(|(i, chunk)| f(i * c, chunk))
        }
        _ => f(0, dst),
    }
}

/// Runs `f(j)` for every job `j < jobs` of about `per_job` elements each, on the pool when the
/// whole work (`elements`) is large enough, in runs of at least 8K elements.
pub fn for_each_job(jobs: usize, elements: usize, per_job: usize, f: &(impl Fn(usize) + Sync)) {
    #[cfg(feature = "rayon")]
    if split_len(elements).is_some() {
        let min_len = 8192usize.div_ceil(per_job.max(1));
        (0..jobs).into_par_iter().with_min_len(min_len).for_each(f);
        return;
    }
    let _ = (elements, per_job);
    (0..jobs).for_each(f)
}

/// `dst[i] = op(dst[i])`.
#[inline]
pub fn map_inplace<E: Copy + Send>(dst: &mut [E], op: impl Fn(E) -> E + Sync + Send) {
    for_each_chunk_mut(dst, |_, chunk| {
        for x in chunk.iter_mut() {
            *x = op(*x);
        }
    });
}

/// A vector of `n` elements, each chunk of it written by `fill(start, chunk)` (in parallel when
/// large enough); `fill` must write every slot of its chunk.
#[inline]
pub fn collect_chunks<R: Copy + Send>(
    n: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<R>]) + Sync + Send,
) -> alloc::vec::Vec<R> {
    let mut out: alloc::vec::Vec<R> = alloc::vec::Vec::with_capacity(n);
    for_each_chunk_mut(&mut out.spare_capacity_mut()[..n], fill);
    // SAFETY: `fill` wrote every one of the first `n` slots.
    unsafe { out.set_len(n) };
    out
}

/// A vector of `n` copies of `value`, written in chunks in parallel when large enough (for
/// zeros, glibc's `calloc` clears reused heap memory with one serial `memset`).
#[inline]
pub fn filled<E: Copy + Send + Sync>(n: usize, value: E) -> alloc::vec::Vec<E> {
    collect_chunks(n, |_, chunk| chunk.fill(MaybeUninit::new(value)))
}

/// `src.map(op).collect()`, written in chunks in parallel when large enough.
#[inline]
pub fn map_collect<E: Copy + Sync, R: Copy + Send>(
    src: &[E],
    op: impl Fn(E) -> R + Sync + Send,
) -> alloc::vec::Vec<R> {
    collect_chunks(src.len(), |start, chunk| {
        let src = &src[start..start + chunk.len()];
        for (o, &x) in chunk.iter_mut().zip(src) {
            *o = MaybeUninit::new(op(x));
        }
    })
}

/// `dst[i] = op(dst[i], rhs[i])`; `rhs` is at least as long as `dst`.
#[inline]
pub fn zip_inplace<E: Copy + Send + Sync>(
    dst: &mut [E],
    rhs: &[E],
    op: impl Fn(E, E) -> E + Sync + Send,
) {
    for_each_chunk_mut(dst, |start, chunk| {
        let rhs = &rhs[start..start + chunk.len()];
        for (l, &r) in chunk.iter_mut().zip(rhs) {
            *l = op(*l, r);
        }
    });
}

/// `lhs.zip(rhs).map(op).collect()`.
#[inline]
pub fn zip_collect<E: Copy + Sync, R: Copy + Send>(
    lhs: &[E],
    rhs: &[E],
    op: impl Fn(E, E) -> R + Sync + Send,
) -> alloc::vec::Vec<R> {
    collect_chunks(lhs.len().min(rhs.len()), |start, chunk| {
        let end = start + chunk.len();
        for ((o, &a), &b) in chunk.iter_mut().zip(&lhs[start..end]).zip(&rhs[start..end]) {
            *o = MaybeUninit::new(op(a, b));
        }
    })
}

// ============================================================================
// exp
// ============================================================================

const EXP_HI: f32 = 88.722_83;
const EXP_LO: f32 = -103.972_08;
const LOG2E: f32 = core::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 x 2^23: adding it rounds a float of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// e^x in single precision, branch-free (vectorises inside loops). Inputs above ~88.72 give
/// +inf, below ~-103.97 give 0 (subnormal results in between are kept: 2^n is applied as two
/// factors), NaN gives NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let xc = x.clamp(EXP_LO, EXP_HI);
    // n = round(x / ln 2), r = x - n ln 2 in two parts (|r| <= ln 2 / 2).
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * (r * r) + r + 1.0;
    // 2^n as two factors so that n down to -150 stays representable: 2^(n/2) 2^(n - n/2).
    let h = ni >> 1;
    let s1 = f32::from_bits((h.wrapping_add(127) << 23) as u32);
    let s2 = f32::from_bits((ni.wrapping_sub(h).wrapping_add(127) << 23) as u32);
    let y = y * s1 * s2;
    let y = if x > EXP_HI { f32::INFINITY } else { y };
    if x < EXP_LO { 0.0 } else { y }
}

#[inline(always)]
fn exp_slice_generic(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = exp_f32(*x);
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

/// Runs `kernel(arg)` compiled for AVX2 + FMA when the CPU has them (the kernel, marked
/// `#[inline(always)]`, is inlined into a function built with those features, where its loop
/// vectorises 8 wide), as it is otherwise.
#[inline(always)]
pub fn vectorised<A>(kernel: impl Fn(A), arg: A) {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if has_avx2() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<A>(kernel: impl Fn(A), arg: A) {
            kernel(arg)
        }
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        unsafe { avx2(kernel, arg) };
        return;
    }
    kernel(arg)
}

/// `x = e^x` over a slice, vectorised (AVX2 when the CPU has it).
fn exp_slice(xs: &mut [f32]) {
    vectorised(exp_slice_generic, xs)
}

/// `x = e^x` over a buffer, in parallel chunks when large enough.
pub fn exp_inplace(xs: &mut [f32]) {
    for_each_chunk_mut(xs, |_, chunk| exp_slice(chunk));
}

/// `src.map(e^x).collect()`, in parallel chunks when large enough.
pub fn exp_collect(src: &[f32]) -> alloc::vec::Vec<f32> {
    collect_chunks(src.len(), |start, chunk| {
        exp_slice(write_copy(chunk, &src[start..start + chunk.len()]))
    })
}

// ============================================================================
// erf and GELU
// ============================================================================

/// erf(x) in single precision, branch-free (vectorises inside loops): `x P(x^2) / Q(x^2)` on
/// `x` clamped to [-4, 4] (beyond, erf is +-1 in f32), the rational approximation Eigen and
/// XLA use for f32. Absolute error below 5e-7 against the exact function (libm's `erff`:
/// about 1e-7), relative error below 3e-7 for |x| < 0.5; NaN gives NaN.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_599_8e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_2e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// GELU (the erf form), `0.5 x (1 + erf(x / sqrt 2))`, through [`erf_f32`].
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `g * gelu'(x)`: `g (Phi(x) + x phi(x))`, through [`erf_f32`] and [`exp_f32`].
#[inline(always)]
pub fn gelu_grad_f32(x: f32, g: f32) -> f32 {
    // 1 / sqrt(2 pi)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_f32(x * core::f32::consts::FRAC_1_SQRT_2));
    let pdf = INV_SQRT_2PI * exp_f32(-0.5 * x * x);
    g * (cdf + x * pdf)
}

#[inline(always)]
fn gelu_slice_generic(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = gelu_f32(*x);
    }
}

/// `x = gelu(x)` over a slice, vectorised (AVX2 when the CPU has it).
fn gelu_slice(xs: &mut [f32]) {
    vectorised(gelu_slice_generic, xs)
}

#[inline(always)]
fn gelu_grad_slice_generic((g, x): (&mut [f32], &[f32])) {
    for (g, &x) in g.iter_mut().zip(x) {
        *g = gelu_grad_f32(x, *g);
    }
}

/// `g = g * gelu'(x)` over a slice, vectorised (AVX2 when the CPU has it).
fn gelu_grad_slice(g: &mut [f32], x: &[f32]) {
    vectorised(gelu_grad_slice_generic, (g, x))
}

/// Copies `src` into the uninitialised `dst` (same length) and returns it as initialised.
fn write_copy<'a>(dst: &'a mut [MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = MaybeUninit::new(x);
    }
    // SAFETY: every slot of `dst` was written just above.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `x = gelu(x)` over a buffer, in parallel chunks when large enough.
pub fn gelu_inplace(xs: &mut [f32]) {
    for_each_chunk_mut(xs, |_, chunk| gelu_slice(chunk));
}

/// `src.map(gelu).collect()`, in parallel chunks when large enough.
pub fn gelu_collect(src: &[f32]) -> alloc::vec::Vec<f32> {
    collect_chunks(src.len(), |start, chunk| {
        gelu_slice(write_copy(chunk, &src[start..start + chunk.len()]))
    })
}

/// `g = g * gelu'(x)` over buffers of one length, in parallel chunks when large enough.
pub fn gelu_grad_inplace(g: &mut [f32], x: &[f32]) {
    for_each_chunk_mut(g, |start, chunk| {
        let n = chunk.len();
        gelu_grad_slice(chunk, &x[start..start + n])
    });
}

/// `g.zip(x).map(g * gelu'(x)).collect()`, in parallel chunks when large enough.
pub fn gelu_grad_collect(g: &[f32], x: &[f32]) -> alloc::vec::Vec<f32> {
    collect_chunks(g.len(), |start, chunk| {
        let end = start + chunk.len();
        gelu_grad_slice(write_copy(chunk, &g[start..end]), &x[start..end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_closely() {
        let mut worst = 0.0f64;
        let mut x = -103.0f32;
        while x < 88.7 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            if want > 1.2e-38 {
                worst = worst.max(((got - want) / want).abs());
            }
            x += 0.001_37;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        let mut v: alloc::vec::Vec<f32> = (0..100_000).map(|i| (i as f32) * 1e-3 - 50.0).collect();
        let want: alloc::vec::Vec<f32> = v.iter().map(|&x| exp_f32(x)).collect();
        assert_eq!(exp_collect(&v), want);
        exp_inplace(&mut v);
        assert_eq!(v, want);
    }

    #[test]
    fn chunked_maps_equal_serial_maps() {
        let src: alloc::vec::Vec<f32> = (0..100_003).map(|i| i as f32 * 0.5).collect();
        let got = map_collect(&src, |x| x * 2.0 + 1.0);
        let want: alloc::vec::Vec<f32> = src.iter().map(|&x| x * 2.0 + 1.0).collect();
        assert_eq!(got, want);
        let z = zip_collect(&src, &want, |a, b| b - a);
        assert!(z.iter().zip(&src).all(|(z, s)| *z == s + 1.0));
        let mut rows = src.clone();
        for_each_rows_mut(&mut rows[..100_000], 1000, |start, chunk| {
            assert_eq!(start % 1000, 0);
            assert_eq!(chunk.len() % 1000, 0);
        });
    }
}
