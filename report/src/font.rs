//! The text of every chart: DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`, its licence beside it)
//! and rasterised by plotters' pure-Rust `ab_glyph` renderer: no system font, fontconfig or freetype is looked up,
//! so a bare machine draws the same pictures as a desktop.

use std::sync::OnceLock;

use plotters::prelude::*;

/// The family name the embedded font is registered under: plotters' default text (e.g. in the mesh) asks for
/// `FontFamily::SansSerif`, so this one name serves every piece of text.
const FAMILY: &str = "sans-serif";
pub(crate) const TITLE_PX: f64 = 22.0;
pub(crate) const AXIS_LABEL_PX: f64 = 17.0;
pub(crate) const TICK_PX: f64 = 14.0;
pub(crate) const LEGEND_PX: f64 = 15.0;

/// Registers the embedded font with plotters, once per process. Without it every piece of text fails to draw.
pub(crate) fn register_font() -> Result<(), String> {
    static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err("the embedded font assets/DejaVuSans.ttf could not be read".to_string()) }
}

/// The embedded font at `px` pixels.
pub(crate) fn font(px: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), px, FontStyle::Normal)
}

/// Width and height in pixels of `text` (zero where the font is missing: drawing then fails with the reason).
pub(crate) fn text_size(text: &str, font: &FontDesc) -> (i32, i32) {
    font.box_size(text).map(|(w, h)| (w as i32, h as i32)).unwrap_or((0, 0))
}
