//! The client side: curl, ab and wrk run inside the client's namespace, and
//! their reports parsed into numbers.

use anyhow::{bail, Context, Result};

use crate::netns::Netns;

/// `http://ADDR:PORT/path`, with IPv6 addresses bracketed.
pub fn url(addr: std::net::IpAddr, port: u16, path: &str) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("http://{a}:{port}{path}"),
        std::net::IpAddr::V6(a) => format!("http://[{a}]:{port}{path}"),
    }
}

/// GET `url` with curl from `ns`; the body.
pub fn curl(ns: &Netns, url: &str) -> Result<String> {
    ns.exec(&["curl", "-sS", "-g", "--max-time", "5", url])
        .with_context(|| format!("curl {url} from {}", ns.name()))
}

/// What `ab` reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct AbReport {
    pub complete: u64,
    pub failed: u64,
    /// ab's breakdown of the failures, as printed:
    /// `(Connect: 0, Receive: 0, Length: 2, Exceptions: 0)`; empty when none.
    pub failed_kinds: String,
    pub non_2xx: u64,
    pub requests_per_sec: f64,
    /// Median and 99th percentile of the total time, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs `ab -n N -c C` (no keep-alive: a new connection, so a new flow, per
/// request). `-r` keeps going on socket errors, so they show as failures.
pub fn ab(ns: &Netns, url: &str, requests: u32, concurrency: u32) -> Result<AbReport> {
    let out = ns
        .exec(&[
            "ab",
            "-q",
            "-r",
            "-s",
            "10",
            "-n",
            &requests.to_string(),
            "-c",
            &concurrency.to_string(),
            url,
        ])
        .with_context(|| format!("ab -n {requests} -c {concurrency} {url}"))?;
    parse_ab(&out).with_context(|| format!("parsing ab's report:\n{out}"))
}

/// Runs `ab -t SECONDS -c C` (as many requests as fit in the time, each on
/// a new connection), `-r` as in [`ab`].
pub fn ab_for(ns: &Netns, url: &str, seconds: u32, concurrency: u32) -> Result<AbReport> {
    let out = ns
        .exec(&[
            "ab",
            "-q",
            "-r",
            "-s",
            "10",
            "-t",
            &seconds.to_string(),
            // -t alone caps the run at 50000 requests.
            "-n",
            "10000000",
            "-c",
            &concurrency.to_string(),
            url,
        ])
        .with_context(|| format!("ab -t {seconds} -c {concurrency} {url}"))?;
    parse_ab(&out).with_context(|| format!("parsing ab's report:\n{out}"))
}

fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
}

pub fn parse_ab(text: &str) -> Result<AbReport> {
    let num = |label: &str| -> Result<f64> {
        field(text, label)
            .with_context(|| format!("no {label:?} line"))?
            .parse::<f64>()
            .with_context(|| format!("bad number after {label:?}"))
    };
    let percentile = |p: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(p)).then(|| it.next()).flatten()
            })
            .with_context(|| format!("no {p} percentile"))?
            .parse::<f64>()
            .with_context(|| format!("bad {p} percentile"))
    };
    Ok(AbReport {
        complete: num("Complete requests:")? as u64,
        failed: num("Failed requests:")? as u64,
        failed_kinds: text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("(Connect:"))
            .unwrap_or_default()
            .to_string(),
        non_2xx: field(text, "Non-2xx responses:")
            .map(|s| s.parse().unwrap_or(u64::MAX))
            .unwrap_or(0),
        requests_per_sec: num("Requests per second:")?,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
    })
}

/// What `wrk --latency` reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx.
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs `wrk` (keep-alive connections) for `seconds`.
pub fn wrk(
    ns: &Netns,
    url: &str,
    threads: u32,
    connections: u32,
    seconds: u32,
) -> Result<WrkReport> {
    let out = ns
        .exec(&[
            "wrk",
            "--latency",
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            url,
        ])
        .with_context(|| format!("wrk {url}"))?;
    parse_wrk(&out).with_context(|| format!("parsing wrk's report:\n{out}"))
}

/// `10.5ms`, `850.00us`, `1.20s` -> milliseconds.
fn duration_ms(s: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("no unit in duration {s:?}")
    };
    Ok(num
        .parse::<f64>()
        .with_context(|| format!("bad duration {s:?}"))?
        * scale)
}

pub fn parse_wrk(text: &str) -> Result<WrkReport> {
    let percentile = |p: &str| -> Result<f64> {
        let v = text
            .lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(p)).then(|| it.next()).flatten()
            })
            .with_context(|| format!("no {p} latency line"))?;
        duration_ms(v)
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .context("no \"requests in\" line")?
        .parse::<u64>()?;
    let rps = field(text, "Requests/sec:")
        .context("no Requests/sec line")?
        .parse::<f64>()?;
    let mut errors = 0;
    if let Some(l) = text.lines().find(|l| l.contains("Socket errors:")) {
        // "Socket errors: connect 0, read 2, write 0, timeout 0"
        errors += l
            .split([',', ' '])
            .filter_map(|w| w.parse::<u64>().ok())
            .sum::<u64>();
    }
    if let Some(n) = field(text, "Non-2xx or 3xx responses:") {
        errors += n.parse::<u64>()?;
    }
    Ok(WrkReport {
        requests,
        requests_per_sec: rps,
        errors,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Abridged from a real `ab -q -r -n 3000 -c 30` run.
    const AB: &str = "\
Server Software:        nginx/1.22.1
Document Length:        12 bytes

Concurrency Level:      30
Time taken for tests:   1.234 seconds
Complete requests:      3000
Failed requests:        2
   (Connect: 0, Receive: 0, Length: 2, Exceptions: 0)
Non-2xx responses:      5
Total transferred:      700000 bytes
Requests per second:    2431.12 [#/sec] (mean)
Time per request:       12.340 [ms] (mean)

Percentage of the requests served within a certain time (ms)
  50%     11
  66%     12
  99%     31
 100%     45 (longest request)
";

    #[test]
    fn ab_report_is_parsed() {
        let r = parse_ab(AB).unwrap();
        assert_eq!(
            r,
            AbReport {
                complete: 3000,
                failed: 2,
                failed_kinds: "(Connect: 0, Receive: 0, Length: 2, Exceptions: 0)".into(),
                non_2xx: 5,
                requests_per_sec: 2431.12,
                p50_ms: 11.0,
                p99_ms: 31.0,
            }
        );
        assert!(parse_ab("garbage").is_err());
    }

    const WRK: &str = "\
Running 5s test @ http://192.168.253.120/
  2 threads and 30 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  500.00us  20.00ms   90.00%
  Latency Distribution
     50%    1.95ms
     75%    2.20ms
     90%    2.60ms
     99%  850.00us
  60000 requests in 5.00s, 9.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
Requests/sec:  12000.50
Transfer/sec:      1.80MB
";

    #[test]
    fn wrk_report_is_parsed() {
        let r = parse_wrk(WRK).unwrap();
        assert_eq!(r.requests, 60000);
        assert_eq!(r.requests_per_sec, 12000.5);
        assert_eq!(r.errors, 4);
        assert!((r.p50_ms - 1.95).abs() < 1e-9);
        assert!((r.p99_ms - 0.85).abs() < 1e-9);
        assert_eq!(duration_ms("1.5s").unwrap(), 1500.0);
        assert!(duration_ms("12").is_err());
    }
}
