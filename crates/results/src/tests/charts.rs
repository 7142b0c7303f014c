//! Charts of runs: one labelled curve per run, logarithmic axes over decades, the self-guided
//! phase shaded, PNG output, and outputs that cannot be written refused before anything is.

use std::fs;

use super::{scratch, FakeRun};
use crate::chart::tick;
use crate::output::{check_output, write_chart};
use crate::plot::{run_chart, runs_chart};
use crate::{ResultsError, Run, XAxis, YAxis};

fn three_runs(dir: &std::path::Path) -> Vec<Run> {
    [
        FakeRun::new("tiny-dense", 1e12, 3.0, 12),
        FakeRun::new("tiny-lowrank-r32", 8e12, 2.8, 12),
        FakeRun::new("tiny-lowrank-r32", 6.4e13, 2.6, 12).guided(),
    ]
    .iter()
    .enumerate()
    .map(|(i, r)| Run::load(&r.write(dir, &format!("run{i}"))).unwrap())
    .collect()
}

/// Occurrences of `needle` in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn runs_share_one_chart_each_labelled_once() {
    let dir = scratch("chart-runs");
    let runs = three_runs(&dir);
    let y = YAxis::default_for(&runs);
    assert_eq!(y, YAxis::ValLoss);
    let chart = runs_chart(&runs, XAxis::Flops, y).unwrap();
    assert_eq!(chart.curves.len(), 3);
    assert_eq!(
        chart.curves[0].points.len(),
        3,
        "steps 4, 8 and 12 evaluate"
    );
    let svg = chart.svg().unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
    for run in &runs {
        assert_eq!(
            count(&svg, &format!("{}\n", run.label())),
            1,
            "{}",
            run.label()
        );
    }
    // Two runs with the same label are told apart by their folders.
    let twice = runs_chart(&[runs[1].clone(), runs[1].clone()], XAxis::Flops, y).unwrap();
    assert!(twice
        .curves
        .iter()
        .all(|c| c.label.as_ref().unwrap().ends_with(" (run1)")));
    // FLOPs span 3.3e11 to 6.4e13, 2.4 decades: a logarithmic axis labelled at 1 and 3 times
    // each power of ten.
    for label in ["1e12", "3e12", "1e13"] {
        assert!(svg.contains(&format!("\n{label}\n")), "log tick {label}");
    }
    assert!(!svg.contains("\n2e12\n"));
    assert!(svg.contains("shaded: self-guided phase"));
    assert!(svg.contains("validation loss (nats/token)"));
}

#[test]
fn the_axes_follow_the_choice() {
    let dir = scratch("chart-axes");
    let runs = three_runs(&dir);
    let steps = runs_chart(&runs, XAxis::Steps, YAxis::Loss).unwrap();
    assert_eq!(steps.curves[0].points.len(), 12);
    assert_eq!(steps.curves[0].points[0].0, 1.0);
    let ppl = runs_chart(&runs, XAxis::Tokens, YAxis::ValPpl).unwrap();
    let (x, y) = ppl.curves[0].points[2];
    assert_eq!(x, 12.0 * 4096.0);
    assert!((y - 3f64.exp()).abs() < 1e-9);
    let svg = steps.svg().unwrap();
    assert!(svg.contains("steps") && svg.contains("training loss"));
}

#[test]
fn a_run_without_evaluations_is_named_when_validation_is_asked() {
    let dir = scratch("chart-no-val");
    let mut bare = FakeRun::new("tiny-dense", 1e12, 3.0, 6);
    for r in &mut bare.records {
        r.val_loss = None;
        r.val_ppl = None;
    }
    let runs = vec![
        Run::load(&FakeRun::new("tiny-dense", 1e12, 3.0, 6).write(&dir, "a")).unwrap(),
        Run::load(&bare.write(&dir, "bare")).unwrap(),
    ];
    let err = runs_chart(&runs, XAxis::Flops, YAxis::ValLoss).unwrap_err();
    assert!(matches!(err, ResultsError::NoPoints(_)));
    assert!(
        err.to_string().contains("/bare has no validation loss"),
        "{err}"
    );
    assert!(runs_chart(&runs, XAxis::Flops, YAxis::Loss).is_ok());
}

#[test]
fn validation_losses_of_different_tokenizers_are_refused_and_training_loss_is_not() {
    let dir = scratch("chart-tokenizers");
    let a = FakeRun::new("tiny-dense", 1e12, 3.0, 4);
    let mut b = FakeRun::new("tiny-dense", 1e12, 3.0, 4);
    b.model.vocab_size += 1;
    let runs = vec![
        Run::load(&a.write(&dir, "a")).unwrap(),
        Run::load(&b.write(&dir, "b")).unwrap(),
    ];
    let err = runs_chart(&runs, XAxis::Flops, YAxis::ValLoss).unwrap_err();
    assert!(
        err.to_string().contains("vocabulary 4096 and 4097"),
        "{err}"
    );
    assert!(runs_chart(&runs, XAxis::Flops, YAxis::Loss).is_ok());
}

#[test]
fn a_runs_own_loss_chart_shades_its_guided_phase() {
    let run = FakeRun::new("tiny-lowrank-r32", 1e12, 3.0, 12).guided();
    let chart = run_chart(&run.records, "tiny-lowrank-r32");
    assert_eq!(chart.curves.len(), 2);
    let (a, b) = chart.curves[0].shade.unwrap();
    assert_eq!(a, 4096.0);
    assert!(b > a && b < 12.0 * 4096.0);
    let svg = chart.svg().unwrap();
    assert!(svg.contains("training loss") && svg.contains("validation loss"));
    let plain = run_chart(&FakeRun::new("tiny-dense", 1e12, 3.0, 3).records, "d");
    assert!(plain.shade_label.is_none() && plain.curves.iter().all(|c| c.shade.is_none()));
}

#[test]
fn charts_are_written_as_svg_or_png_and_bad_outputs_are_refused_first() {
    let dir = scratch("chart-out");
    let runs = three_runs(&dir);
    let svg = runs_chart(&runs, XAxis::Flops, YAxis::ValLoss)
        .unwrap()
        .svg()
        .unwrap();
    let png = dir.join("c.png");
    write_chart(&png, &svg).unwrap();
    let bytes = fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 10_000,
        "a drawn image, not a blank one: {} bytes",
        bytes.len()
    );
    write_chart(&dir.join("c.svg"), &svg).unwrap();
    assert_eq!(fs::read_to_string(dir.join("c.svg")).unwrap(), svg);

    let missing = dir.join("no/such/c.svg");
    let err = check_output(&missing, &["svg", "png"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("folder does not exist"), "{err}");
    assert!(check_output(&dir.join("c.pdf"), &["svg", "png"]).is_err());
    assert!(check_output(&dir, &["svg", "png"]).is_err());
    assert!(write_chart(&missing, &svg).is_err());
    assert!(!missing.exists());
    let names: Vec<_> = fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().contains(".tmp")),
        "{names:?}"
    );
}

#[test]
fn ticks_are_round() {
    assert_eq!(tick(1e13), "1e13");
    assert_eq!(tick(3.5e14), "3.5e14");
    assert_eq!(tick(0.25), "0.25");
    assert_eq!(tick(12.0), "12");
    assert_eq!(tick(4.1), "4.1");
    assert_eq!(tick(0.0), "0");
}
