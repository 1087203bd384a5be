//! Where a config error must point, found by content: config tests name
//! the line and the value a message must point at, never a hard-coded
//! `line:column`, so adding a line to a template moves nothing by hand.
//! Also where the shipped example configs are, which the config tests read.

use std::path::PathBuf;

/// `examples/NAME` of this repository (the configs shipped for the seeds'
/// set-ups and `full.toml`).
pub fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Where a message must point: `value` on the first line that contains
/// `line_with`, searching from the first line that contains `after`.
#[derive(Clone, Copy, Debug)]
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

/// `line:column` of a spot (both 1-based, columns in characters). Panics
/// when the text has no such spot: the test's template changed under it.
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

/// Asserts that `msg`, the error for config `text` read from `origin`, is
/// one line starting with `origin:LINE:COLUMN: field `FIELD`: ` (the
/// place of `spot`) and containing every phrase: what `lb check` must tell
/// a user.
#[track_caller]
pub fn assert_points_at(
    msg: &str,
    origin: &str,
    text: &str,
    spot: Spot<'_>,
    field: &str,
    phrases: &[&str],
) {
    let prefix = format!("{origin}:{}: field `{field}`: ", locate(text, spot));
    assert!(
        msg.starts_with(&prefix),
        "message {msg:?} should start with {prefix:?}"
    );
    for p in phrases {
        assert!(msg.contains(p), "message {msg:?} should contain {p:?}");
    }
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_found() {
        assert!(
            example("full.toml").is_file(),
            "{}",
            example("full.toml").display()
        );
    }

    #[test]
    fn spots_are_found_by_content() {
        let text = "[a]\nx = 1\n[b]\n  x = \"é\" # y\n";
        assert_eq!(locate(text, at("x =", "1")), "2:5");
        // Columns count characters, not bytes.
        assert_eq!(locate(text, after("[b]", "x =", "#")), "4:11");
    }

    #[test]
    fn messages_are_checked_for_place_field_and_phrases() {
        let text = "[agent]\nport = 0\n";
        let good = "lb.toml:2:8: field `agent.port`: 0 is not a port; use 1-65535";
        assert_points_at(
            good,
            "lb.toml",
            text,
            at("port", "0"),
            "agent.port",
            &["1-65535"],
        );
        for bad in [
            "lb.toml:2:1: field `agent.port`: 0 is not a port; use 1-65535",
            "lb.toml:2:8: field `agent.port`: 0 is not a port",
            "lb.toml:2:8: field `agent.port`: 0 is not a port;\nuse 1-65535",
        ] {
            let failed = std::panic::catch_unwind(|| {
                assert_points_at(
                    bad,
                    "lb.toml",
                    text,
                    at("port", "0"),
                    "agent.port",
                    &["1-65535"],
                )
            });
            assert!(failed.is_err(), "{bad:?} passed");
        }
    }

    #[test]
    #[should_panic(expected = "no line contains")]
    fn a_missing_line_panics() {
        locate("a = 1\n", at("b =", "1"));
    }
}
