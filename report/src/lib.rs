//! What afx's commands leave for a person to read: charts as PNG files and Markdown tables.
//!
//! - [`chart`]: [`line_chart`] (named [`Series`] of points, linear or log axes) and [`bar_chart`] (grouped bars
//!   per category), 1000×600 PNGs with a title, labelled axes with tick values and a legend; the text is set in
//!   DejaVu Sans, embedded in the binary, so every machine draws the same pixels.
//! - [`table`]: a [`Table`] for `report.md`.
//!
//! ```no_run
//! use afx_report::{LineChart, Series, line_chart};
//!
//! let chart = LineChart {
//!     title: "Loss",
//!     x_label: "step",
//!     y_label: "loss",
//!     log_x: false,
//!     log_y: true,
//!     series: vec![Series::new("training loss", vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.4)])],
//!     markers: false,
//! };
//! line_chart(std::path::Path::new("loss.png"), &chart)?;
//! # Ok::<(), afx_report::PlotError>(())
//! ```

mod axis;
pub mod chart;
mod error;
mod font;
mod legend;
pub mod table;
mod ticks;

pub use chart::{BarChart, CurveLine, LineChart, PALETTE, Rgb, Series, bar_chart, curves_chart, line_chart};
pub use error::PlotError;
pub use table::Table;
