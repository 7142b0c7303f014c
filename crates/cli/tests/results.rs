//! `strata plot` and `strata fit` end to end: a real run trained and drawn (its own `loss.svg`
//! too), runs made from it with records on a known scaling law fitted back, and every bad input
//! a one-line error that writes nothing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// A real run of the small model: 6 steps, evaluating every 2.
fn trained(dir: &Path) -> PathBuf {
    let (_, data, model) = prepared(dir);
    train(&model, &data, &dir.join("run"), "6")
}

/// `strata train` of `model` on `data` into `run` for `steps` steps, evaluating every 2.
fn train(model: &str, data: &str, run: &Path, steps: &str) -> PathBuf {
    let out = train_cmd(
        model,
        data,
        run.to_str().unwrap(),
        &[&[
            "--steps",
            steps,
            "--batch-size",
            "4",
            "--eval-every",
            "2",
            "--seed",
            "1",
        ]],
    );
    stdout_text(&out);
    run.to_path_buf()
}

/// A copy of `run`'s config as `name`, whose last record has validation loss
/// `2 + 4000 * flops^-0.3` at `flops`.
fn on_the_law(run: &Path, name: &str, flops: f64) -> PathBuf {
    let dir = run.parent().unwrap().join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::copy(run.join("config.json"), dir.join("config.json")).unwrap();
    let text = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let loss = 2.0 + 4000.0 * flops.powf(-0.3);
    last["flops"] = flops.into();
    last["val_loss"] = loss.into();
    last["val_ppl"] = loss.exp().into();
    fs::write(dir.join("metrics.jsonl"), format!("{last}\n")).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn runs_are_plotted_and_fitted() {
    let dir = scratch("results-ok");
    let run = trained(&dir);
    let own = fs::read_to_string(run.join("loss.svg")).unwrap();
    assert!(
        own.contains("training loss") && own.contains("validation loss"),
        "{own}"
    );

    let svg = dir.join("runs.svg");
    let text = stdout_text(&strata(&["plot", s(&run), s(&run), "--out", s(&svg)]));
    assert!(text.contains("2 runs"), "{text}");
    let drawn = fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("validation loss") && drawn.contains("training FLOPs"));
    assert!(
        drawn.contains("(run)"),
        "two runs of one label are told apart by folder"
    );

    let png = dir.join("steps.png");
    stdout_text(&strata(&[
        "plot",
        s(&run),
        "--x",
        "steps",
        "--y",
        "loss",
        "--out",
        s(&png),
    ]));
    assert_eq!(&fs::read(&png).unwrap()[..4], b"\x89PNG");

    let family: Vec<PathBuf> = [1e12, 4e12, 1.6e13, 6.4e13]
        .iter()
        .enumerate()
        .map(|(i, &c)| on_the_law(&run, &format!("law{i}"), c))
        .collect();
    let mut args = vec!["fit".to_string()];
    args.extend(family.iter().map(|p| s(p).to_string()));
    args.extend([
        "--json".into(),
        "--out".into(),
        s(&dir.join("fit.svg")).into(),
    ]);
    let json = stdout_json(&strata(&args));
    let fit = &json["fits"][0];
    assert_eq!(fit["points"].as_array().unwrap().len(), 4);
    let alpha = fit["law"]["alpha"].as_f64().unwrap();
    let e = fit["law"]["e"].as_f64().unwrap();
    assert!(
        (alpha - 0.3).abs() < 1e-3 && (e - 2.0).abs() < 1e-3,
        "{fit}"
    );
    assert!(fs::read_to_string(dir.join("fit.svg"))
        .unwrap()
        .contains("alpha 0.3000"));
    args.truncate(5);
    let table = stdout_text(&strata(&args));
    assert!(
        table.contains("alpha [95%]") && table.contains("residual"),
        "{table}"
    );
}

