//! An SVG chart drawn into a PNG image (resvg), its text set in a sans-serif font of the system.

use resvg::{tiny_skia, usvg};

use crate::ResultsError;

/// Sans-serif families tried in order for the chart's `sans-serif` text.
const SANS: [&str; 5] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
];

/// The PNG bytes of `svg`.
pub fn png(svg: &str) -> Result<Vec<u8>, ResultsError> {
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    let families: Vec<String> = fonts
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .collect();
    let Some(family) = SANS
        .iter()
        .map(|s| s.to_string())
        .find(|s| families.contains(s))
        .or_else(|| families.first().cloned())
    else {
        return Err(ResultsError::Draw(
            "PNG output needs a font on this system and none was found; write .svg instead".into(),
        ));
    };
    fonts.set_sans_serif_family(family);
    let tree =
        usvg::Tree::from_str(svg, &options).map_err(|e| ResultsError::Draw(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| ResultsError::Draw("empty image".into()))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| ResultsError::Draw(e.to_string()))
}
