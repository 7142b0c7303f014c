//! Power laws recovered from points and runs made with known parameters, and families that
//! cannot support a fit refused with the reason.

use super::{scratch, FakeRun};
use crate::fit::{bootstrap, distinct_budgets, fit_power_law, PowerLaw};
use crate::scaling::fit_runs;
use crate::{ResultsError, Run};

const TRUE: PowerLaw = PowerLaw {
    e: 2.0,
    a: 4000.0,
    alpha: 0.3,
};

/// `n` budgets from 1e12 FLOPs, a factor `step` apart, on the true curve plus `noise(i)`.
fn points(n: usize, step: f64, noise: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            let c = 1e12 * step.powi(i as i32);
            (c, TRUE.at(c) + noise(i))
        })
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn exact_points_give_back_the_law() {
    let law = fit_power_law(&points(5, 4.0, |_| 0.0)).unwrap();
    assert!(close(law.e, TRUE.e, 1e-4), "{law:?}");
    assert!(close(law.a, TRUE.a, 1e-3), "{law:?}");
    assert!(close(law.alpha, TRUE.alpha, 1e-4), "{law:?}");
}

#[test]
fn noisy_points_give_the_law_within_its_interval() {
    // A fixed pattern of +-0.004 nats on losses from ~3 down to ~2.2.
    let noise = |i: usize| [0.004, -0.003, 0.001, -0.004, 0.002, 0.003, -0.002, 0.0][i % 8];
    let pts = points(8, 2.5, noise);
    let law = fit_power_law(&pts).unwrap();
    assert!((law.alpha - TRUE.alpha).abs() < 0.05, "{law:?}");
    assert!((law.e - TRUE.e).abs() < 0.05, "{law:?}");
    let b = bootstrap(&pts, &law, 400, 7).unwrap();
    assert!(b.resamples > 300, "{b:?}");
    assert!(
        b.alpha.lo <= TRUE.alpha && TRUE.alpha <= b.alpha.hi,
        "{b:?}"
    );
    assert!(b.e.lo <= TRUE.e && TRUE.e <= b.e.hi, "{b:?}");
    assert!(b.alpha.lo < law.alpha && law.alpha < b.alpha.hi);
    // Seeded: the same seed, the same interval.
    assert_eq!(bootstrap(&pts, &law, 400, 7), Some(b));
}

#[test]
fn degenerate_points_are_refused_with_the_reason() {
    let two = points(2, 4.0, |_| 0.0);
    assert!(fit_power_law(&two).unwrap_err().contains("three or more"));

    let one_budget: Vec<(f64, f64)> = (0..4).map(|i| (1e12, 3.0 + 0.01 * i as f64)).collect();
    assert_eq!(distinct_budgets(&one_budget), 1);
    assert!(fit_power_law(&one_budget)
        .unwrap_err()
        .contains("1 distinct training budget"));

    let mut nan = points(4, 4.0, |_| 0.0);
    nan[2].1 = f64::NAN;
    assert!(fit_power_law(&nan).unwrap_err().contains("not usable"));
    let mut zero = points(4, 4.0, |_| 0.0);
    zero[0].0 = 0.0;
    assert!(fit_power_law(&zero).unwrap_err().contains("not usable"));

    let rising: Vec<(f64, f64)> = (0..5)
        .map(|i| (1e12 * 4f64.powi(i), 3.0 + 0.2 * i as f64))
        .collect();
    assert!(fit_power_law(&rising).unwrap_err().contains("do not fall"));
}

#[test]
fn runs_are_fitted_per_family_with_residuals() {
    let dir = scratch("fit-runs");
    let mut runs = Vec::new();
    for (i, c) in [1e12, 4e12, 1.6e13, 6.4e13].into_iter().enumerate() {
        let lowrank = FakeRun::new("tiny-lowrank-r32", c, TRUE.at(c), 8);
        runs.push(Run::load(&lowrank.write(&dir, &format!("lowrank-{i}"))).unwrap());
        let dense_law = PowerLaw { e: 1.9, ..TRUE };
        let dense = FakeRun::new("tiny-dense", c, dense_law.at(c), 8);
        runs.push(Run::load(&dense.write(&dir, &format!("dense-{i}"))).unwrap());
    }
    let fits = fit_runs(&runs, 1).unwrap();
    assert!(fits.refused.is_empty());
    assert_eq!(fits.fits.len(), 2);
    let lowrank = &fits.fits[0];
    assert!(lowrank.family.starts_with("lowrank"), "{}", lowrank.family);
    assert_eq!(lowrank.points.len(), 4);
    assert!(close(lowrank.law.alpha, 0.3, 1e-3) && close(lowrank.law.e, 2.0, 1e-3));
    assert!(
        close(fits.fits[1].law.e, 1.9, 1e-3),
        "{:?}",
        fits.fits[1].law
    );
    assert!(lowrank.points.iter().all(|p| p.residual.abs() < 1e-6));
    let table = fits.table();
    assert!(
        table.contains("dense") && table.contains("residual"),
        "{table}"
    );
    let json = serde_json::to_value(&fits).unwrap();
    assert_eq!(json["fits"][0]["points"].as_array().unwrap().len(), 4);
    let svg = fits.chart().svg().unwrap();
    assert!(svg.contains("alpha 0.3000"), "the legend names each fit");
}

#[test]
fn a_family_that_cannot_be_fitted_is_refused_beside_one_that_can() {
    let dir = scratch("fit-refused");
    let mut runs = Vec::new();
    for (i, c) in [1e12, 4e12, 1.6e13].into_iter().enumerate() {
        let r = FakeRun::new("tiny-dense", c, TRUE.at(c), 8);
        runs.push(Run::load(&r.write(&dir, &format!("dense-{i}"))).unwrap());
    }
    let lone = FakeRun::new("tiny-lowrank-r32", 1e12, 3.0, 8);
    runs.push(Run::load(&lone.write(&dir, "lowrank")).unwrap());
    let fits = fit_runs(&runs, 1).unwrap();
    assert_eq!(fits.fits.len(), 1);
    assert!(
        fits.fits[0].exact,
        "three points for three parameters is flagged"
    );
    assert_eq!(fits.refused.len(), 1);
    assert!(
        fits.refused[0].reason.contains("1 point"),
        "{}",
        fits.refused[0].reason
    );
    assert!(fits.table().contains("cannot fit lowrank"));

    let err = fit_runs(&runs[3..], 1).unwrap_err();
    assert!(matches!(err, ResultsError::Fit { .. }), "{err}");
    assert!(
        err.to_string().starts_with("cannot fit the family: "),
        "{err}"
    );
}

#[test]
fn runs_of_different_tokenizers_are_not_fitted_together() {
    let dir = scratch("fit-tokenizers");
    let a = FakeRun::new("tiny-dense", 1e12, 3.0, 4);
    let mut b = FakeRun::new("tiny-dense", 4e12, 2.8, 4);
    b.tokenizer_fnv1a = 0xbeef;
    let runs = [
        Run::load(&a.write(&dir, "a")).unwrap(),
        Run::load(&b.write(&dir, "b")).unwrap(),
    ];
    let err = fit_runs(&runs, 1).unwrap_err();
    assert!(matches!(err, ResultsError::Incomparable(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/a ") && msg.contains("/b ") && msg.contains("different tokenizers"),
        "{msg}"
    );
}
