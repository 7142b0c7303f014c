//! Runs on one chart (`strata plot`), and a single run's own loss curve (`loss.svg`).

use storage::StepRecord;

use crate::chart::{Chart, Curve, Style};
use crate::series::{guided_span, points, XAxis, YAxis};
use crate::{ResultsError, Run};

/// Legend text of the shaded spans.
const GUIDED: &str = "shaded: self-guided phase";

/// `runs` on one chart: `y` against `x`, one colour per run, each run's self-guided phase
/// shaded. Validation axes need runs of one tokenizer.
pub fn runs_chart(runs: &[Run], x: XAxis, y: YAxis) -> Result<Chart, ResultsError> {
    if y.is_validation() {
        check_comparable(runs)?;
    }
    let labels = labels(runs);
    let mut curves = Vec::new();
    for (i, (run, label)) in runs.iter().zip(labels).enumerate() {
        let pts = points(&run.records, x, y);
        if pts.is_empty() {
            return Err(ResultsError::NoPoints(format!(
                "run {} has no {} to plot{}",
                run.dir.display(),
                y.title(),
                if y.is_validation() {
                    " (it was trained without evaluation; plot --y loss)"
                } else {
                    ""
                }
            )));
        }
        curves.push(Curve {
            label: Some(label),
            points: pts,
            shade: guided_span(&run.records, x),
            style: if y.is_validation() {
                Style::LineAndMarkers
            } else {
                Style::Line
            },
            color: i,
        });
    }
    let shaded = curves.iter().any(|c| c.shade.is_some());
    Ok(Chart {
        title: format!("{} against {}", y.title(), x.title()),
        x_title: x.title().into(),
        y_title: y.title().into(),
        curves,
        shade_label: shaded.then(|| GUIDED.into()),
    })
}

/// One run's training loss (line) and validation loss (markers) against tokens, its
/// self-guided phase shaded: the run folder's `loss.svg`.
pub fn run_chart(records: &[StepRecord], title: &str) -> Chart {
    let x = XAxis::Tokens;
    let shade = guided_span(records, x);
    let curves = vec![
        Curve {
            label: Some("training loss".into()),
            points: points(records, x, YAxis::Loss),
            shade,
            style: Style::Line,
            color: 0,
        },
        Curve {
            label: Some("validation loss".into()),
            points: points(records, x, YAxis::ValLoss),
            shade: None,
            style: Style::Markers,
            color: 1,
        },
    ];
    Chart {
        title: title.into(),
        x_title: x.title().into(),
        y_title: "loss (nats/token)".into(),
        curves: curves
            .into_iter()
            .filter(|c| !c.points.is_empty())
            .collect(),
        shade_label: shade.map(|_| GUIDED.into()),
    }
}

/// Refuses runs whose validation losses were measured over different tokenizers, naming two.
pub fn check_comparable(runs: &[Run]) -> Result<(), ResultsError> {
    let key = |r: &Run| match r.tokenizer {
        Some((vocab, hash)) => (vocab, hash),
        None => (r.model.vocab_size, None),
    };
    let Some(first) = runs.first() else {
        return Ok(());
    };
    for other in &runs[1..] {
        let (a, b) = (key(first), key(other));
        let differ = a.0 != b.0 || (a.1.is_some() && b.1.is_some() && a.1 != b.1);
        if differ {
            return Err(ResultsError::Incomparable(format!(
                "runs {} and {} use different tokenizers (vocabulary {} and {}{}): their \
                 validation losses are not comparable; compare runs of one tokenizer",
                first.dir.display(),
                other.dir.display(),
                a.0,
                b.0,
                if a.0 == b.0 { ", different files" } else { "" }
            )));
        }
    }
    Ok(())
}

/// Each run's label, its folder's name added where two labels would be the same.
fn labels(runs: &[Run]) -> Vec<String> {
    let plain: Vec<String> = runs.iter().map(Run::label).collect();
    plain
        .iter()
        .zip(runs)
        .map(|(l, r)| {
            if plain.iter().filter(|m| *m == l).count() > 1 {
                format!("{l} ({})", r.name())
            } else {
                l.clone()
            }
        })
        .collect()
}
