//! `lb-bench`: the benchmark suites of lb (issue 4). Each suite measures lb
//! next to a baseline in the same run and reports ratios, with absolute
//! numbers and the machine they came from.
//!
//! Modules: [`suites`] (one per suite), [`report`] (tables, JSON, markdown),
//! [`plot`] (SVG), [`netns`] (namespaces and their cleanup), [`xdp`] (the
//! real object and the baselines, maps filled by hand), [`packet`] (test
//! frames), [`tools`] (ab and wrk output, /proc/stat), [`gen`] (packet generator), [`stats`],
//! [`machine`].

pub mod gen;
pub mod machine;
pub mod netns;
pub mod packet;
pub mod plot;
pub mod report;
pub mod stats;
pub mod suites;
pub mod tools;
pub mod xdp;

/// What every suite gets.
pub struct Ctx {
    /// Tiny counts: a smoke run that keeps the harness from rotting.
    pub quick: bool,
    pub machine: machine::Machine,
}
