//! The report page: one row per run, the charts inline, the settings that differ highlighted,
//! samples shown, text escaped, and nothing fetched from anywhere.

use super::{scratch, FakeRun};
use crate::report::{report_html, Sample};
use crate::Run;

fn runs(dir: &std::path::Path) -> Vec<Run> {
    let mut unfinished = FakeRun::new("tiny-lowrank-r32", 4e12, 2.9, 8);
    unfinished.records.truncate(5);
    unfinished.records[4].val_loss = Some(3.5);
    [
        FakeRun::new("tiny-dense", 1e12, 3.0, 8),
        FakeRun::new("tiny-lowrank-r32", 6.4e13, 2.6, 8).guided(),
        unfinished,
    ]
    .iter()
    .enumerate()
    .map(|(i, r)| Run::load(&r.write(dir, &format!("run{i}<&>"))).unwrap())
    .collect()
}

#[test]
fn the_page_compares_the_runs_with_charts_settings_and_samples() {
    let dir = scratch("report");
    let runs = runs(&dir);
    let sample = Sample {
        checkpoint: "ckpt".into(),
        prompt: "Once".into(),
        text: " upon <a> time".into(),
    };
    let page = report_html(&runs, &[Some(sample), None, None]).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
    assert_eq!(page.matches("<tr class=\"run\">").count(), 3);
    assert_eq!(
        page.matches("<svg").count(),
        2,
        "validation and training loss charts"
    );
    // The best final validation loss is marked; the unfinished run says how far it went.
    assert!(
        page.contains("<span class=\"best\">2.6000</span>"),
        "{page}"
    );
    assert!(page.contains("5 <span class=\"note\">of 8</span>"));
    // model_name and the FFN's structure differ; seq_len does not.
    let differ = &page[page.find("settings-differ").unwrap()..page.find("settings-same").unwrap()];
    assert!(differ.contains("<td>model_name</td>") && differ.contains("model.ffn.fc1"));
    assert!(!differ.contains("<td>seq_len</td>"));
    assert!(page.contains("<b>Once</b> upon &lt;a&gt; time"));
    assert!(page.contains("run0&lt;&amp;&gt;") && !page.contains("run0<&>"));
    // Self-contained: no scripts, no links, no fetched resources.
    for needle in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!page.contains(needle), "{needle}");
    }
    assert!(
        page.contains("cannot fit any family"),
        "no family has three runs here"
    );
}

#[test]
fn the_page_has_a_fit_when_a_family_supports_one() {
    let dir = scratch("report-fit");
    let runs: Vec<Run> = [1e12, 4e12, 1.6e13, 6.4e13]
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let r = FakeRun::new("tiny-dense", c, 2.0 + 4000.0 * c.powf(-0.3), 4);
            Run::load(&r.write(&dir, &format!("d{i}"))).unwrap()
        })
        .collect();
    let page = report_html(&runs, &[]).unwrap();
    assert!(page.contains("alpha [95%]"));
    assert_eq!(page.matches("<svg").count(), 3);
    assert_eq!(page.matches("no sample").count(), 4);
}
