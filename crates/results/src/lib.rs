//! strata's results: training runs read back from their folders and put side by side.
//!
//! - [`Run`]: a run folder's `config.json` and `metrics.jsonl`, with its label (model,
//!   parameters, structure) and the family a scaling fit groups it in;
//! - [`plot`]: several runs on one chart (`strata plot`), and one run's `loss.svg`;
//! - [`chart`]: the drawing (plotters, SVG), [`png`]: the SVG as a PNG image;
//! - [`fit`] and [`scaling`]: `L(C) = E + A * C^(-alpha)` fitted per family (`strata fit`);
//! - [`report`]: one self-contained HTML page comparing runs (`strata report`), from each
//!   run's [`summary`] and [`settings`];
//! - [`output`]: charts and pages written whole or not at all.
//!
//! Every failure is a one-line [`ResultsError`] naming the run or file.

pub mod chart;
mod error;
pub mod fit;
mod html;
pub mod output;
pub mod plot;
pub mod png;
pub mod report;
mod run;
pub mod scaling;
pub mod series;
pub mod settings;
pub mod summary;

pub use chart::Chart;
pub use error::ResultsError;
pub use run::{compact, read_metrics, Run};
pub use series::{XAxis, YAxis};

#[cfg(test)]
mod tests;
