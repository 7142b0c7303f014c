//! `strata report`: one self-contained HTML page comparing runs: a table of what each run came
//! to, the charts inline (SVG), scaling fits where a family supports one, the settings that
//! differ highlighted, and a generated sample per run. No scripts, no external resources.

use crate::html::{esc, td, td_num, Table, STYLE};
use crate::plot::{check_comparable, runs_chart};
use crate::scaling::fit_runs;
use crate::settings::settings;
use crate::summary::Summary;
use crate::{compact, ResultsError, Run, XAxis, YAxis};

/// Text a run's checkpoint generated for the page.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The checkpoint folder it came from.
    pub checkpoint: String,
    /// The prompt.
    pub prompt: String,
    /// The continuation (without the prompt).
    pub text: String,
}

/// The page for `runs`, with `samples[i]` the sample of run `i` (none: the run has no
/// checkpoint with a tokenizer, or samples were not asked for).
pub fn report_html(runs: &[Run], samples: &[Option<Sample>]) -> Result<String, ResultsError> {
    check_comparable(runs)?;
    let y = YAxis::default_for(runs);
    let mut body = format!(
        "<h1>strata: {} run{} compared</h1>\n",
        runs.len(),
        plural(runs.len())
    );
    body += &runs_table(runs);
    body += "<h2>Curves</h2>\n";
    body += &figure(runs, XAxis::Flops, y)?;
    body += &figure(runs, XAxis::Tokens, YAxis::Loss)?;
    body += &fits_section(runs);
    body += &settings_section(runs);
    body += &samples_section(runs, samples);
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>strata report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        esc(&runs.iter().map(Run::name).collect::<Vec<_>>().join(", "))
    ))
}

/// One row per run: what it is, how far it went, its cost and speed, its final loss.
fn runs_table(runs: &[Run]) -> String {
    let head = [
        "run",
        "model",
        "params",
        "structure",
        "self-guided",
        "steps",
        "tokens",
        "training FLOPs",
        "wall time",
        "tokens/s",
        "MFU",
        "val loss",
        "val ppl",
    ];
    let summaries: Vec<Summary> = runs.iter().map(Summary::of).collect();
    let best = summaries
        .iter()
        .filter_map(|s| s.val_loss)
        .min_by(f64::total_cmp);
    let mut table = Table::new("runs", &head);
    for (run, s) in runs.iter().zip(&summaries) {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("–".into(), f);
        let is_best = s.val_loss.is_some() && s.val_loss == best && runs.len() > 1;
        let loss = opt(s.val_loss, &|v| format!("{v:.4}"));
        let steps = match s.finished() {
            true => s.steps.to_string(),
            false => format!(
                "{} <span class=\"note\">of {}</span>",
                s.steps, s.total_steps
            ),
        };
        table.row(
            Some("run"),
            &[
                td(esc(&run.name())),
                td(esc(&run.model_name)),
                td_num(compact(run.params as f64)),
                td(esc(&run.structure())),
                td(if run.self_guided { "yes" } else { "no" }.into()),
                td_num(steps),
                td_num(compact(s.tokens as f64)),
                td_num(format!("{:.3e}", s.flops)),
                td_num(duration(s.seconds)),
                td_num(opt(s.tokens_per_s, &|v| format!("{v:.0}"))),
                td_num(opt(s.mfu, &|v| format!("{:.1}%", 100.0 * v))),
                td_num(if is_best {
                    format!("<span class=\"best\">{loss}</span>")
                } else {
                    loss
                }),
                td_num(opt(s.val_ppl, &|v| format!("{v:.2}"))),
            ],
        );
    }
    table.finish()
}

/// A chart of `runs` inline, or a note saying why there is none.
fn figure(runs: &[Run], x: XAxis, y: YAxis) -> Result<String, ResultsError> {
    let svg = match runs_chart(runs, x, y) {
        Ok(chart) => chart.svg()?,
        Err(ResultsError::NoPoints(why)) => {
            return Ok(format!(
                "<p class=\"note\">No chart of {}: {}</p>\n",
                y.title(),
                esc(&why)
            ))
        }
        Err(e) => return Err(e),
    };
    Ok(format!(
        "<figure class=\"chart\">\n{svg}\n<figcaption>{} against {}; shaded: each run's \
         self-guided phase.</figcaption>\n</figure>\n",
        esc(y.title()),
        esc(x.title())
    ))
}

/// Scaling fits of the families that support one, or a line saying none does.
fn fits_section(runs: &[Run]) -> String {
    let mut s = "<h2>Scaling fits</h2>\n".to_string();
    match fit_runs(runs, 0) {
        Ok(fits) => {
            s += &format!("<pre>{}</pre>\n", esc(&fits.table()));
            if let Ok(svg) = fits.chart().svg() {
                s += &format!("<figure class=\"chart\">\n{svg}\n<figcaption>final validation loss \
                               against training FLOPs, with each family's fit</figcaption>\n</figure>\n");
            }
        }
        Err(e) => s += &format!("<p class=\"note\">{}</p>\n", esc(&e.to_string())),
    }
    s
}

/// Every setting, one column per run: those that differ first and highlighted, the shared
/// ones folded away.
fn settings_section(runs: &[Run]) -> String {
    let mut head = vec!["setting".to_string()];
    head.extend(runs.iter().map(Run::name));
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let all = settings(runs);
    let (differ, same): (Vec<_>, Vec<_>) = all.iter().partition(|s| s.differs());
    let table = |id: &str, rows: &[&crate::settings::Setting], class: Option<&str>| {
        let mut t = Table::new(id, &head);
        for s in rows {
            let mut cells = vec![td(esc(&s.key))];
            cells.extend(
                s.values
                    .iter()
                    .map(|v| td(esc(v.as_deref().unwrap_or("–")))),
            );
            t.row(class, &cells);
        }
        t.finish()
    };
    let mut s = format!(
        "<h2>Settings</h2>\n<p>{} setting(s) differ between the runs.</p>\n",
        differ.len()
    );
    if !differ.is_empty() {
        s += &table("settings-differ", &differ, Some("differs"));
    }
    s += &format!(
        "<details><summary>{} setting(s) the runs share</summary>\n{}</details>\n",
        same.len(),
        table("settings-same", &same, None)
    );
    s
}

/// Each run's generated sample.
fn samples_section(runs: &[Run], samples: &[Option<Sample>]) -> String {
    let mut s = "<h2>Samples</h2>\n".to_string();
    for (i, run) in runs.iter().enumerate() {
        s += &format!("<h3>{}</h3>\n", esc(&run.name()));
        s += &match samples.get(i).and_then(Option::as_ref) {
            Some(x) => format!(
                "<pre class=\"sample\"><b>{}</b>{}</pre>\n<p class=\"source\">from {}</p>\n",
                esc(&x.prompt),
                esc(&x.text),
                esc(&x.checkpoint)
            ),
            None => "<p class=\"note\">no sample (no checkpoint with a tokenizer)</p>\n".into(),
        };
    }
    s
}

/// `42 s`, `3.5 min`, `2.1 h`.
fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 10.0 => format!("{s:.1} s"),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
