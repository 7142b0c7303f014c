//! `strata fit`: runs grouped into families (one structure, several sizes or budgets), a power
//! law fitted to each family's final validation losses, as a table, JSON and a chart.

use serde::Serialize;

use crate::chart::{Chart, Curve, Style};
use crate::fit::{bootstrap, fit_power_law, Bootstrap, PowerLaw, ALPHA_RANGE};
use crate::plot::check_comparable;
use crate::{ResultsError, Run};

/// Residual resamples of each interval.
pub const DRAWS: usize = 1000;

/// One run's point in its family's fit.
#[derive(Clone, Debug, Serialize)]
pub struct FitPoint {
    /// The run folder.
    pub run: String,
    /// Training FLOPs at its last evaluation.
    pub flops: f64,
    /// Its last validation loss.
    pub val_loss: f64,
    /// `val_loss` minus the fitted curve there.
    pub residual: f64,
}

/// A family's fitted law.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyFit {
    /// The family (structure, share of the dense FFN, self-guided or not).
    pub family: String,
    /// Its runs' points.
    pub points: Vec<FitPoint>,
    /// The fitted law.
    pub law: PowerLaw,
    /// 95% intervals (none when no resample could be fitted).
    pub interval: Option<Bootstrap>,
    /// As many points as parameters: the curve passes through each point and the interval
    /// says nothing.
    pub exact: bool,
    /// `alpha` at a bound of its search: the points do not pin it down.
    pub alpha_at_bound: bool,
}

/// A family that could not be fitted, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// The family.
    pub family: String,
    /// Its runs.
    pub runs: Vec<String>,
    /// Why not.
    pub reason: String,
}

/// Every family's fit or refusal, in the order their first runs were given.
#[derive(Clone, Debug, Serialize)]
pub struct Fits {
    /// Fitted families.
    pub fits: Vec<FamilyFit>,
    /// Families that cannot support a fit.
    pub refused: Vec<Refusal>,
}

/// Fits each family of `runs`; an error when none can be fitted.
pub fn fit_runs(runs: &[Run], seed: u64) -> Result<Fits, ResultsError> {
    check_comparable(runs)?;
    let mut families: Vec<(String, Vec<&Run>)> = Vec::new();
    for run in runs {
        let f = run.family();
        match families.iter_mut().find(|(name, _)| *name == f) {
            Some((_, members)) => members.push(run),
            None => families.push((f, vec![run])),
        }
    }
    let mut out = Fits {
        fits: Vec::new(),
        refused: Vec::new(),
    };
    for (family, members) in families {
        match fit_family(&family, &members, seed) {
            Ok(fit) => out.fits.push(fit),
            Err(reason) => out.refused.push(Refusal {
                family,
                runs: members
                    .iter()
                    .map(|r| r.dir.display().to_string())
                    .collect(),
                reason,
            }),
        }
    }
    if out.fits.is_empty() {
        let problem = out
            .refused
            .iter()
            .map(|r| format!("{}: {}", r.family, r.reason))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ResultsError::Fit {
            family: if out.refused.len() == 1 {
                "the family".into()
            } else {
                "any family".into()
            },
            problem,
        });
    }
    Ok(out)
}

fn fit_family(family: &str, runs: &[&Run], seed: u64) -> Result<FamilyFit, String> {
    let mut pts = Vec::new();
    for run in runs {
        let last = run
            .final_validation()
            .ok_or_else(|| format!("run {} has no validation loss", run.dir.display()))?;
        let loss = last.val_loss.unwrap_or(f64::NAN);
        if !loss.is_finite() {
            return Err(format!(
                "run {}'s last validation loss is not finite",
                run.dir.display()
            ));
        }
        pts.push((run.dir.display().to_string(), last.flops, loss));
    }
    let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.1, p.2)).collect();
    let law = fit_power_law(&xy).map_err(|e| format!("{} run(s): {e}", runs.len()))?;
    let near = |a: f64, b: f64| (a / b).ln().abs() < 1e-3;
    Ok(FamilyFit {
        family: family.to_string(),
        points: pts
            .into_iter()
            .map(|(run, flops, val_loss)| FitPoint {
                run,
                flops,
                val_loss,
                residual: val_loss - law.at(flops),
            })
            .collect(),
        interval: bootstrap(&xy, &law, DRAWS, seed),
        exact: xy.len() == 3,
        alpha_at_bound: near(law.alpha, ALPHA_RANGE.0) || near(law.alpha, ALPHA_RANGE.1),
        law,
    })
}

