//! A chart of several curves drawn with plotters as SVG: logarithmic axes where the data spans
//! decades, round ticks, a legend, and shaded spans (a run's self-guided phase).

use plotters::coord::combinators::{BindKeyPoints, WithKeyPoints};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::ResultsError;

/// How a curve is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A line through the points.
    Line,
    /// A line with a marker on each point.
    LineAndMarkers,
    /// Markers only.
    Markers,
}

/// One curve: its points in order, its label, and the span to shade behind it.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend text; none keeps it out of the legend.
    pub label: Option<String>,
    /// Points `(x, y)`, finite.
    pub points: Vec<(f64, f64)>,
    /// An x span shaded in the curve's colour.
    pub shade: Option<(f64, f64)>,
    /// How it is drawn.
    pub style: Style,
    /// Index into the palette (curves of one run or family share it).
    pub color: usize,
}

/// A whole chart.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Caption.
    pub title: String,
    /// Horizontal axis title.
    pub x_title: String,
    /// Vertical axis title.
    pub y_title: String,
    /// The curves, drawn in order.
    pub curves: Vec<Curve>,
    /// Legend text for the shaded spans, when any curve has one.
    pub shade_label: Option<String>,
}

/// Size of the drawing, pixels.
pub const SIZE: (u32, u32) = (960, 560);

/// A colour-blind-safe palette (Okabe and Ito), then four darker colours; the thirteenth curve
/// takes the first colour again.
const PALETTE: [RGBColor; 12] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
    RGBColor(140, 30, 30),
    RGBColor(60, 60, 150),
    RGBColor(90, 110, 20),
    RGBColor(130, 60, 130),
];

/// The colour of palette entry `i`.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String, ResultsError> {
        let all: Vec<(f64, f64)> = self.curves.iter().flat_map(|c| c.points.clone()).collect();
        if all.is_empty() {
            return Err(ResultsError::NoPoints("nothing to draw".into()));
        }
        let xs = Span::of(all.iter().map(|p| p.0));
        let ys = Span::of(all.iter().map(|p| p.1));
        let mut out = String::new();
        let result = match (xs.log(), ys.log()) {
            (false, false) => self.draw(&mut out, xs.linear(), ys.linear()),
            (true, false) => self.draw(&mut out, xs.logarithmic(), ys.linear()),
            (false, true) => self.draw(&mut out, xs.linear(), ys.logarithmic()),
            (true, true) => self.draw(&mut out, xs.logarithmic(), ys.logarithmic()),
        };
        result.map_err(ResultsError::Draw)?;
        Ok(out)
    }

    fn draw<X, Y>(&self, out: &mut String, xr: X, yr: Y) -> Result<(), String>
    where
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let (y_lo, y_hi) = (yr.range().start, yr.range().end);
        let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 19))
            .margin(16)
            .x_label_area_size(46)
            .y_label_area_size(64)
            .build_cartesian_2d(xr, yr)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(&self.x_title)
            .y_desc(&self.y_title)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_labels(6)
            .y_labels(8)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(BLACK.mix(0.04))
            .draw()
            .map_err(|e| e.to_string())?;
        for c in &self.curves {
            if let Some((a, b)) = c.shade {
                let fill = color(c.color).mix(0.10).filled();
                chart
                    .draw_series([Rectangle::new([(a, y_lo), (b, y_hi)], fill)])
                    .map_err(|e| e.to_string())?;
            }
        }
        for c in &self.curves {
            draw_curve(&mut chart, c)?;
        }
        if let Some(text) = &self.shade_label {
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(|e| e.to_string())?
                .label(text)
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 20, y + 6)], BLACK.mix(0.12).filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// One curve on the chart: its line or markers, its legend entry.
fn draw_curve<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    c: &Curve,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let col = color(c.color);
    let line = col.stroke_width(2);
    let points = c.points.iter().copied();
    let drawn = match c.style {
        Style::Line | Style::LineAndMarkers => chart.draw_series(LineSeries::new(points, line)),
        Style::Markers => chart.draw_series(points.map(|p| Circle::new(p, 4, col.filled()))),
    }
    .map_err(|e| e.to_string())?;
    if let Some(label) = &c.label {
        let marker = if c.style == Style::Line { 0 } else { 4 };
        drawn.label(label).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (20, 0)], line)
                + Circle::new((10, 0), marker, col.filled())
        });
    }
    if c.style == Style::LineAndMarkers {
        let marks = c.points.iter().map(|&p| Circle::new(p, 3, col.filled()));
        chart.draw_series(marks).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The extent of some values, and how to lay them on an axis.
struct Span {
    lo: f64,
    hi: f64,
}

impl Span {
    fn of(values: impl Iterator<Item = f64>) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        Self { lo, hi }
    }

    /// Logarithmic where every value is positive and they span more than 1.5 decades.
    fn log(&self) -> bool {
        self.lo > 0.0 && self.hi / self.lo > 30.0
    }

    fn linear(&self) -> RangedCoordf64 {
        let pad = ((self.hi - self.lo) * 0.05)
            .max(self.hi.abs() * 1e-3)
            .max(1e-9);
        (self.lo - pad..self.hi + pad).into()
    }

    /// A logarithmic axis labelled at 1, 2 and 5 times each power of ten (1 and 3 over more than
    /// two decades, powers of ten alone over more than four), with a light line at every
    /// integer multiple.
    fn logarithmic(&self) -> WithKeyPoints<LogCoord<f64>> {
        let (lo, hi) = (self.lo / 1.15, self.hi * 1.15);
        let decades = (hi / lo).log10();
        let labelled: &[u32] = match decades {
            d if d > 4.0 => &[1],
            d if d > 2.0 => &[1, 3],
            _ => &[1, 2, 5],
        };
        let (mut bold, mut light) = (Vec::new(), Vec::new());
        let mut power = 10f64.powf(lo.log10().floor());
        while power <= hi {
            for m in 1..10u32 {
                let v = power * f64::from(m);
                if (lo..=hi).contains(&v) {
                    light.push(v);
                    if labelled.contains(&m) {
                        bold.push(v);
                    }
                }
            }
            power *= 10.0;
        }
        let axis: LogCoord<f64> = (lo..hi).log_scale().into();
        axis.with_key_points(bold).with_light_points(light)
    }
}

/// A tick label: `2e15`, `3.5e14`, `0.25`, `12`, `4.1`.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e4).contains(&a) {
        let s = format!("{v:.2e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
