//! `lb-bench`: the benchmark suites of lb (issue 4). Each suite measures lb
//! next to a baseline in the same run and reports ratios, with absolute
//! numbers and the machine they came from.
//!
//! Modules: [`suites`] (one per suite), [`report`] (tables, JSON, markdown),
//! [`plot`] (SVG), [`xdp`] (the
//! real object and the baselines, maps filled by hand), [`packet`] (test
//! frames), [`probe`] (TCP outage prober), [`tools`] (ab and wrk output, /proc/stat), [`gen`] (packet generator), [`stats`],
//! [`machine`], [`scaleout`] (the
//! scale-out model: ECMP in front of N nodes).

pub mod gen;
pub mod machine;
pub mod packet;
pub mod peer;
pub mod plot;
pub mod probe;
pub mod report;
pub mod scaleout;
pub mod stats;
pub mod suites;
pub mod tools;
pub mod xdp;

/// What every suite gets.
pub struct Ctx {
    /// Tiny counts: a smoke run that keeps the harness from rotting.
    pub quick: bool,
    pub machine: machine::Machine,
    /// Counts given on the command line, over the suite's own (the ipvs
    /// suite sizes the runs inside its TCG VM with them).
    pub counts: Counts,
}

/// Overrides of the `rate` and `http` suites' counts; `None` keeps the
/// suite's default (full, or smoke with `--quick`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Rounds over all variants.
    pub rounds: Option<u32>,
    /// Seconds counted per rate run, and per wrk run.
    pub secs: Option<f64>,
    /// `ab -n` per HTTP run.
    pub requests: Option<u32>,
}

impl Counts {
    /// The same overrides as lb-bench arguments (what the ipvs suite
    /// passes on to the lb-bench inside its VM).
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(r) = self.rounds {
            a.extend(["--rounds".into(), r.to_string()]);
        }
        if let Some(s) = self.secs {
            a.extend(["--secs".into(), s.to_string()]);
        }
        if let Some(n) = self.requests {
            a.extend(["--requests".into(), n.to_string()]);
        }
        a
    }

    /// `self`, with `other`'s value wherever `self` has none.
    pub fn or(&self, other: &Counts) -> Counts {
        Counts {
            rounds: self.rounds.or(other.rounds),
            secs: self.secs.or(other.secs),
            requests: self.requests.or(other.requests),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn counts_pass_on_as_arguments() {
        let mine = Counts {
            rounds: Some(2),
            secs: None,
            requests: None,
        };
        let vm = Counts {
            rounds: Some(3),
            secs: Some(2.5),
            requests: Some(1000),
        };
        let c = mine.or(&vm);
        assert_eq!(
            c.args(),
            ["--rounds", "2", "--secs", "2.5", "--requests", "1000"]
        );
        assert!(Counts::default().args().is_empty());
    }
}
