//! `/metrics` as a careless operator and a hostile client would meet it,
//! against a real `lb run` in a namespace (`lb_tests::lab`), clients on the
//! namespace's loopback:
//! - a non-loopback `metrics_listen` is served with a warning at start-up
//!   (the endpoint has no authentication); a loopback one without;
//! - only `GET /metrics` is answered: 404 for another path, 405 for
//!   another method, 431 for an oversized request head;
//! - slow clients (slowloris: a request head started and never finished),
//!   many more than the connection cap, do not stop a real scrape nor
//!   `lb status`;
//! - clients that send a request and never read the response do not stall
//!   the agent: once they are given up on, scrapes and `lb status` work.
//!
//! The agent's file limit is lowered to 128 (soft and hard) in the two
//! last tests: a host's limit is finite and a client can reach it, and a
//! small one lets a test reach it with a few hundred connections.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lb_tests::{agent::Agent, lab::Lab};

/// A lab for this test (root, a namespace and a directory named `tag`).
fn lab(tag: &str) -> Lab {
    Lab::new(std::path::Path::new(env!("CARGO_BIN_EXE_lb")), tag).unwrap()
}

const METRICS: &str = "127.0.0.1:9469";

fn metrics_addr() -> SocketAddr {
    METRICS.parse().unwrap()
}

/// Connections opened inside the lab's namespace.
fn connect(lab: &Lab, n: usize) -> Vec<TcpStream> {
    lab.inside(|| {
        (0..n)
            .map(|_| {
                TcpStream::connect_timeout(&metrics_addr(), Duration::from_secs(5))
                    .expect("connecting to the metrics endpoint")
            })
            .collect()
    })
}

/// One request, the whole answer (`None` when the connection failed or
/// was closed without one).
fn exchange(lab: &Lab, request: &[u8], timeout: Duration) -> Option<String> {
    let mut stream = lab.inside(|| TcpStream::connect_timeout(&metrics_addr(), timeout).ok())?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n";

fn is_full_scrape(answer: &str) -> bool {
    answer.starts_with("HTTP/1.1 200")
        && answer.contains("lb_build_info")
        && answer.ends_with("# EOF\n")
}

/// A complete scrape within `within`, retrying refused or failed tries.
fn scrape_within(lab: &Lab, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::from("no answer");
    while start.elapsed() < within {
        match exchange(lab, SCRAPE, Duration::from_secs(2)) {
            Some(answer) if is_full_scrape(&answer) => return Ok(start.elapsed()),
            Some(answer) => last = answer.lines().next().unwrap_or("").to_string(),
            None => last = "no answer".into(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

fn status_answers(agent: &Agent) -> bool {
    lb_userspace::control::request(&agent.socket, &lb_userspace::control::Request::Status)
        .is_ok_and(|r| r.ok)
}

#[test]
fn a_non_loopback_bind_is_served_with_a_warning() {
    let lab = lab("mh-bind");
    let open = lab
        .config("open.toml", "metrics_listen = \"0.0.0.0:9469\"", 1)
        .unwrap();
    let agent = lab.start(&open, None).unwrap();
    let log = agent.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("0.0.0.0:9469"))
        .unwrap_or_else(|| panic!("no warning about 0.0.0.0:9469 in:\n{log}"));
    assert!(
        warning.contains("no authentication") && warning.contains("127.0.0.1"),
        "{warning}"
    );
    scrape_within(&lab, Duration::from_secs(5)).expect("a scrape on 0.0.0.0");
    agent.stop().unwrap();

    let local = lab
        .config("local.toml", &format!("metrics_listen = \"{METRICS}\""), 1)
        .unwrap();
    let agent = lab.start(&local, None).unwrap();
    scrape_within(&lab, Duration::from_secs(5)).expect("a scrape on 127.0.0.1");
    let log = agent.log();
    assert!(
        !log.contains("no authentication"),
        "warned on loopback:\n{log}"
    );
}

#[test]
fn only_get_metrics_is_answered() {
    let lab = lab("mh-get");
    let config = lab
        .config("lb.toml", &format!("metrics_listen = \"{METRICS}\""), 1)
        .unwrap();
    let _agent = lab.start(&config, None).unwrap();
    let t = Duration::from_secs(5);
    let answer = |request: &[u8]| exchange(&lab, request, t).unwrap_or_default();

    let ok = answer(SCRAPE);
    assert!(is_full_scrape(&ok), "{ok}");
    let not_found = answer(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n");
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    let post = answer(b"POST /metrics HTTP/1.1\r\nHost: lb\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get"), "{post}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: lb\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = answer(&huge);
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large:.200}");
}

#[test]
fn slow_clients_beyond_the_cap_do_not_stop_a_scrape() {
    let lab = lab("mh-slow");
    let config = lab
        .config("lb.toml", &format!("metrics_listen = \"{METRICS}\""), 1)
        .unwrap();
    let agent = lab.start(&config, Some(128)).unwrap();

    // 200 clients, more than the agent has file descriptors, each with a
    // request head begun and never finished.
    let mut slow = connect(&lab, 200);
    for s in &mut slow {
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: lb\r\nX-Slow: ");
    }
    // Well inside the 5 s the agent gives a request head: the slow
    // clients are still there.
    let took = scrape_within(&lab, Duration::from_secs(3))
        .unwrap_or_else(|last| panic!("no scrape beside 200 slow clients (last: {last})"));
    assert!(status_answers(&agent), "lb status beside 200 slow clients");
    eprintln!("scrape beside 200 slow clients took {took:?}");
    drop(slow);
}

#[test]
fn clients_that_never_read_do_not_stall_the_agent() {
    let lab = lab("mh-read");
    // 400 real servers: a response of some 400 KB; with send buffers of
    // at most 64 KiB (the namespace's tcp_wmem), more than the kernel takes
    // for a client that does not read, as a large config's response is
    // with the default buffers.
    lab.sysctl("net.ipv4.tcp_wmem", "4096 16384 65536").unwrap();
    let config = lab
        .config("lb.toml", &format!("metrics_listen = \"{METRICS}\""), 400)
        .unwrap();
    let agent = lab.start(&config, Some(128)).unwrap();
    let size = exchange(&lab, SCRAPE, Duration::from_secs(10))
        .expect("a first scrape")
        .len();
    assert!(size > 300_000, "the response is only {size} bytes");

    // 150 clients (more than the agent's 128 files) send a scrape each
    // and never read: their receive buffers are made small first.
    let sent = lab.inside(|| {
        (0..150)
            .map(|_| {
                let socket = socket2_small_rcvbuf();
                socket
                    .set_write_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut s = socket;
                let _ = s.write_all(SCRAPE);
                s
            })
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        status_answers(&agent),
        "lb status does not answer beside 150 clients that do not read"
    );
    // The agent gives up on them within its 10 s write deadline.
    let took = scrape_within(&lab, Duration::from_secs(20)).unwrap_or_else(|last| {
        panic!("no scrape within 20 s of 150 clients that do not read (last: {last})")
    });
    assert!(status_answers(&agent));
    eprintln!("scrape after clients that never read took {took:?}");
    drop(sent);
}

/// A TCP connection to the endpoint with a 4 KiB receive buffer, set
/// before connecting (the window is fixed at the handshake).
fn socket2_small_rcvbuf() -> TcpStream {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls on a fd this function owns until it is
    // handed to TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 9469u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}
