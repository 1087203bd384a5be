//! Maglev table build time for the benchmark (`cargo xtask bench`): 65537
//! slots, 100 real servers, built in release mode. Prints one JSON line.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use lb_userspace::maglev::{build_table, Entry};

const SLOTS: u32 = 65537;
const BACKENDS: u32 = 100;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 50 };
    let entries: Vec<Entry> = (0..BACKENDS)
        .map(|i| Entry {
            id: i,
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8)),
            port: 80,
            weight: 1,
        })
        .collect();
    // One untimed build: page faults of the first allocation are not Maglev.
    let table = build_table(&entries, SLOTS);
    assert_eq!(table.len(), SLOTS as usize);
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let table = build_table(&entries, SLOTS);
            let elapsed = t.elapsed().as_secs_f64() * 1000.0;
            std::hint::black_box(table);
            elapsed
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "slots": SLOTS,
            "backends": BACKENDS,
            "runs": runs,
            "min_ms": ms[0],
            "median_ms": ms[ms.len() / 2],
            "max_ms": ms[ms.len() - 1],
        })
    );
}
