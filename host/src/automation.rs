//! Parameters that move during a render: [`Automation`], one row of plain values per control frame.
//!
//! # What a render with automation does (the same in LV2, CLAP and VST3)
//! - **Steps, not ramps.** Row `f` holds from input frame `f·hop` up to input frame `(f+1)·hop`; the last row
//!   holds to the end of the file and through the latency tail. This is DeepAFx's per-frame control (one
//!   parameter vector per hop, set before the hop is processed), and it is the one rule all three formats can
//!   keep exactly: an LV2 control port holds for a whole `run()`. A smoother move is a finer hop.
//! - **Row 0 is the static render.** Row 0 is set before the first sample exactly as a static render's values
//!   are, so automation whose rows are all equal renders bit-identically to the static render of row 0.
//!   A value changes only where a row differs from the one before it; equal rows cost nothing.
//! - **The curve moves with the audio.** A plugin that reports `L` frames of latency gets row `f` at its own
//!   frame `f·hop + L`. afx trims `L` frames from the output, so the change lands at output frame `f·hop`, with
//!   the audio that frame holds, wherever the plugin applies the parameter to its delayed signal (a lookahead
//!   limiter's gain, a linear-phase EQ). It also keeps a render causal in the curve: row `f` can change no output
//!   frame before `f·hop`.
//! - **Delivery per format.**
//!   - CLAP: a parameter-value event at the change's offset within its `process` block.
//!   - VST3: points in the parameter's `IParamValueQueue`: VST3 reads a queue as a piecewise-linear segment, so a
//!     jump at offset `o > 0` is two points, `(o - 1, old)` and `(o, new)` (one point `(0, new)` at a block's start).
//!   - LV2: control ports hold for a whole `run()`, so the block is split at the change and the ports are set
//!     between the pieces. No piece between two changes is shorter than [`RenderSettings::min_split`] frames
//!     (32 by default): a change closer than that to the one before waits until `min_split` frames after it
//!     (never, with a hop of `min_split` or more). Block boundaries do not count: they are not changes.
//!
//!   Whether a CLAP or VST3 plugin applies an event at its offset or at the start of its block is the plugin's
//!   choice (afx's test effect applies it at the offset); a smaller `block_size` bounds the error of one that
//!   does not.
//!
//! [`RenderSettings::min_split`]: crate::RenderSettings::min_split

/// Plain parameter values over time: `frames × num_params` values, row `f` in effect from input frame `f·hop`
/// (see the [module docs](self) for the exact rule).
#[derive(Debug, Clone, PartialEq)]
pub struct Automation {
    hop: usize,
    num_params: usize,
    /// Row-major: row `f` is `rows[f·P .. (f+1)·P]`.
    rows: Vec<f32>,
}

/// Why an [`Automation`] could not be made or used for a render.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutomationError {
    #[error("the automation hop must be at least 1 frame")]
    ZeroHop,
    #[error("automation needs at least one row of {num_params} values, got {values} values")]
    Shape { num_params: usize, values: usize },
    #[error(
        "automation of {frames} rows at a hop of {hop} frames does not fit {input_frames} input frames: \
         it needs {needed} rows (one per started hop), or one row for fixed values"
    )]
    Length { frames: usize, hop: usize, input_frames: usize, needed: usize },
}

impl Automation {
    /// `rows` holds `num_params` plain values per control frame, row after row.
    pub fn new(hop: usize, num_params: usize, rows: Vec<f32>) -> Result<Automation, AutomationError> {
        if hop == 0 {
            return Err(AutomationError::ZeroHop);
        }
        // A plugin without parameters has one empty row.
        let fits =
            if num_params == 0 { rows.is_empty() } else { !rows.is_empty() && rows.len().is_multiple_of(num_params) };
        if !fits {
            return Err(AutomationError::Shape { num_params, values: rows.len() });
        }
        Ok(Automation { hop, num_params, rows })
    }

