//! Scaling-law fits: the final validation loss of a family of runs against their training
//! FLOPs, `L(C) = E + A * C^(-alpha)` (the form of Hoffmann et al. 2022 in compute alone), by
//! least squares, with a residual-bootstrap interval for each parameter.
//!
//! For a fixed `alpha` the best `E` and `A` are a linear least-squares problem; `alpha` is found
//! by a search on a logarithmic grid over `[0.001, 4]` refined by golden sections. `C` is scaled
//! by the points' geometric mean inside the fit so that the powers stay in range.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// `L(C) = E + A * C^(-alpha)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PowerLaw {
    /// The loss the curve approaches with unlimited compute.
    pub e: f64,
    /// The scale of the reducible part.
    pub a: f64,
    /// The exponent.
    pub alpha: f64,
}

impl PowerLaw {
    /// The curve at `c` FLOPs.
    pub fn at(&self, c: f64) -> f64 {
        self.e + self.a * c.powf(-self.alpha)
    }
}

/// Bounds of the exponent's search.
pub const ALPHA_RANGE: (f64, f64) = (1e-3, 4.0);

/// The least-squares power law through `points` (`(C, L)`, `C > 0`); an error saying why when
/// the points cannot support one.
pub fn fit_power_law(points: &[(f64, f64)]) -> Result<PowerLaw, String> {
    if points.len() < 3 {
        return Err(format!(
            "{} point(s); E, A and alpha need three or more",
            points.len()
        ));
    }
    if let Some(p) = points
        .iter()
        .find(|p| !(p.0 > 0.0 && p.0.is_finite() && p.1.is_finite()))
    {
        return Err(format!(
            "a point is not usable: FLOPs {}, loss {}",
            p.0, p.1
        ));
    }
    let distinct = distinct_budgets(points);
    if distinct < 3 {
        return Err(format!(
            "{distinct} distinct training budget(s); a curve in compute needs three or more"
        ));
    }
    let scale = (points.iter().map(|p| p.0.ln()).sum::<f64>() / points.len() as f64).exp();
    let xs: Vec<f64> = points.iter().map(|p| p.0 / scale).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let (lo, hi) = (ALPHA_RANGE.0.ln(), ALPHA_RANGE.1.ln());
    let grid: Vec<f64> = (0..=240)
        .map(|i| (lo + (hi - lo) * i as f64 / 240.0).exp())
        .collect();
    let best = grid
        .iter()
        .enumerate()
        .filter_map(|(i, &a)| linear_part(&xs, &ys, a).map(|(_, a2, sse)| (i, a2, sse)))
        .filter(|(_, a2, _)| *a2 > 0.0)
        .min_by(|p, q| p.2.total_cmp(&q.2));
    let Some((i, _, _)) = best else {
        return Err("the losses do not fall as compute grows".into());
    };
    let (mut a, mut b) = (grid[i.saturating_sub(1)], grid[(i + 1).min(grid.len() - 1)]);
    let sse = |alpha: f64| linear_part(&xs, &ys, alpha).map_or(f64::INFINITY, |p| p.2);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..80 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if sse(c) < sse(d) {
            b = d;
        } else {
            a = c;
        }
    }
    let alpha = (a + b) / 2.0;
    let (e, a_scaled, _) = linear_part(&xs, &ys, alpha).ok_or("the fit is singular")?;
    if a_scaled <= 0.0 {
        return Err("the losses do not fall as compute grows".into());
    }
    Ok(PowerLaw {
        e,
        a: a_scaled * scale.powf(alpha),
        alpha,
    })
}

/// The number of training budgets among `points` that differ by more than one part in 10^6.
pub fn distinct_budgets(points: &[(f64, f64)]) -> usize {
    let mut cs: Vec<f64> = points.iter().map(|p| p.0).collect();
    cs.sort_by(f64::total_cmp);
    cs.dedup_by(|b, a| (*b - *a).abs() <= 1e-6 * a.abs());
    cs.len()
}

/// `(E, A, sum of squared residuals)` of the best line in `x^(-alpha)`.
fn linear_part(xs: &[f64], ys: &[f64], alpha: f64) -> Option<(f64, f64, f64)> {
    let n = xs.len() as f64;
    let f: Vec<f64> = xs.iter().map(|x| x.powf(-alpha)).collect();
    let (sf, sy) = (f.iter().sum::<f64>(), ys.iter().sum::<f64>());
    let sff: f64 = f.iter().map(|v| v * v).sum();
    let sfy: f64 = f.iter().zip(ys).map(|(a, b)| a * b).sum();
    let det = n * sff - sf * sf;
    if det.abs() <= 1e-12 * (n * sff).abs() || !det.is_finite() {
        return None;
    }
    let a = (n * sfy - sf * sy) / det;
    let e = (sy - a * sf) / n;
    let sse = f
        .iter()
        .zip(ys)
        .map(|(fv, y)| (y - e - a * fv).powi(2))
        .sum();
    Some((e, a, sse))
}

/// A 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// 2.5th percentile.
    pub lo: f64,
    /// 97.5th percentile.
    pub hi: f64,
}

/// Intervals of a fit's parameters from refits to the fitted values plus resampled residuals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bootstrap {
    /// Interval of `E`.
    pub e: Interval,
    /// Interval of `A`.
    pub a: Interval,
    /// Interval of `alpha`.
    pub alpha: Interval,
    /// Resamples that gave a fit (of those drawn).
    pub resamples: usize,
}

/// A residual bootstrap of `law` on `points`: `draws` refits, seeded by `seed`; none when no
/// resample gives a fit.
pub fn bootstrap(
    points: &[(f64, f64)],
    law: &PowerLaw,
    draws: usize,
    seed: u64,
) -> Option<Bootstrap> {
    let residuals: Vec<f64> = points.iter().map(|p| p.1 - law.at(p.0)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fits = Vec::with_capacity(draws);
    for _ in 0..draws {
        let sample: Vec<(f64, f64)> = points
            .iter()
            .map(|p| {
                (
                    p.0,
                    law.at(p.0) + residuals[rng.random_range(0..residuals.len())],
                )
            })
            .collect();
        if let Ok(f) = fit_power_law(&sample) {
            fits.push(f);
        }
    }
    if fits.is_empty() {
        return None;
    }
    let interval = |get: fn(&PowerLaw) -> f64| {
        let mut v: Vec<f64> = fits.iter().map(get).collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Interval {
            lo: at(0.025),
            hi: at(0.975),
        }
    };
    Some(Bootstrap {
        e: interval(|f| f.e),
        a: interval(|f| f.a),
        alpha: interval(|f| f.alpha),
        resamples: fits.len(),
    })
}
