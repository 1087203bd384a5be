//! Results of a suite: tables of measurements, each row with its ratio to
//! the table's baseline row measured in the same run; written as JSON and
//! markdown (timestamped and `*-latest.*`) with one SVG plot per table.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// One measured case. `value` is `None` when the case was skipped, and then
/// `skipped` says why (a missing tool, the agent not built yet...).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub value: Option<f64>,
    /// `value / baseline value`, filled by [`Table::compute_ratios`].
    pub ratio: Option<f64>,
    /// Further columns, in the order of [`Table::extra_columns`].
    pub extra: Vec<String>,
    pub skipped: Option<String>,
}

impl Row {
    pub fn new(label: impl Into<String>, value: f64, extra: Vec<String>) -> Self {
        Row {
            label: label.into(),
            value: Some(value),
            ratio: None,
            extra,
            skipped: None,
        }
    }

    pub fn skipped(label: impl Into<String>, why: impl Into<String>) -> Self {
        Row {
            label: label.into(),
            value: None,
            ratio: None,
            extra: Vec::new(),
            skipped: Some(why.into()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    /// File-name friendly identifier (plots are named after it).
    pub id: String,
    pub title: String,
    /// Unit of `value` (e.g. "ns/packet", "req/s").
    pub unit: String,
    /// Label of the row every ratio divides by.
    pub baseline: String,
    /// What a ratio means to the reader, e.g. "cost relative to the XDP_TX
    /// baseline (lower is better)".
    pub ratio_meaning: String,
    pub extra_columns: Vec<String>,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn new(id: &str, title: &str, unit: &str, baseline: &str, ratio_meaning: &str) -> Self {
        Table {
            id: id.into(),
            title: title.into(),
            unit: unit.into(),
            baseline: baseline.into(),
            ratio_meaning: ratio_meaning.into(),
            extra_columns: Vec::new(),
            rows: Vec::new(),
        }
    }

    pub fn columns(mut self, cols: &[&str]) -> Self {
        self.extra_columns = cols.iter().map(|c| c.to_string()).collect();
        self
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Fills every row's ratio against the baseline row. No baseline value
    /// (skipped, or zero) leaves every ratio empty rather than inventing one.
    pub fn compute_ratios(&mut self) {
        let base = self
            .rows
            .iter()
            .find(|r| r.label == self.baseline)
            .and_then(|r| r.value);
        for r in &mut self.rows {
            r.ratio = match (r.value, base) {
                (Some(v), Some(b)) => ratio(v, b),
                _ => None,
            };
        }
    }

    pub fn markdown(&self, plot: Option<&str>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### {}\n", self.title);
        let _ = writeln!(
            s,
            "Ratio: {} (baseline: {}).\n",
            self.ratio_meaning, self.baseline
        );
        let mut head = format!("| case | {} | ratio |", self.unit);
        let mut rule = "|---|---:|---:|".to_string();
        for c in &self.extra_columns {
            head.push_str(&format!(" {c} |"));
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for r in &self.rows {
            let (v, q) = match (r.value, &r.skipped) {
                (Some(v), _) => (
                    fmt_value(v),
                    r.ratio.map(|q| format!("{q:.2}")).unwrap_or("-".into()),
                ),
                (None, Some(why)) => (format!("skipped: {why}"), "-".into()),
                (None, None) => ("-".into(), "-".into()),
            };
            let mut line = format!("| {} | {v} | {q} |", r.label);
            for i in 0..self.extra_columns.len() {
                line.push_str(&format!(
                    " {} |",
                    r.extra.get(i).map(String::as_str).unwrap_or("")
                ));
            }
            let _ = writeln!(s, "{line}");
        }
        if let Some(p) = plot {
            let _ = writeln!(s, "\n![{}]({p})", self.title);
        }
        s
    }
}

/// `value / baseline`, or `None` when the baseline is zero or not finite.
pub fn ratio(value: f64, baseline: f64) -> Option<f64> {
    if baseline == 0.0 || !baseline.is_finite() || !value.is_finite() {
        None
    } else {
        Some(value / baseline)
    }
}

/// Three significant digits, no exponent: what a reader compares.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 || !a.is_finite() {
        format!("{v}")
    } else {
        // Below 1 as well (Mpps under TCG are thousandths): three
        // significant digits, not three decimals.
        let decimals = (2 - a.log10().floor() as i32).max(3) as usize;
        format!("{v:.decimals$}")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub suite: String,
    pub title: String,
    pub started_utc: String,
    pub machine: Machine,
    pub quick: bool,
    pub method: Vec<String>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(suite: &str, title: &str, machine: &Machine, quick: bool) -> Self {
        Report {
            suite: suite.into(),
            title: title.into(),
            started_utc: crate::machine::utc_now().0,
            machine: machine.clone(),
            quick,
            method: Vec::new(),
            tables: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn markdown(&self, plots: &[(String, String)]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {}\n", self.title);
        let _ = writeln!(
            s,
            "Run {} on {}{}.\n",
            self.started_utc,
            self.machine.describe(),
            if self.quick {
                " (--quick: smoke counts, not a measurement)"
            } else {
                ""
            }
        );
        for m in &self.method {
            let _ = writeln!(s, "- {m}");
        }
        if !self.method.is_empty() {
            s.push('\n');
        }
        for t in &self.tables {
            let plot = plots
                .iter()
                .find(|(id, _)| *id == t.id)
                .map(|(_, f)| f.as_str());
            s.push_str(&t.markdown(plot));
            s.push('\n');
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "Notes:\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// Writes `<suite>-<stamp>.{json,md}`, `<suite>-latest.{json,md}` and
    /// `<suite>-<table>.svg` under `dir`; returns the markdown path.
    pub fn write(&mut self, dir: &Path) -> anyhow::Result<PathBuf> {
        for t in &mut self.tables {
            t.compute_ratios();
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stamp = self
            .started_utc
            .replace(['-', ':'], "")
            .trim_end_matches('Z')
            .to_string()
            + "Z";
        let mut plots = Vec::new();
        for t in &self.tables {
            if t.rows.iter().all(|r| r.ratio.is_none()) {
                continue;
            }
            let name = format!("{}-{}.svg", self.suite, t.id);
            crate::plot::ratio_bars(t, &self.machine, &dir.join(&name))
                .with_context(|| format!("plotting {name}"))?;
            plots.push((t.id.clone(), name));
        }
        let json = serde_json::to_string_pretty(&self)?;
        let md = self.markdown(&plots);
        for tag in [stamp.as_str(), "latest"] {
            let base = dir.join(format!("{}-{tag}", self.suite));
            std::fs::write(base.with_extension("json"), &json)?;
            std::fs::write(base.with_extension("md"), &md)?;
        }
        Ok(dir.join(format!("{}-latest.md", self.suite)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new("t", "T", "ns/packet", "baseline", "cost");
        t.push(Row::new("baseline", 20.0, vec![]));
        t.push(Row::new("lb", 35.0, vec![]));
        t.push(Row::skipped("ipvs", "no ip_vs"));
        t
    }

    #[test]
    fn ratios_against_the_baseline_row() {
        let mut t = table();
        t.compute_ratios();
        assert_eq!(t.rows[0].ratio, Some(1.0));
        assert_eq!(t.rows[1].ratio, Some(1.75));
        assert_eq!(t.rows[2].ratio, None);
    }

    #[test]
    fn no_baseline_no_ratios() {
        let mut t = table();
        t.rows[0] = Row::skipped("baseline", "tool missing");
        t.compute_ratios();
        assert!(t.rows.iter().all(|r| r.ratio.is_none()));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn markdown_shows_values_ratios_and_skips() {
        let mut t = table();
        t.compute_ratios();
        let md = t.markdown(Some("x.svg"));
        assert!(md.contains("| lb | 35.0 | 1.75 |"), "{md}");
        assert!(md.contains("| ipvs | skipped: no ip_vs | - |"), "{md}");
        assert!(md.contains("![T](x.svg)"), "{md}");
    }

    #[test]
    fn value_formatting() {
        assert_eq!(fmt_value(12345.6), "12346");
        assert_eq!(fmt_value(42.42), "42.4");
        assert_eq!(fmt_value(1.234), "1.23");
        assert_eq!(fmt_value(0.5), "0.500");
        assert_eq!(fmt_value(0.01234), "0.0123");
        assert_eq!(fmt_value(0.004321), "0.00432");
        assert_eq!(fmt_value(0.0), "0");
    }
}
