//! The little HTML the report page needs: escaped text and tables built row by row.

/// `text` with `& < > "` escaped, for element content and attribute values.
pub fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A `<table>`: a header row, then rows of cells already escaped (or markup).
pub struct Table {
    html: String,
}

impl Table {
    /// A table with `id` and the header cells `head` (plain text).
    pub fn new(id: &str, head: &[&str]) -> Self {
        let cells: String = head
            .iter()
            .map(|h| format!("<th>{}</th>", esc(h)))
            .collect();
        Self {
            html: format!("<table id=\"{id}\">\n<thead><tr>{cells}</tr></thead>\n<tbody>\n"),
        }
    }

    /// A row of class `class` (none: no class) of cells made by [`td`] and [`td_num`].
    pub fn row(&mut self, class: Option<&str>, cells: &[String]) {
        let class = class.map_or(String::new(), |c| format!(" class=\"{c}\""));
        self.html += &format!("<tr{class}>{}</tr>\n", cells.concat());
    }

    /// The table's markup.
    pub fn finish(self) -> String {
        self.html + "</tbody>\n</table>\n"
    }
}

/// A cell holding `html`.
pub fn td(html: String) -> String {
    format!("<td>{html}</td>")
}

/// A right-aligned cell for a number.
pub fn td_num(html: String) -> String {
    format!("<td class=\"num\">{html}</td>")
}

/// The page's style sheet (no external resources).
pub const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.differs td { background: #fff4d6; }
tr.differs td:first-child { font-weight: 600; }
.best { font-weight: 700; }
.note { color: #8a5300; }
.source { color: #777; font-size: 0.85em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; white-space: pre-wrap; font-size: 0.85em; }
details { margin: 0.5em 0; }
";
