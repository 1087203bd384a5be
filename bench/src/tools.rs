//! Output of the tools the suites run, parsed: `ab` and `wrk` results (as
//! lb-tests' kit reads them),
//! `ipvsadm --stats` counters, and the CPU time accounting of /proc/stat. (The rate suite generates its own
//! packets, see `crate::gen`, so there is no trafgen output to read.)

use lb_tests::client::{AbReport, WrkReport};

/// One HTTP load run: requests per second and latency percentiles (ms).
/// The reports themselves are read by lb-tests' kit
/// (`lb_tests::client::parse_ab` / `parse_wrk`, shared with the tests and
/// `cargo xtask bench`); this is what the tables show of either.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Http {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed requests (ab), or socket errors plus non-2xx/3xx (wrk).
    pub failed: u64,
    pub requests: u64,
}

/// `ab`'s percentile table is in whole milliseconds.
impl From<&AbReport> for Http {
    fn from(r: &AbReport) -> Http {
        Http {
            rps: r.requests_per_sec,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            failed: r.failed,
            requests: r.complete,
        }
    }
}

impl From<&WrkReport> for Http {
    fn from(r: &WrkReport) -> Http {
        Http {
            rps: r.requests_per_sec,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            failed: r.errors,
            requests: r.requests,
        }
    }
}

/// CPU time of all CPUs from the `cpu` line of /proc/stat, in clock ticks
/// (USER_HZ, 100 per second on Linux).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTimes {
    pub busy: u64,
    pub idle: u64,
    pub softirq: u64,
}

pub fn parse_proc_stat(s: &str) -> Option<CpuTimes> {
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is already counted in user.
    if v.len() < 7 {
        return None;
    }
    let idle = v[3] + v[4];
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v.get(7).copied().unwrap_or(0);
    Some(CpuTimes {
        busy,
        idle,
        softirq: v[6],
    })
}

pub fn cpu_times() -> CpuTimes {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_proc_stat(&s))
        .unwrap_or_default()
}

/// Clock ticks per second of /proc/stat.
pub const USER_HZ: f64 = 100.0;

/// CPU seconds spent per million packets: `(after - before)` ticks over
/// `packets`. `None` without packets.
pub fn cpu_s_per_mpkt(before: u64, after: u64, packets: u64) -> Option<f64> {
    (packets > 0).then(|| after.saturating_sub(before) as f64 / USER_HZ / (packets as f64 / 1e6))
}

/// CPU microseconds per request: `(after - before)` ticks over `requests`.
/// `None` without requests.
pub fn cpu_us_per_req(before: u64, after: u64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| after.saturating_sub(before) as f64 / USER_HZ * 1e6 / requests as f64)
}

/// Share of all CPUs' time that was busy between two readings, in percent;
/// `None` when no time passed.
pub fn busy_percent(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let busy = after.busy.saturating_sub(before.busy);
    let idle = after.idle.saturating_sub(before.idle);
    (busy + idle > 0).then(|| 100.0 * busy as f64 / (busy + idle) as f64)
}

/// Packets `dev` transmitted, from /proc/net/dev (the namespace is the one
/// of the thread that reads it).
pub fn parse_net_dev_tx_packets(s: &str, dev: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != dev {
            return None;
        }
        // 8 receive columns, then transmit bytes, transmit packets.
        rest.split_whitespace().nth(9)?.parse().ok()
    })
}

/// Counters of one IPVS virtual service (`ipvsadm -L -n --stats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IpvsStats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    /// In packets per real server, in the order listed.
    pub reals: Vec<(String, u64)>,
}

/// An `ipvsadm --stats` number: exact with `--exact`, otherwise scaled
/// with a K/M/G/T suffix (powers of 1000).
fn ipvs_number(s: &str) -> Option<u64> {
    let (num, scale) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'G' => (&s[..s.len() - 1], 1e9),
        'T' => (&s[..s.len() - 1], 1e12),
        _ => return s.parse().ok(),
    };
    num.parse::<f64>().ok().map(|v| (v * scale) as u64)
}

