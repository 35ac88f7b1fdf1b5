//! Process lifecycle (R8, R13): SIGTERM drains in-flight requests, seals the open window and
//! exits 0; readiness drops at once; a second signal exits at once without losing anything
//! acknowledged.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{assert_acked_exactly_once, assert_chains, assert_records_from, read_records, temp_dir, verify, Load, Service};
use nix::sys::signal::Signal;

/// Drain timeout given to the service in these tests.
const DRAIN: Duration = Duration::from_secs(10);

/// Files left in `data/wal`.
fn wal_files(svc_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(svc_dir.join("wal"))
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default()
}

/// A reprice whose body is only half sent: it stays in flight until [`SlowReprice::finish`].
/// A complete request is sent first on the same connection and answered, which proves that a
/// worker owns the connection before the test goes on.
struct SlowReprice {
    stream: TcpStream,
    rest: Vec<u8>,
}

fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    // Reads one response with a Content-Length body (actix always sends one here).
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read response head");
        assert!(n == 1, "connection closed in the response head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad head {head:?}"));
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("read response body");
    (status, body)
}

impl SlowReprice {
    fn start(api: &str, product: &str, price: &str) -> SlowReprice {
        let addr = api.strip_prefix("http://").unwrap();
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let request = |body: &str, close: bool| {
            format!(
                "POST /api/reprice HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
                body.len(),
                if close { "Connection: close\r\n" } else { "" }
            )
        };
        let warmup = format!("{{\"productId\":\"{product}\",\"price\":1}}");
        stream.write_all(request(&warmup, false).as_bytes()).unwrap();
        let (status, _) = read_response(&mut stream);
        assert_eq!(status, 202, "warm-up reprice");
        let body = format!("{{\"productId\":\"{product}\",\"price\":{price}}}");
        let full = request(&body, true).into_bytes();
        let cut = full.len() - body.len() / 2;
        stream.write_all(&full[..cut]).unwrap();
        stream.flush().unwrap();
        SlowReprice { stream, rest: full[cut..].to_vec() }
    }

    /// Whether the service already answered (it refused the request before its body was sent).
    fn was_answered(&self) -> bool {
        self.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let answered = matches!(self.stream.peek(&mut byte), Ok(n) if n > 0);
        self.stream.set_nonblocking(false).unwrap();
        answered
    }

    /// Sends the rest of the body and returns the status of the answer.
    fn finish(mut self) -> u16 {
        self.stream.write_all(&self.rest).expect("send the rest of the body");
        read_response(&mut self.stream).0
    }
}