#[test]
fn bad_inputs_are_one_line_errors_that_write_nothing() {
    let dir = scratch("results-bad");
    let run = trained(&dir);
    let out = dir.join("out.svg");
    let plot = |args: &[&str]| {
        let mut a = vec!["plot"];
        a.extend_from_slice(args);
        strata(&a)
    };
    fails_with(
        plot(&[s(&dir), "--out", s(&out)]),
        "not a strata run folder",
    );
    fails_with(plot(&["no-such-run", "--out", s(&out)]), "no such folder");
    fails_with(
        plot(&[s(&run), "--out", s(&dir.join("a.pdf"))]),
        ".svg or .png",
    );
    fails_with(
        plot(&[s(&run), "--out", s(&dir.join("no/x.svg"))]),
        "does not exist",
    );
    fs::create_dir_all(dir.join("folder.svg")).unwrap();
    fails_with(
        plot(&[s(&run), "--out", s(&dir.join("folder.svg"))]),
        "is a folder",
    );
    fails_with(plot(&[s(&run), "--y", "accuracy"]), "accuracy");

    // A metrics file cut mid-line, as a killed writer leaves it, and one with a corrupt line.
    let cut = dir.join("cut");
    fs::create_dir_all(&cut).unwrap();
    fs::copy(run.join("config.json"), cut.join("config.json")).unwrap();
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    fs::write(cut.join("metrics.jsonl"), &metrics[..metrics.len() - 9]).unwrap();
    fails_with(
        plot(&[s(&run), s(&cut), "--out", s(&out)]),
        "line 6 is not a metrics record",
    );
    fs::write(cut.join("metrics.jsonl"), "garbage\n").unwrap();
    fails_with(plot(&[s(&cut), "--out", s(&out)]), "line 1");
    fs::remove_file(cut.join("metrics.jsonl")).unwrap();
    fails_with(plot(&[s(&cut), "--out", s(&out)]), "logged no step");

    // Validation losses over another tokenizer are refused, naming both runs.
    let other = dir.join("other");
    fs::create_dir_all(&other).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    config["data_record"]["tokenizer_fnv1a"] = 12345.into();
    fs::write(other.join("config.json"), config.to_string()).unwrap();
    fs::copy(run.join("metrics.jsonl"), other.join("metrics.jsonl")).unwrap();
    fails_with(
        plot(&[s(&run), s(&other), "--out", s(&out)]),
        "different tokenizers",
    );
    fails_with(strata(&["fit", s(&run), s(&other)]), "different tokenizers");
    assert!(!out.exists(), "nothing written by a failed command");

    // One run cannot support a fit; an existing chart is left as it was.
    fs::write(&out, "kept").unwrap();
    fails_with(
        strata(&["fit", s(&run), "--out", s(&out)]),
        "cannot fit the family",
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "kept");
    fails_with(strata(&["fit"]), "RUN");
}

#[test]
fn the_report_page_compares_real_runs_with_samples() {
    let dir = scratch("results-report");
    let (_, data, model) = prepared(&dir);
    let a = train(&model, &data, &dir.join("a"), "4");
    let b = train(&model, &data, &dir.join("b"), "6");
    let page = dir.join("page.html");
    let args = [
        "report",
        s(&a),
        s(&b),
        "--out",
        s(&page),
        "--sample-tokens",
        "8",
        "--prompt",
        "the",
    ];
    let text = stdout_text(&strata(&args));
    assert!(text.contains("2 runs"), "{text}");
    let html = fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<tr class=\"run\">").count(), 2);
    assert_eq!(
        html.matches("<pre class=\"sample\">").count(),
        2,
        "each run's checkpoint wrote one"
    );
    let differ = &html[html.find("settings-differ").unwrap()..html.find("settings-same").unwrap()];
    assert!(
        differ.contains("<td>budget.steps</td><td>4</td><td>6</td>"),
        "{differ}"
    );

    fails_with(
        strata(&["report", s(&a), "--out", s(&dir.join("page.txt"))]),
        ".html",
    );
    fails_with(
        strata(&["report", s(&dir), "--out", s(&page)]),
        "not a strata run folder",
    );
    assert_eq!(
        fs::read_to_string(&page).unwrap(),
        html,
        "a failed report keeps the old page"
    );
    #[cfg(feature = "browser")]
    in_a_browser(&page);
}

/// The page in a real headless browser (Debian's Chromium, which CI installs): it loads
/// without a console error or a failed load, fetches nothing, shows one row per run, and its
/// charts are drawn. A page with a missing image and a console error is caught first (the
/// check can fail).
#[cfg(feature = "browser")]
fn in_a_browser(page: &Path) {
    use test_support::browser::{chromium, Page};
    let browser = chromium().expect("the browser test needs Chromium (apt-get install chromium)");
    let bad = page.with_file_name("bad.html");
    fs::write(
        &bad,
        "<p>x</p><img src=\"missing.png\"><script>console.error('boom')</script>",
    )
    .unwrap();
    let caught = Page::open(&browser, &bad).problems.clone();
    assert!(caught.iter().any(|p| p.contains("boom")), "{caught:?}");
    assert!(
        caught
            .iter()
            .any(|p| p.contains("missing.png") || p.contains("ERR_FILE_NOT_FOUND")),
        "{caught:?}"
    );

    let mut tab = Page::open(&browser, page);
    assert_eq!(
        tab.eval("document.querySelectorAll('#runs tr.run').length"),
        2
    );
    assert_eq!(
        tab.eval("performance.getEntriesByType('resource').length"),
        0
    );
    let charts = tab.eval(
        "[...document.querySelectorAll('figure.chart svg')].map(s => { \
           const r = s.getBoundingClientRect(); \
           return [r.width, r.height, s.querySelectorAll('polyline, circle').length]; })",
    );
    let charts = charts.as_array().unwrap();
    assert_eq!(charts.len(), 2, "{charts:?}");
    for c in charts {
        assert!(
            c[0].as_f64().unwrap() > 300.0 && c[1].as_f64().unwrap() > 150.0,
            "{c}"
        );
        assert!(c[2].as_u64().unwrap() > 2, "curves drawn: {c}");
    }
    assert!(tab.problems.is_empty(), "{:?}", tab.problems);
}
