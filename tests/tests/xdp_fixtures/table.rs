//! The fixture harness: a row (`Case`) is what a packet is, where it
//! enters, the verdict and output frame expected and the event it counts;
//! `run_table` runs a table and reports every failing row.

use super::*;

// ---------------------------------------------------------------------------
// Fixture tables.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

pub(crate) enum Expect {
    /// Output equals input (the rule for every PASS of a frame that is not
    /// a rewritten NAT packet).
    Unchanged,
    Frame(Vec<u8>),
}

pub(crate) struct Case {
    what: String,
    ingress: Side,
    input: Vec<u8>,
    verdict: u32,
    output: Expect,
    /// An event this packet must count (exactly once).
    event: Option<u32>,
}

pub(crate) fn case(
    what: impl Into<String>,
    ingress: Side,
    input: Vec<u8>,
    verdict: u32,
    output: Expect,
    event: Option<u32>,
) -> Case {
    Case {
        what: what.into(),
        ingress,
        input,
        verdict,
        output,
        event,
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Runs a table; reports every failing row, then fails.
pub(crate) fn run_table(lb: &Lb, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let ifindex = match c.ingress {
            Side::Client => lb.net.eth0,
            Side::Server => lb.net.eth1,
        };
        let before = lb.events();
        let verdicts_before = lb.verdicts();
        let (action, out) = lb.run(ifindex, &c.input);
        let after = lb.events();
        let mut why = Vec::new();
        if action != c.verdict {
            why.push(format!(
                "verdict {} (expected {})",
                verdict_name(action),
                verdict_name(c.verdict)
            ));
        }
        // Every verdict is counted, except the first test's PASS of a
        // packet not ours by address (lb-ebpf/src/filter.rs).
        let counted: Vec<u64> = lb
            .verdicts()
            .iter()
            .zip(&verdicts_before)
            .map(|(a, b)| a - b)
            .collect();
        if lb.first_test_passes(&c.input) {
            if counted.iter().any(|&n| n != 0) || action != verdict::PASS {
                why.push(format!(
                    "not ours by address, yet {} and counted {counted:?}",
                    verdict_name(action)
                ));
            }
        } else if counted[action.min(verdict::COUNT - 1) as usize] != 1 {
            why.push("VERDICT_STATS did not count the verdict".into());
        }
        let expected = match &c.output {
            Expect::Unchanged => &c.input,
            Expect::Frame(f) => f,
        };
        if &out != expected {
            why.push(format!(
                "output differs\n  got:\n    {}\n  expected:\n    {}",
                hex(&out),
                hex(expected)
            ));
        }
        if let Expect::Frame(f) = &c.output {
            if let Err(e) = verify_checksums(&out) {
                why.push(format!("output checksum wrong: {e}"));
            }
            debug_assert!(verify_checksums(f).is_ok());
        }
        if let Some(e) = c.event {
            let d = after[e as usize] - before[e as usize];
            if d != 1 {
                why.push(format!(
                    "event {} counted {d} times (expected 1)",
                    event::NAMES[e as usize]
                ));
            }
        }
        if !why.is_empty() {
            failures.push(format!("- {}: {}", c.what, why.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

pub(crate) fn verdict_name(v: u32) -> &'static str {
    verdict::NAMES.get(v as usize).copied().unwrap_or("?")
}