/// Starts a [`SlowReprice`] on a service run with `--reprice-max-inflight 1` and waits until its
/// handler holds the only reprice slot (a probe reprice is refused with 503), so that the request
/// is in flight in the service, not just in a socket buffer. Returns the prices of probes that
/// were accepted before that.
fn hold_in_flight(svc: &Service, product: &str, price: &str) -> (SlowReprice, Vec<String>) {
    let mut slow = SlowReprice::start(&svc.api, product, price);
    let mut accepted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = format!("0.{}", accepted.len() + 1);
        match svc.reprice("probe", &probe) {
            503 => return (slow, accepted),
            202 => accepted.push(probe),
            other => panic!("probe reprice: {other}"),
        }
        // A probe that held the only slot when the slow request arrived got it refused (503,
        // already answered): start another slow request.
        if slow.was_answered() {
            slow = SlowReprice::start(&svc.api, product, price);
        }
        assert!(Instant::now() < deadline, "the slow reprice never reached its handler");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` every 5 ms until it is true; returns how long it took, or panics after `limit`.
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if f() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigterm_under_load_drains_seals_and_exits_0() {
    let dir = temp_dir();
    let mut svc = Service::start_with(dir.path(), &["--drain-timeout", "10s"], &[]);
    let load = Load::start(&svc.api, 6, 20, "term-");
    load.wait_acked(300);
    let signalled = Instant::now();
    svc.signal(Signal::SIGTERM);
    let status = svc.wait_within(DRAIN + Duration::from_secs(5));
    let took = signalled.elapsed();
    let outcome = load.finish();
    let status = status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM:\n{}", svc.log_text()));
    assert!(status.success(), "exit status {status} after SIGTERM:\n{}", svc.log_text());
    eprintln!("SIGTERM under load: exit after {took:?}; load {:?}", outcome.statuses);
    assert!(took < DRAIN, "SIGTERM took {took:?}, longer than the drain timeout {DRAIN:?}");
    assert!(wal_files(dir.path()).is_empty(), "WAL left after a clean stop: {:?}", wal_files(dir.path()));
    let records = read_records(dir.path());
    assert_acked_exactly_once(&records, &outcome.acked, &outcome.sent);
    assert_records_from(&records, &outcome.sent);
    assert_chains(&records);
    let (ok, report) = verify(dir.path());
    assert!(ok, "verify after SIGTERM: {report}");
    assert!(outcome.acked.len() >= 300, "statuses {:?}", outcome.statuses);
}

#[test]
fn readiness_drops_at_once_and_in_flight_requests_finish() {
    // One worker: the actors share its thread. Two: the actors have a thread of their own, which
    // must outlive the idle worker's drain (the slow request may sit on the other one).
    for workers in ["1", "2"] {
        readiness_drops_and_in_flight_requests_finish_with(workers);
    }
}

fn readiness_drops_and_in_flight_requests_finish_with(workers: &str) {
    let dir = temp_dir();
    let mut svc =
        Service::start_with(dir.path(), &["--drain-timeout", "10s", "--reprice-max-inflight", "1", "--http-workers", workers], &[]);
    assert_eq!(svc.reprice("ready-0", "5.00"), 202);
    let (slow, _) = hold_in_flight(&svc, "slow-1", "42.4200");
    assert_eq!(svc.admin_status("/healthz/ready"), Some(200));
    svc.signal(Signal::SIGTERM);
    let took = within(Duration::from_secs(2), "/healthz/ready goes 503 after SIGTERM", || {
        svc.admin_status("/healthz/ready") != Some(200)
    });
    assert_eq!(svc.admin_status("/healthz/ready"), Some(503), "readiness during the drain ({took:?} after SIGTERM)");
    assert_eq!(svc.admin_status("/healthz/live"), Some(200), "liveness during the drain");
    // The API stops taking connections while the in-flight request is still being served.
    let addr = svc.api.strip_prefix("http://").unwrap().to_string();
    within(Duration::from_secs(2), "API stops accepting connections after SIGTERM", || {
        TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500)).is_err()
    });
    assert!(svc.try_wait().is_none(), "exited before the in-flight request finished:\n{}", svc.log_text());
    assert_eq!(slow.finish(), 202, "the in-flight reprice is served during the drain ({workers} HTTP workers)");
    let status = svc.wait_within(Duration::from_secs(10)).expect("exits once the drain is done");
    assert!(status.success(), "exit status {status}:\n{}", svc.log_text());
    assert!(wal_files(dir.path()).is_empty(), "WAL left: {:?}", wal_files(dir.path()));
    let records = read_records(dir.path());
    let prices: Vec<(&str, &str)> =
        records.iter().filter(|r| r.product_id != "probe").map(|r| (r.product_id.as_str(), r.new_price.as_str())).collect();
    // ready-0, then one warm-up of the slow connection per attempt at holding the slot, then the
    // slow reprice itself.
    let warmups = &prices[1..prices.len() - 1];
    assert_eq!(prices.first(), Some(&("ready-0", "5.00")), "{prices:?}");
    assert_eq!(prices.last(), Some(&("slow-1", "42.4200")), "{prices:?}");
    assert!(!warmups.is_empty() && warmups.iter().all(|p| *p == ("slow-1", "1")), "{prices:?}");
    assert_chains(&records);
    assert!(verify(dir.path()).0);
}

#[test]
fn a_second_signal_exits_at_once_and_loses_nothing_acknowledged() {
    for second in [Signal::SIGTERM, Signal::SIGINT] {
        let dir = temp_dir();
        // One reprice slot, so that the slow request below is known to be in flight.
        let mut svc = Service::start_with(dir.path(), &["--drain-timeout", "30s", "--reprice-max-inflight", "1"], &[]);
        let load = Load::start(&svc.api, 4, 10, "twice-");
        load.wait_acked(100);
        let mut outcome = load.finish();
        // Keeps the drain going until the second signal; the acknowledged reprices of the open
        // window are only in the WAL when the process dies.
        let (slow, probes) = hold_in_flight(&svc, "twice-slow", "7.5");
        for p in probes {
            outcome.acked.push(("probe".into(), p.clone()));
            outcome.sent.push(("probe".into(), p));
        }
        svc.signal(Signal::SIGTERM);
        within(Duration::from_secs(2), "/healthz/ready goes 503 after SIGTERM", || svc.admin_status("/healthz/ready") != Some(200));
        // The process is draining (the slow request holds it); let the second-signal handler
        // be installed, then send the second signal.
        std::thread::sleep(Duration::from_millis(300));
        assert!(svc.try_wait().is_none(), "the drain should still be waiting for the slow request");
        let signalled = Instant::now();
        svc.signal(second);
        let status = svc.wait_within(Duration::from_secs(3));
        let took = signalled.elapsed();
        drop(slow);
        let status = status.unwrap_or_else(|| panic!("second {second:?} did not exit at once:\n{}", svc.log_text()));
        assert_eq!(status.code(), Some(128 + second as i32), "exit code after a second {second:?}");
        eprintln!("second {second:?}: exit {status} after {took:?}; load {:?}", outcome.statuses);

        let svc = Service::start(dir.path());
        for (product, _) in outcome.acked.iter().take(1) {
            assert!(svc.price_of(product).is_some());
        }
        assert!(svc.terminate().success());
        let records = read_records(dir.path());
        assert_acked_exactly_once(&records, &outcome.acked, &outcome.sent);
        assert_chains(&records);
        let (ok, report) = verify(dir.path());
        assert!(ok, "verify after a second {second:?} and a restart: {report}");
    }
}

#[test]
fn drain_timeout_bounds_a_request_that_never_finishes() {
    let dir = temp_dir();
    let mut svc = Service::start_with(dir.path(), &["--drain-timeout", "2s", "--reprice-max-inflight", "1"], &[]);
    assert_eq!(svc.reprice("stuck-0", "3"), 202);
    let (stuck, _) = hold_in_flight(&svc, "stuck-1", "4");
    let signalled = Instant::now();
    svc.signal(Signal::SIGTERM);
    let status = svc.wait_within(Duration::from_secs(10));
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("a stuck request kept the process alive past the drain timeout:\n{}", svc.log_text()));
    assert!(status.success(), "exit status {status}:\n{}", svc.log_text());
    assert!(took >= Duration::from_millis(1500), "the drain gave up early: {took:?}");
    assert!(took < Duration::from_secs(5), "the drain took {took:?} with --drain-timeout 2s");
    drop(stuck);
    assert!(wal_files(dir.path()).is_empty());
    let records = read_records(dir.path());
    let prices: Vec<(&str, &str)> =
        records.iter().filter(|r| r.product_id != "probe").map(|r| (r.product_id.as_str(), r.new_price.as_str())).collect();
    assert_eq!(prices.first(), Some(&("stuck-0", "3")), "{prices:?}");
    assert!(prices.len() >= 2 && prices[1..].iter().all(|p| *p == ("stuck-1", "1")), "the unfinished reprice is not stored: {prices:?}");
    assert!(verify(dir.path()).0);
}

/// Background threads (checkpointer, segment readers) run at nice 10 and the request path at
/// the process's own priority: under contention, requests get the cores first.
#[test]
fn background_threads_run_at_a_lower_priority_than_the_request_path() {
    let dir = temp_dir();
    let svc = Service::start_with(dir.path(), &["--query-threads", "3"], &[]);
    assert_eq!(svc.reprice("nice-1", "1.5"), 202);
    // The readers are SyncArbiter threads, named like every actix thread.
    let mut by_name: Vec<(String, i64)> = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", svc.pid())).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap().trim().to_string();
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // Fields after the parenthesised comm: state is field 3, nice is field 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i64 = after.split(' ').nth(16).unwrap().parse().unwrap();
        by_name.push((comm, nice));
    }
    let nice_of = |name: &str| by_name.iter().filter(|(c, _)| c == name).map(|(_, n)| *n).collect::<Vec<_>>();
    assert_eq!(nice_of("checkpointer"), [10], "{by_name:?}");
    assert_eq!(nice_of("segment-writer"), [0], "{by_name:?}");
    assert_eq!(nice_of("segment-sealer"), [0], "{by_name:?}");
    let actix: Vec<i64> = by_name.iter().filter(|(c, _)| c.starts_with("actix-rt")).map(|(_, n)| *n).collect();
    assert_eq!(actix.iter().filter(|&&n| n == 10).count(), 3, "the 3 readers at nice 10: {by_name:?}");
    assert!(actix.iter().filter(|&&n| n == 0).count() >= 2, "the system and HTTP worker threads at nice 0: {by_name:?}");
    assert_eq!(by_name.iter().filter(|(_, n)| *n != 0 && *n != 10).count(), 0, "{by_name:?}");
    assert!(svc.terminate().success());
}
