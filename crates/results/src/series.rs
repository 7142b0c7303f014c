//! What a chart puts on its axes: a run's records as points, and the span of its self-guided
//! phase.

use storage::StepRecord;

use crate::Run;

/// The horizontal axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum XAxis {
    /// Cumulative training FLOPs.
    Flops,
    /// Tokens trained on.
    Tokens,
    /// Optimizer steps.
    Steps,
    /// Seconds of training.
    Seconds,
}

/// The vertical axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum YAxis {
    /// Training loss of each logged step.
    Loss,
    /// Validation loss (evaluation steps).
    #[cfg_attr(feature = "clap", value(alias = "val_loss"))]
    ValLoss,
    /// Validation perplexity (evaluation steps).
    #[cfg_attr(feature = "clap", value(alias = "val_ppl"))]
    ValPpl,
}

impl XAxis {
    /// The record's value on this axis.
    pub fn of(self, r: &StepRecord) -> f64 {
        match self {
            Self::Flops => r.flops,
            Self::Tokens => r.tokens as f64,
            Self::Steps => r.step as f64,
            Self::Seconds => r.elapsed_s,
        }
    }

    /// The axis' title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Flops => "training FLOPs",
            Self::Tokens => "tokens",
            Self::Steps => "steps",
            Self::Seconds => "seconds of training",
        }
    }
}

impl YAxis {
    /// The record's value on this axis, where it has one.
    pub fn of(self, r: &StepRecord) -> Option<f64> {
        match self {
            Self::Loss => Some(r.loss),
            Self::ValLoss => r.val_loss,
            Self::ValPpl => r.val_ppl,
        }
    }

    /// The axis' title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Loss => "training loss (nats/token)",
            Self::ValLoss => "validation loss (nats/token)",
            Self::ValPpl => "validation perplexity",
        }
    }

    /// Whether the axis compares losses on held-out text (only meaningful over one tokenizer).
    pub fn is_validation(self) -> bool {
        self != Self::Loss
    }

    /// Validation loss where any run has one, else training loss.
    pub fn default_for(runs: &[Run]) -> Self {
        let any_val = runs
            .iter()
            .any(|r| r.records.iter().any(|s| s.val_loss.is_some()));
        if any_val {
            Self::ValLoss
        } else {
            Self::Loss
        }
    }
}

/// The records' finite points on the two axes, in record order.
pub fn points(records: &[StepRecord], x: XAxis, y: YAxis) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| y.of(r).map(|v| (x.of(r), v)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect()
}

/// From the first record to the last with a self-guided weight above zero, on `x`; none for a
/// run without self-guided training.
pub fn guided_span(records: &[StepRecord], x: XAxis) -> Option<(f64, f64)> {
    let last = records.iter().rev().find(|r| r.alpha > 0.0)?;
    let first = records.first()?;
    Some((x.of(first), x.of(last)))
}