/// The counters of virtual service `proto` (`TCP`/`UDP`) `addr` (as
/// ipvsadm prints it with `-n`, e.g. `192.168.253.120:9`) and its real
/// servers; `None` when ipvsadm does not list that service.
pub fn parse_ipvs_stats(out: &str, proto: &str, addr: &str) -> Option<IpvsStats> {
    let mut lines = out.lines().map(str::trim);
    let nums = |f: &[&str]| -> Option<(u64, u64, u64)> {
        Some((
            ipvs_number(f.first()?)?,
            ipvs_number(f.get(1)?)?,
            ipvs_number(f.get(2)?)?,
        ))
    };
    let head = lines.by_ref().find(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 2 && f[0].eq_ignore_ascii_case(proto) && f[1] == addr
    })?;
    let f: Vec<&str> = head.split_whitespace().collect();
    let (conns, in_packets, out_packets) = nums(&f[2..])?;
    let mut reals = Vec::new();
    for l in lines {
        let Some(rest) = l.strip_prefix("->") else {
            break;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // The column legend ("-> RemoteAddress:Port") has no numbers.
        if let (Some(a), Some((_, p, _))) = (f.first(), f.get(1..).and_then(nums)) {
            reals.push((a.to_string(), p));
        }
    }
    Some(IpvsStats {
        conns,
        in_packets,
        out_packets,
        reals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_tests::client::{parse_ab, parse_wrk};

    const IPVSADM: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.168.253.120:80                  3       18        0     1080        0
  -> 172.16.14.121:80                    1        6        0      360        0
UDP  192.168.253.120:9                 256  1234567        0 74074020        0
  -> 172.16.14.121:9                    86   414000        0 24840000        0
  -> 172.16.14.122:9                    85   410283        0 24617000        0
  -> 172.16.14.123:9                    85   410284        0 24617000        0
";

    #[test]
    fn net_dev_tx_packets() {
        let s = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
    g0:1234567890  5    0    0    0     0          0         0 98765432109 1646090  0    3    0     0       0          0
";
        assert_eq!(parse_net_dev_tx_packets(s, "g0"), Some(1_646_090));
        assert_eq!(parse_net_dev_tx_packets(s, "lo"), Some(2));
        assert_eq!(parse_net_dev_tx_packets(s, "g"), None);
    }

    #[test]
    fn ipvsadm_stats() {
        let s = parse_ipvs_stats(IPVSADM, "UDP", "192.168.253.120:9").unwrap();
        assert_eq!(s.conns, 256);
        assert_eq!(s.in_packets, 1_234_567);
        assert_eq!(s.out_packets, 0);
        assert_eq!(s.reals.len(), 3);
        assert_eq!(s.reals[2], ("172.16.14.123:9".to_string(), 410_284));
        // The TCP service of the same address is another service.
        let t = parse_ipvs_stats(IPVSADM, "TCP", "192.168.253.120:80").unwrap();
        assert_eq!((t.in_packets, t.reals.len()), (18, 1));
        assert_eq!(parse_ipvs_stats(IPVSADM, "UDP", "192.168.253.120:80"), None);
        // Without --exact, ipvsadm scales large counters.
        let scaled = "UDP  10.0.0.1:9   256   1234K   0  74M  0\n  -> 10.0.0.2:9  1  2M  0  1  0\n";
        let s = parse_ipvs_stats(scaled, "udp", "10.0.0.1:9").unwrap();
        assert_eq!(s.in_packets, 1_234_000);
        assert_eq!(s.reals, vec![("10.0.0.2:9".to_string(), 2_000_000)]);
    }

    const AB: &str = "Server Software:        nginx/1.22.1
Concurrency Level:      30
Time taken for tests:   1.234 seconds
Complete requests:      3000
Failed requests:        2
   (Connect: 0, Receive: 0, Length: 2, Exceptions: 0)
Requests per second:    2431.12 [#/sec] (mean)
Time per request:       12.340 [ms] (mean)

Percentage of the requests served within a certain time (ms)
  50%     11
  66%     12
  75%     13
  80%     13
  90%     15
  95%     17
  98%     20
  99%     23
 100%     41 (longest request)
";

    #[test]
    fn ab_output() {
        let h = Http::from(&parse_ab(AB).unwrap());
        assert_eq!(h.rps, 2431.12);
        assert_eq!(h.failed, 2);
        assert_eq!(h.requests, 3000);
        assert_eq!(h.p50_ms, 11.0);
        assert_eq!(h.p99_ms, 23.0);
        assert!(parse_ab("apr_socket_recv: Connection refused (111)").is_err());
    }

    const WRK: &str = "Running 2s test @ http://192.168.253.120/
  2 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   90.00%
    Req/Sec     4.00k   300.00     5.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    1.80ms
     99%    3.20ms
  16000 requests in 2.00s, 12.80MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   8000.50
Transfer/sec:      6.40MB
";

    #[test]
    fn wrk_output() {
        let h = Http::from(&parse_wrk(WRK).unwrap());
        assert_eq!(h.rps, 8000.5);
        assert!((h.p50_ms - 0.812).abs() < 1e-9);
        assert_eq!(h.p99_ms, 3.2);
        assert_eq!(h.requests, 16000);
        // Socket errors (4) and non-2xx/3xx responses (5).
        assert_eq!(h.failed, 9);
        // Durations in another unit, and none, are lb-tests' own tests
        // (client::tests::wrk_report_is_parsed).
    }

    #[test]
    fn proc_stat_softirq_accounting() {
        let a = "cpu  100 5 50 1000 10 1 20 0 0 0\ncpu0 50 2 25 500 5 0 10 0 0 0\n";
        let b = "cpu  150 5 80 1100 10 1 70 0 0 0\n";
        let (a, b) = (parse_proc_stat(a).unwrap(), parse_proc_stat(b).unwrap());
        assert_eq!(a.softirq, 20);
        assert_eq!(a.busy, 100 + 5 + 50 + 1 + 20);
        assert_eq!(a.idle, 1010);
        // 50 ticks = 0.5 CPU-seconds of softirq for 2 million packets.
        assert_eq!(cpu_s_per_mpkt(a.softirq, b.softirq, 2_000_000), Some(0.25));
        assert_eq!(cpu_s_per_mpkt(0, 10, 0), None);
        assert_eq!(parse_proc_stat("intr 1 2 3"), None);
        // 30 ticks (0.3 CPU-s) over 6000 requests: 50 us each.
        assert_eq!(cpu_us_per_req(10, 40, 6000), Some(50.0));
        assert_eq!(cpu_us_per_req(10, 40, 0), None);
        // 130 busy and 100 idle ticks passed between a and b.
        assert_eq!(busy_percent(a, b).map(|p| p.round()), Some(57.0));
        assert_eq!(busy_percent(a, a), None);
    }
}
