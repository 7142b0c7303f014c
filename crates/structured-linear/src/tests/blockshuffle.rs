//! BlockShuffle against docs/reference.md §1 written out index by index.

use super::*;

/// The Monarch product of docs/reference.md §1, element by element, with the factors in the paper's
/// `[out, in]` form: `b1[i][j][u]` and `b2[c][t][m]`.
fn slow_block_shuffle(x: &[f64], b1: &[Vec<Vec<f64>>], b2: &[Vec<Vec<f64>>]) -> Vec<f64> {
    let k = b1.len();
    let q = b1[0].len();
    let p = b1[0][0].len();
    let l = b2.len();
    let s = b2[0].len();
    let r = b2[0][0].len();
    assert_eq!(k * p, x.len());
    assert_eq!(l * r, k * q);
    // Step 1: y1[i*q + j] = B1[i] x_i.
    let mut y1 = vec![0.0; k * q];
    for i in 0..k {
        for j in 0..q {
            y1[i * q + j] = (0..p).map(|u| b1[i][j][u] * x[i * p + u]).sum();
        }
    }
    // Step 2: read y1 as an [r, l] row-major grid and take its columns.
    let z: Vec<Vec<f64>> = (0..l)
        .map(|c| (0..r).map(|m| y1[m * l + c]).collect())
        .collect();
    // Step 3: w_c = B2[c] z_c, output (c, t) at t*l + c.
    let mut out = vec![0.0; s * l];
    for c in 0..l {
        for t in 0..s {
            out[t * l + c] = (0..r).map(|m| b2[c][t][m] * z[c][m]).sum();
        }
    }
    out
}

/// Splits a `[b, n, m]` (input-major) block tensor into the paper's `[out, in]` blocks.
fn paper_blocks<B: Backend>(t: Tensor<B, 3>) -> Vec<Vec<Vec<f64>>> {
    let [b, n, m] = t.dims();
    let v = values(t);
    (0..b)
        .map(|i| {
            (0..m)
                .map(|o| (0..n).map(|u| v[i * n * m + u * m + o]).collect())
                .collect()
        })
        .collect()
}

#[test]
fn block_shuffle_equals_the_index_formula_of_the_paper() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 4);
    // (6, 6, 2) has q = 3, not a multiple of b: the general shuffle path; the others the fast one.
    for (d_in, d_out, b) in [
        (6, 6, 2),
        (8, 16, 2),
        (16, 8, 4),
        (12, 24, 3),
        (24, 12, 2),
        (16, 16, 4),
        (9, 6, 3),
    ] {
        let config = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockShuffle { n_blocks: b })
            .with_bias(false)
            .with_init(Init::FanIn);
        let layer = config.init::<TB64>(&device).unwrap();
        let StructuredLinear::BlockShuffle(bs) = &layer else {
            panic!("not a BlockShuffle")
        };
        let (b1, b2) = (paper_blocks(bs.b1.val()), paper_blocks(bs.b2.val()));
        let x = Tensor::<TB64, 2>::random([3, d_in], Distribution::Normal(0.0, 1.0), &device);
        let xs = values(x.clone());
        let y = values(layer.forward(x));
        for n in 0..3 {
            let expected = slow_block_shuffle(&xs[n * d_in..(n + 1) * d_in], &b1, &b2);
            let err = rel_err(&y[n * d_out..(n + 1) * d_out], &expected);
            assert!(err < 1e-12, "{d_in}x{d_out} b={b}: {err}");
        }
        // The merged matrix follows the same formula: row a is the image of basis vector a.
        let w = values(layer.merged_weight());
        for a in 0..d_in {
            let mut e = vec![0.0; d_in];
            e[a] = 1.0;
            let col = slow_block_shuffle(&e, &b1, &b2);
            let err = rel_err(&w[a * d_out..(a + 1) * d_out], &col);
            assert!(err < 1e-12, "merged row {a}, {d_in}x{d_out} b={b}: {err}");
        }
    }
}

#[test]
fn block_shuffle_has_the_reference_factor_shapes() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 0);
    let shapes = |d_in: usize, d_out: usize, b: usize| {
        let layer = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockShuffle { n_blocks: b })
            .init::<TB>(&device)
            .unwrap();
        let StructuredLinear::BlockShuffle(bs) = layer else {
            panic!("not a BlockShuffle")
        };
        (bs.b1.dims(), bs.b2.dims())
    };
    // d_in < d_out: B1 [b, d_in/b, d_in/b], B2 [b, d_out/b, d_in/b] in [out, in] form.
    assert_eq!(shapes(16, 32, 4), ([4, 4, 4], [4, 4, 8]));
    // else: B1 [b, d_out/b, d_in/b], B2 [b, d_out/b, d_out/b].
    assert_eq!(shapes(32, 16, 4), ([4, 8, 4], [4, 4, 4]));
}
