//! Who held the virtual addresses when: a thread polls every node's
//! addresses (by namespace name, so the [`super::Cluster`] stays free to be
//! changed meanwhile), the caller marks its own actions (kill, link down,
//! restart), and the nodes' notify logs add each state change. The demo
//! prints the merged story; the benchmark reads holder changes from it.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One line of the story.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Seconds since the Unix epoch (the notify scripts' `date +%s.%N`).
    pub at: f64,
    pub what: String,
}

/// A change of holders: `nodes` (0-based) have `addr` from `at` on.
#[derive(Clone, Debug, PartialEq)]
pub struct Holding {
    pub at: f64,
    pub addr: IpAddr,
    pub nodes: Vec<usize>,
}

/// The polling thread and the marks; stops polling when dropped.
#[derive(Debug)]
pub struct Timeline {
    pub start: f64,
    holdings: Arc<Mutex<Vec<Holding>>>,
    marks: Mutex<Vec<Entry>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Now, as seconds since the Unix epoch.
pub fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The addresses `ip -n NS -j addr` lists on interfaces other than `lo`.
fn addresses(ns: &str) -> Vec<IpAddr> {
    let Ok(out) = Command::new("ip").args(["-n", ns, "-j", "addr"]).output() else {
        return Vec::new();
    };
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    links
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["ifname"] != "lo")
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str()?.parse().ok())
        .collect()
}

impl Timeline {
    /// Starts watching `addrs` on the nodes whose namespaces are `nodes`
    /// (in node order), every `period`.
    pub fn start(nodes: Vec<String>, addrs: Vec<IpAddr>, period: Duration) -> Timeline {
        let holdings = Arc::new(Mutex::new(Vec::<Holding>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (holdings.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last: Vec<Option<Vec<usize>>> = vec![None; addrs.len()];
            while !s.load(Ordering::Relaxed) {
                let at = epoch();
                let held: Vec<Vec<IpAddr>> = nodes.iter().map(|n| addresses(n)).collect();
                for (k, addr) in addrs.iter().enumerate() {
                    let now: Vec<usize> = (0..nodes.len())
                        .filter(|&i| held[i].contains(addr))
                        .collect();
                    if last[k].as_ref() != Some(&now) {
                        h.lock().unwrap_or_else(|e| e.into_inner()).push(Holding {
                            at,
                            addr: *addr,
                            nodes: now.clone(),
                        });
                        last[k] = Some(now);
                    }
                }
                std::thread::sleep(period);
            }
        });
        Timeline {
            start: epoch(),
            holdings,
            marks: Mutex::new(Vec::new()),
            stop,
            thread: Some(thread),
        }
    }

    /// Records one of the caller's actions, now.
    pub fn mark(&self, what: impl Into<String>) {
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry {
                at: epoch(),
                what: what.into(),
            });
    }

    pub fn holdings(&self) -> Vec<Holding> {
        self.holdings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first moment at or after `since` (epoch seconds) when exactly
    /// `nodes` held `addr`.
    pub fn held_from(&self, addr: IpAddr, nodes: &[usize], since: f64) -> Option<f64> {
        self.holdings()
            .into_iter()
            .find(|h| h.at >= since && h.addr == addr && h.nodes == nodes)
            .map(|h| h.at)
    }

    /// The whole story, oldest first: marks, holder changes (`names` name
    /// the nodes) and the notify lines `(node name, notify.log text)`.
    pub fn entries(&self, names: &[String], notify: &[(String, String)]) -> Vec<Entry> {
        let mut all: Vec<Entry> = self.marks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for h in self.holdings() {
            let who: Vec<&str> = h.nodes.iter().map(|&i| names[i].as_str()).collect();
            let who = if who.is_empty() {
                "nobody".to_string()
            } else {
                who.join(" + ")
            };
            all.push(Entry {
                at: h.at,
                what: format!("{} held by {who}", h.addr),
            });
        }
        for (node, text) in notify {
            all.extend(notify_entries(node, text));
        }
        all.sort_by(|a, b| a.at.total_cmp(&b.at));
        all
    }

    /// [`Timeline::entries`] as lines `+SS.sss  what`, from the start.
    pub fn render(&self, names: &[String], notify: &[(String, String)]) -> String {
        self.entries(names, notify)
            .iter()
            .map(|e| format!("{:>+9.3} s  {}\n", e.at - self.start, e.what))
            .collect()
    }
}

/// The notify script's lines (`<epoch> INSTANCE|GROUP <name> <STATE>
/// <prio>`) as entries.
fn notify_entries(node: &str, text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let at: f64 = it.next()?.parse().ok()?;
            let kind = it.next()?;
            let name = it.next()?;
            let state = it.next()?;
            let prio = it.next().unwrap_or("");
            Some(Entry {
                at,
                what: format!(
                    "{node}: {} {name} -> {state} (priority {prio})",
                    kind.to_lowercase()
                ),
            })
        })
        .collect()
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_lines_become_entries() {
        let text = "1764720000.250 INSTANCE VI_1 MASTER 150\n\
                    garbage\n\
                    1764720003.500 GROUP G1 BACKUP 0\n";
        let e = notify_entries("node1", text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].what, "node1: instance VI_1 -> MASTER (priority 150)");
        assert!((e[1].at - 1764720003.5).abs() < 1e-6);
        assert_eq!(e[1].what, "node1: group G1 -> BACKUP (priority 0)");
    }
}
