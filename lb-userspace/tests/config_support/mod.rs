//! Where a config error must point, found by content: the config tests
//! (`config_errors.rs`, `health_config.rs`, `vrrp_config.rs`) name the
//! line and the value a message must point at, never a hard-coded
//! `line:column`, so adding a line to a template moves nothing by hand.
#![allow(dead_code)]

/// Where a message must point: `value` on the first line that contains
/// `line_with`, searching from the first line that contains `after`.
#[derive(Clone, Copy)]
pub struct Spot<'a> {
    pub after: &'a str,
    pub line_with: &'a str,
    pub value: &'a str,
}

/// `value` on the first line containing `line_with`.
pub fn at<'a>(line_with: &'a str, value: &'a str) -> Spot<'a> {
    Spot {
        after: "",
        line_with,
        value,
    }
}

/// `value` on the first line containing `line_with` at or after the first
/// line containing `after`.
pub fn after<'a>(after: &'a str, line_with: &'a str, value: &'a str) -> Spot<'a> {
    Spot {
        after,
        line_with,
        value,
    }
}

/// `line:column` of a spot (both 1-based, columns in characters).
#[track_caller]
pub fn locate(text: &str, spot: Spot<'_>) -> String {
    let from = text
        .lines()
        .position(|l| l.contains(spot.after))
        .unwrap_or_else(|| panic!("no line contains {:?} in:\n{text}", spot.after));
    let (n, line) = text
        .lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.contains(spot.line_with))
        .unwrap_or_else(|| panic!("no line contains {:?} in:\n{text}", spot.line_with));
    let byte = line
        .find(spot.value)
        .unwrap_or_else(|| panic!("{:?} is not on line {line:?}", spot.value));
    format!("{}:{}", n + 1, line[..byte].chars().count() + 1)
}