    /// The same values from the first frame to the last: a static render.
    pub fn constant(values: &[f32]) -> Automation {
        Automation { hop: usize::MAX, num_params: values.len(), rows: values.to_vec() }
    }

    /// Frames per row (`usize::MAX` for [`Automation::constant`]).
    pub fn hop(&self) -> usize {
        self.hop
    }

    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// How many rows (control frames) it holds.
    pub fn frames(&self) -> usize {
        // No parameters: one empty row.
        self.rows.len().checked_div(self.num_params).unwrap_or(1)
    }

    /// Row `frame`: the plain values in effect from input frame `frame·hop`.
    pub fn row(&self, frame: usize) -> &[f32] {
        &self.rows[frame * self.num_params..(frame + 1) * self.num_params]
    }

    /// All rows, row-major.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    /// The row in effect at input frame `frame`.
    pub fn row_at(&self, frame: usize) -> usize {
        (frame / self.hop).min(self.frames() - 1)
    }

    /// Rows needed for `input_frames` frames at this hop: one per started hop.
    pub fn rows_for(input_frames: usize, hop: usize) -> usize {
        input_frames.div_ceil(hop.max(1)).max(1)
    }

    /// Checks that the rows fit an input of `input_frames` frames: one row (fixed values), or exactly one row
    /// per started hop. Rows past the input's end would never be heard; fewer would leave its end undefined.
    pub fn check_fits(&self, input_frames: usize) -> Result<(), AutomationError> {
        let (frames, needed) = (self.frames(), Automation::rows_for(input_frames, self.hop));
        if frames == 1 || frames == needed {
            return Ok(());
        }
        Err(AutomationError::Length { frames, hop: self.hop, input_frames, needed })
    }

    /// The input frame of the first row that differs from row 0, if any.
    pub(crate) fn first_change(&self) -> Option<usize> {
        (1..self.frames()).find(|&f| self.row(f) != self.row(0)).map(|f| f * self.hop)
    }

    /// Every change, in order: `(input frame, parameter index, new value)` wherever a row differs from the row
    /// before it.
    pub(crate) fn changes(&self) -> impl Iterator<Item = (usize, usize, f32)> + '_ {
        (1..self.frames()).flat_map(move |f| {
            let (before, row) = (self.row(f - 1), self.row(f));
            (0..self.num_params).filter(move |&p| row[p] != before[p]).map(move |p| (f * self.hop, p, row[p]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_list_only_values_that_differ_in_order() {
        let a = Automation::new(100, 2, vec![0.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.5, 2.0]).unwrap();
        assert_eq!(a.frames(), 4);
        assert_eq!(a.first_change(), Some(200));
        assert_eq!(a.changes().collect::<Vec<_>>(), vec![(200, 0, 0.5), (300, 1, 2.0)]);
        assert_eq!(a.row_at(299), 2);
        assert_eq!(a.row_at(10_000), 3);
    }

    #[test]
    fn constant_automation_has_no_changes_and_fits_any_length() {
        let a = Automation::constant(&[1.0, 2.0]);
        assert_eq!(a.first_change(), None);
        assert_eq!(a.changes().count(), 0);
        assert!(a.check_fits(1).is_ok() && a.check_fits(1 << 30).is_ok());
    }

    #[test]
    fn rows_must_match_the_input_length() {
        let a = Automation::new(512, 1, vec![0.0; 4]).unwrap();
        assert!(a.check_fits(2048).is_ok() && a.check_fits(1537).is_ok());
        assert_eq!(
            a.check_fits(2049),
            Err(AutomationError::Length { frames: 4, hop: 512, input_frames: 2049, needed: 5 })
        );
        assert!(a.check_fits(1536).is_err());
        assert_eq!(Automation::new(0, 1, vec![0.0]), Err(AutomationError::ZeroHop));
        assert!(Automation::new(4, 2, vec![0.0; 3]).is_err());
        assert!(Automation::new(4, 2, vec![]).is_err());
    }
}
