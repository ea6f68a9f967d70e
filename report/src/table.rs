//! Markdown tables for the reports (`report.md`): a header, its rule, and one line per row.

use std::fmt;

/// A Markdown table, built row by row. Cells are written as given (between `| ` and ` |`; an empty cell as `| |`),
/// without escaping or padding to a column width: a reader's Markdown renderer lines the columns up.
///
/// ```
/// use afx_report::Table;
///
/// let mut table = Table::new(["parameter", "value"]);
/// table.row(["gain", "0.50"]);
/// assert_eq!(table.to_string(), "| parameter | value |\n| --- | --- |\n| gain | 0.50 |\n");
/// let compact = Table::compact(["parameter", "value"]);
/// assert_eq!(compact.to_string(), "| parameter | value |\n|---|---|\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The header, the rule and the rows so far, each a line ending in '\n'.
    text: String,
}

impl Table {
    /// A table with these column names, under a rule of `| --- |` cells.
    pub fn new<S: AsRef<str>>(header: impl IntoIterator<Item = S>) -> Table {
        Table::with_rule(header, "| --- |", " --- |")
    }

    /// A table with these column names, under a rule of `|---|` cells (no spaces).
    pub fn compact<S: AsRef<str>>(header: impl IntoIterator<Item = S>) -> Table {
        Table::with_rule(header, "|---|", "---|")
    }

    fn with_rule<S: AsRef<str>>(header: impl IntoIterator<Item = S>, first: &str, next: &str) -> Table {
        let mut table = Table { text: String::new() };
        let columns = table.push_line(header);
        table.text.push_str(first);
        table.text.push_str(&next.repeat(columns.saturating_sub(1)));
        table.text.push('\n');
        table
    }

    /// Adds a row: one cell per column, in the header's order.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Table {
        self.push_line(cells);
        self
    }

    /// Writes `| a | b |` and a line break; returns the number of cells.
    fn push_line<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) -> usize {
        self.text.push('|');
        let mut n = 0;
        for cell in cells {
            let cell = cell.as_ref();
            if !cell.is_empty() {
                self.text.push(' ');
                self.text.push_str(cell);
            }
            self.text.push_str(" |");
            n += 1;
        }
        self.text.push('\n');
        n
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_header_and_its_rule() {
        let mut table = Table::new(["", "median", "time"]);
        table.row(["input", "0.1234", "–"]).row(["match, spsa", "0.0100", "1.5 s"]);
        assert_eq!(
            table.to_string(),
            "| | median | time |\n| --- | --- | --- |\n| input | 0.1234 | – |\n| match, spsa | 0.0100 | 1.5 s |\n"
        );
    }

    #[test]
    fn compact_rule_has_no_spaces() {
        let mut table = Table::compact(["a", "b", "c"]);
        table.row(["1", "2", "3"]);
        assert_eq!(table.to_string(), "| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n");
    }
}
