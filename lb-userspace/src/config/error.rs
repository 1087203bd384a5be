//! Turning a byte span of the config text into the message a user reads:
//! `origin:line:column: field `path`: what is wrong; what to do`.

use std::{fmt::Display, ops::Range};

use super::ConfigError;

/// The text being parsed and its name, to place errors in it.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub origin: &'a str,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// An error about `field` (a path such as
    /// `virtual_server[1].real_server[0].weight`) at `span`.
    pub fn field_error(&self, span: Range<usize>, field: &str, what: impl Display) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError {
            message: format!("{}:{line}:{column}: field `{field}`: {what}", self.origin),
        }
    }

    /// An error with a position but no field (TOML syntax).
    pub fn plain_error(&self, span: Option<Range<usize>>, what: impl Display) -> ConfigError {
        let (line, column) = self.line_column(span.map_or(0, |s| s.start));
        ConfigError {
            message: format!("{}:{line}:{column}: {what}", self.origin),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where a field is, for checks made after parsing (the host check):
/// only what is needed to rebuild the message prefix.
#[derive(Clone, Debug, Default)]
pub struct Location {
    pub origin: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub(super) fn new(source: &Source<'_>, span: &Range<usize>) -> Self {
        let (line, column) = source.line_column(span.start);
        Location {
            origin: source.origin.to_owned(),
            line,
            column,
        }
    }

    pub(super) fn error(&self, field: &str, what: impl Display) -> ConfigError {
        // A Config built in code rather than parsed has no positions.
        let message = if self.origin.is_empty() {
            format!("field `{field}`: {what}")
        } else {
            format!(
                "{}:{}:{}: field `{field}`: {what}",
                self.origin, self.line, self.column
            )
        };
        ConfigError { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let src = Source {
            text: "a = 1\nnamé = \"x\"\n",
            origin: "f",
        };
        assert_eq!(src.line_column(0), (1, 1));
        assert_eq!(src.line_column(6), (2, 1));
        // Columns are characters, not bytes: `é` is two bytes.
        let quote = src.text.find('"').unwrap();
        assert_eq!(src.line_column(quote), (2, 8));
        // Past the end and inside a character: clamped, never a panic.
        assert_eq!(src.line_column(1000), (3, 1));
        assert_eq!(src.line_column(10), (2, 4));
    }
}
