//! The run's records: `metrics.jsonl` (one JSON object per logged step) and the loss curve
//! (`loss.svg`, drawn from those records with no plotting dependency).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use corpus::DataError;
use storage::write_atomic;

/// One logged optimizer step; on evaluation steps `val_loss` and `val_ppl` are set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct StepRecord {
    /// Optimizer steps done (1-based: the first step logs `step: 1`).
    pub step: u64,
    /// Steps the run will take.
    pub total_steps: u64,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Mean token loss of this step's global batch (`null` when a skipped step's loss was not
    /// finite).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Self-guided mixing weight of this step (0 without guides).
    pub alpha: f64,
    /// Guided layers evaluated in this step's last micro-batch (reduce_flop draws).
    pub guides_used: usize,
    /// Global gradient norm before clipping (`null` when an f16 step overflowed).
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    /// Whether the update was skipped: f16 gradients overflowed (the loss scale was halved), or
    /// the loss or gradients were not finite and `--skip-nonfinite` allowed a skip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// f16's loss scale during this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Cumulative training FLOPs.
    pub flops: f64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
    /// Training tokens per second since the previous record.
    pub tokens_per_s: f64,
    /// Model FLOPs utilisation since the previous record, given a peak FLOP/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
    /// Validation loss (evaluation steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Validation perplexity, `exp(val_loss)` (evaluation steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_ppl: Option<f64>,
}

impl StepRecord {
    /// Whether the update was skipped for a non-finite loss or gradients under
    /// `--skip-nonfinite` (an f16 overflow skip has a loss scale).
    pub fn skipped_nonfinite(&self) -> bool {
        self.skipped && self.loss_scale.is_none()
    }
}

/// Appends records to `metrics.jsonl`.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    records: Vec<StepRecord>,
}

impl MetricsLog {
    /// Opens the log of a run; when resuming from `step`, records past it (written after the
    /// checkpoint) are dropped first, atomically, so the log continues without duplicates.
    pub fn open(path: &Path, resume_from: Option<u64>) -> Result<Self, TrainError> {
        let mut records = Vec::new();
        if let Some(step) = resume_from {
            if let Ok(text) = std::fs::read_to_string(path) {
                records = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<StepRecord>(l).ok())
                    .filter(|r| r.step <= step)
                    .collect();
            }
            let mut text = String::new();
            for r in &records {
                text.push_str(&serde_json::to_string(r).expect("plain record"));
                text.push('\n');
            }
            write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(path)
            .map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            records,
        })
    }

    /// Appends one record (one line, flushed).
    pub fn append(&mut self, record: &StepRecord) -> Result<(), TrainError> {
        let mut line = serde_json::to_string(record).expect("plain record");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| DataError::io(&self.path, e))?;
        self.records.push(record.clone());
        Ok(())
    }

    /// Every record of the run so far.
    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }
}

/// Draws training loss (line) and validation loss (dots) against tokens as an SVG.
pub fn loss_svg(records: &[StepRecord], title: &str) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let train: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.loss.is_finite())
        .map(|r| (r.tokens as f64, r.loss))
        .collect();
    let val: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| {
            r.val_loss
                .filter(|v| v.is_finite())
                .map(|v| (r.tokens as f64, v))
        })
        .collect();
    let all = train.iter().chain(&val);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-9 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| top + (y1 - y) / (y1 - y0) * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        escape(title)
    );
    // Axes with five ticks each.
    s += &format!(
        "<path d=\"M{left} {top} V{} H{}\" stroke=\"black\" fill=\"none\"/>\n",
        h - bottom,
        w - right
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (x, y) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.3}</text>\n",
            px(x),
            h - bottom + 18.0,
            compact(x),
            left - 6.0,
            py(y) + 4.0,
            y
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">tokens</text>\n<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">loss (nats/token)</text>\n",
        (left + w - right) / 2.0,
        h - 10.0,
        h / 2.0,
        h / 2.0
    );
    if !train.is_empty() {
        let points: Vec<String> = train
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        s += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n",
            points.join(" ")
        );
    }
    for &(x, y) in &val {
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#d62728\"/>\n",
            px(x),
            py(y)
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" fill=\"#1f77b4\">train</text>\n<text x=\"{}\" y=\"{}\" fill=\"#d62728\">validation</text>\n</svg>\n",
        w - right - 110.0,
        top + 14.0,
        w - right - 60.0,
        top + 14.0
    );
    s
}

fn compact(x: f64) -> String {
    match x.abs() {
        a if a >= 1e9 => format!("{:.2}G", x / 1e9),
        a if a >= 1e6 => format!("{:.2}M", x / 1e6),
        a if a >= 1e3 => format!("{:.1}k", x / 1e3),
        _ => format!("{x:.0}"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Reads a number written by serde_json, where non-finite numbers become `null`.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