impl Fits {
    /// The fits as a text table, then each run's residual and each refusal.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<34} {:>4}  {:>22}  {:>24}  {:>20}\n",
            "family", "runs", "E [95%]", "A [95%]", "alpha [95%]"
        );
        let iv = |i: Option<&crate::fit::Interval>| {
            i.map_or("[-]".to_string(), |i| {
                format!("[{}, {}]", num(i.lo), num(i.hi))
            })
        };
        for f in &self.fits {
            let b = f.interval.as_ref();
            s += &format!(
                "{:<34} {:>4}  {:>22}  {:>24}  {:>20}\n",
                f.family,
                f.points.len(),
                format!("{} {}", num(f.law.e), iv(b.map(|b| &b.e))),
                format!("{} {}", num(f.law.a), iv(b.map(|b| &b.a))),
                format!("{} {}", num(f.law.alpha), iv(b.map(|b| &b.alpha))),
            );
        }
        s += &format!(
            "(L(C) = E + A * C^-alpha, C in training FLOPs; intervals from {DRAWS} residual resamples)\n"
        );
        for f in &self.fits {
            s += &format!("\n{}:\n", f.family);
            for p in &f.points {
                s += &format!(
                    "  {:<40} FLOPs {:>10}  val loss {:.4}  residual {:+.4}\n",
                    p.run,
                    num(p.flops),
                    p.val_loss,
                    p.residual
                );
            }
            if f.exact {
                s += "  note: 3 runs for 3 parameters: the curve passes through every point; the interval says nothing\n";
            }
            if f.alpha_at_bound {
                s += "  note: alpha is at a bound of its search (0.001..4): these runs do not pin it down\n";
            }
        }
        for r in &self.refused {
            s += &format!("\ncannot fit {}: {}\n", r.family, r.reason);
        }
        s
    }

    /// The families' points (markers) and fitted curves (lines) against training FLOPs.
    pub fn chart(&self) -> Chart {
        let mut curves = Vec::new();
        for (i, f) in self.fits.iter().enumerate() {
            let pts: Vec<(f64, f64)> = f.points.iter().map(|p| (p.flops, p.val_loss)).collect();
            let (lo, hi) = pts.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| {
                (l.min(p.0), h.max(p.0))
            });
            let line = (0..=60)
                .map(|k| {
                    let c = lo * (hi / lo).powf(k as f64 / 60.0);
                    (c, f.law.at(c))
                })
                .collect();
            curves.push(Curve {
                label: Some(format!(
                    "{}: alpha {}, E {}",
                    f.family,
                    num(f.law.alpha),
                    num(f.law.e)
                )),
                points: pts,
                shade: None,
                style: Style::Markers,
                color: i,
            });
            curves.push(Curve {
                label: None,
                points: line,
                shade: None,
                style: Style::Line,
                color: i,
            });
        }
        Chart {
            title: "final validation loss against training FLOPs, with fitted E + A C^-alpha"
                .into(),
            x_title: "training FLOPs".into(),
            y_title: "final validation loss (nats/token)".into(),
            curves,
            shade_label: None,
        }
    }
}

/// Four significant digits.
fn num(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e5).contains(&v.abs()) {
        format!("{v:.3e}")
    } else {
        format!("{:.4}", v)
    }
}
