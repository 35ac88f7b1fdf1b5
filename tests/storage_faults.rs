//! Storage faults (R7, R8, R9, R12): torn and empty files left by a crash, a full disk, a
//! read-only data directory, and restarts within one second.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{assert_acked_exactly_once, assert_chains, assert_records_from, read_records, run_to_exit, temp_dir, verify, Exited, Service};
use repricer_actors::event::Event;
use repricer_actors::price::Price;
use repricer_actors::segment::format::{encode_wal_line, parse_wal, wal_file_name, SegmentName};
use repricer_actors::time::{parse_rfc3339, NANOS_PER_SEC};

/// A tmpfs mounted for the test, unmounted when dropped (even when the test fails).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Tmpfs {
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(path).status().expect("run mount");
        assert!(status.success(), "mount -t tmpfs -o {options} failed (these tests need root)");
        Tmpfs { path: path.to_path_buf() }
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,{options}")]).arg(&self.path).status().expect("run mount");
        assert!(status.success(), "remount {options} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Waits until the wall clock is in the first 300 ms of a second, so that a short burst of work
/// stays inside one one-second window.
fn wait_early_in_second() {
    while SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_millis() >= 300 {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn recovery_line(svc: &Service) -> String {
    svc.log_text().lines().find(|l| l.contains("recovery finished")).unwrap_or("").to_string()
}

fn total_count(svc: &Service, filter: &str) -> u64 {
    let resp = svc.query(&format!("pagesize=1{filter}"));
    assert_eq!(resp.status(), 200, "query {filter}");
    resp.headers()["x-total-count"].to_str().unwrap().parse().unwrap()
}

fn pairs(records: &[common::Record]) -> Vec<(String, String)> {
    records.iter().map(|r| (r.product_id.clone(), r.new_price.clone())).collect()
}

fn event(seq: u64, timestamp: i64, product: &str, price: &str, previous: Option<&str>) -> Event {
    Event {
        seq,
        timestamp,
        product_id: Arc::from(product),
        price: Price::parse(price).unwrap(),
        previous_price: previous.map(|p| Price::parse(p).unwrap()),
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn torn_last_wal_record_is_dropped_and_complete_ones_kept() {
    let dir = temp_dir();
    let wal_dir = dir.path().join("wal");

    // 1. The service's own WAL, torn by hand after a kill -9 right after some 202s.
    let svc = Service::start(dir.path());
    wait_early_in_second();
    let mut acked = Vec::new();
    for i in 0..12 {
        let (product, price) = (format!("t-{}", i % 4), format!("{}.{:02}", 10 + i, i));
        assert_eq!(svc.reprice(&product, &price), 202);
        acked.push((product, price));
    }
    svc.kill9();
    let wals = names_in(&wal_dir);
    let own_wal = wals.len() == 1;
    if let Some(name) = wals.last() {
        let path = wal_dir.join(name);
        let (events, valid) = parse_wal(&std::fs::read(&path).unwrap());
        assert_eq!(valid as u64, std::fs::metadata(&path).unwrap().len(), "the WAL of a kill -9 has no torn tail by itself");
        let last = events.last().expect("the open window holds the last reprices");
        let mut line = Vec::new();
        encode_wal_line(&event(last.seq + 1, last.timestamp + 1, "torn-product", "1.23", None), &mut line);
        append(&path, &line[..line.len() / 2]);
    } else {
        eprintln!("the window was sealed before the kill; only the hand-made WAL below is torn");
    }
    let svc = Service::start(dir.path());
    let line = recovery_line(&svc);
    if own_wal {
        assert!(!line.contains("torn_bytes=0 ") && line.contains("torn_bytes="), "recovery must report the torn bytes: {line}");
    }
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (p, v) in &acked {
        last.insert(p.clone(), v.clone());
    }
    for (p, v) in &last {
        assert_eq!(svc.price_of(p).as_deref(), Some(v.as_str()), "price of {p} after the torn WAL");
    }
    assert_eq!(svc.price_of("torn-product"), None, "the torn record must not be there");
    assert_eq!(total_count(&svc, ""), acked.len() as u64);
    assert!(names_in(&wal_dir).len() <= 1, "the recovered WAL is gone");
    assert_eq!(svc.reprice("t-0", "99.5"), 202);
    acked.push(("t-0".into(), "99.5".into()));
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_eq!(pairs(&records), acked);
    assert_chains(&records);
    let (ok, report) = verify(dir.path());
    assert!(ok, "verify: {report}");
    assert!(names_in(&dir.path().join("quarantine")).is_empty(), "a torn WAL tail is dropped, not quarantined");

    // 2. A WAL written by hand in the documented format: two complete records (one continuing
    //    the chain of t-0) and a torn tail of NUL bytes (a size update that beat the data).
    let last_record = records.last().unwrap();
    let last_ts = parse_rfc3339(&last_record.timestamp).unwrap();
    let window = (last_ts.div_euclid(NANOS_PER_SEC) + 1) * NANOS_PER_SEC;
    let next = records.len() as u64 + 1;
    let mut bytes = Vec::new();
    encode_wal_line(&event(next, window + 1_000, "hand-0", "3.5", None), &mut bytes);
    encode_wal_line(&event(next + 1, window + 2_000, "t-0", "4.25", Some("99.5")), &mut bytes);
    bytes.extend_from_slice(&[0u8; 40]);
    std::fs::write(wal_dir.join(wal_file_name(window)), &bytes).unwrap();
    let svc = Service::start(dir.path());
    assert_eq!(svc.price_of("hand-0").as_deref(), Some("3.5"));
    assert_eq!(svc.price_of("t-0").as_deref(), Some("4.25"));
    assert_eq!(svc.price_of("t-1").as_deref(), last.get("t-1").map(String::as_str));
    assert_eq!(svc.reprice("t-0", "5"), 202);
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    acked.extend([("hand-0".into(), "3.5".into()), ("t-0".into(), "4.25".into()), ("t-0".into(), "5".into())]);
    assert_eq!(pairs(&records), acked);
    assert_chains(&records);
    assert!(names_in(&wal_dir).is_empty());
    let (ok, report) = verify(dir.path());
    assert!(ok, "verify: {report}");
}

#[test]
fn zero_length_wal_and_segment_files_are_repaired_at_start() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    for (p, v) in [("z-1", "1.5"), ("z-2", "2.5"), ("z-1", "1.75")] {
        assert_eq!(svc.reprice(p, v), 202);
    }
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    let last_window = SegmentName::parse(&records.last().unwrap().file).unwrap().window_start;
    // A segment file that sorts after the others but holds nothing, and a WAL created for the
    // next window (its file exists, no record reached it).
    let empty_segment = SegmentName { window_start: last_window + 2 * NANOS_PER_SEC, first_seq: 4, count: 1 }.file_name();
    std::fs::write(dir.path().join("results").join(&empty_segment), b"").unwrap();
    let empty_wal = wal_file_name(last_window + NANOS_PER_SEC);
    std::fs::write(dir.path().join("wal").join(&empty_wal), b"").unwrap();

    let svc = Service::start(dir.path());
    assert_eq!(names_in(&dir.path().join("quarantine")), std::slice::from_ref(&empty_segment), "the empty segment is quarantined");
    assert!(!names_in(&dir.path().join("results")).contains(&empty_segment));
    assert!(names_in(&dir.path().join("wal")).is_empty(), "the empty WAL is removed");
    assert_eq!(svc.price_of("z-1").as_deref(), Some("1.75"));
    assert_eq!(svc.price_of("z-2").as_deref(), Some("2.5"));
    assert_eq!(svc.reprice("z-2", "2.75"), 202);
    assert!(svc.terminate().success());

    // No crash loop: it starts again, and again.
    for _ in 0..2 {
        let svc = Service::start(dir.path());
        assert_eq!(svc.price_of("z-2").as_deref(), Some("2.75"));
        assert!(svc.terminate().success());
    }
    assert_eq!(names_in(&dir.path().join("quarantine")), [empty_segment]);
    let records = read_records(dir.path());
    assert_eq!(pairs(&records), [("z-1", "1.5"), ("z-2", "2.5"), ("z-1", "1.75"), ("z-2", "2.75")].map(|(a, b)| (a.to_string(), b.to_string())));
    assert_chains(&records);
    let (ok, report) = verify(dir.path());
    assert!(ok, "verify: {report}");
}

#[test]
fn full_disk_refuses_writes_keeps_reads_and_loses_nothing_acknowledged() {
    let dir = temp_dir();
    let mount = Tmpfs::mount(dir.path(), "size=512k");
    let data = dir.path().join("data");
    let mut svc = Service::start(&data);

    // Each thread owns its products and posts sequentially, so its last 202 per product is the
    // product's last durable price.
    const THREADS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    // (status, Retry-After, body) of the first refused write of each thread.
    type Failure = (u16, Option<String>, String);
    let failures: Arc<Mutex<Vec<Failure>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, failures, api) = (Arc::clone(&stop), Arc::clone(&failures), svc.api.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                let (mut sent, mut acked) = (Vec::new(), Vec::new());
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    assert!(started.elapsed() < Duration::from_secs(120), "the disk never filled up");
                    n += 1;
                    let product = format!("disk-{t}-{}-{}", n % 5, "x".repeat(200));
                    let price = format!("{n}.{:055}", n * 7 + t as u64);
                    sent.push((product.clone(), price.clone()));
                    let resp = http
                        .post(format!("{api}/api/reprice"))
                        .header("content-type", "application/json")
                        .body(format!("{{\"productId\":\"{product}\",\"price\":{price}}}"))
                        .send()
                        .expect("the service answers while the disk is full");
                    let status = resp.status().as_u16();
                    if status == 202 {
                        acked.push((product, price));
                        continue;
                    }
                    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                    let body = resp.text().unwrap();
                    failures.lock().unwrap().push((status, retry, body));
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
                (sent, acked)
            })
        })
        .collect();
    let (mut sent, mut acked) = (Vec::new(), Vec::new());
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for w in workers {
        let (s, a) = w.join().unwrap();
        for (p, _) in &s {
            last.entry(p.clone()).or_default();
        }
        for (p, v) in &a {
            last.insert(p.clone(), v.clone());
        }
        sent.extend(s);
        acked.extend(a);
    }
    let failures = failures.lock().unwrap().clone();
    eprintln!("disk full after {} acknowledged reprices in {:?}: {failures:?}", acked.len(), started.elapsed());
    assert!(!failures.is_empty());
    for (status, retry, body) in &failures {
        assert_eq!(*status, 503, "a write on a full disk: {body}");
        assert!(retry.is_some(), "503 without Retry-After: {body}");
        assert!(body.contains("storage"), "the error must say that storage is unavailable: {body}");
    }
    assert!(!acked.is_empty());
    let cause = svc.log_text().lines().find(|l| l.contains("storage write failed")).map(str::to_string);
    eprintln!("logged: {cause:?}");
    assert!(cause.is_some_and(|l| l.contains("No space left on device")), "the log names the cause");

    // From now on every write is refused, at once, with 503 + Retry-After and a JSON error.
    for (p, v) in [("disk-new", "1"), (acked[0].0.as_str(), "2")] {
        let resp = svc.post_raw(&format!("{{\"productId\":\"{p}\",\"price\":{v}}}"), "application/json");
        assert!(resp.headers().contains_key("retry-after"), "503 without Retry-After");
        let error = common::expect_json_error(resp, 503);
        assert!(error.contains("storage"), "{error}");
        sent.push((p.to_string(), v.to_string()));
    }
    assert_eq!(svc.admin_status("/healthz/ready"), Some(503));
    assert_eq!(svc.admin_status("/healthz/live"), Some(503));
    // Reads keep working and show only acknowledged prices: the last one of each product.
    for (p, v) in &last {
        let want = (!v.is_empty()).then_some(v.as_str());
        assert_eq!(svc.price_of(p).as_deref(), want, "price of {p} on a full disk");
    }
    assert_eq!(svc.price_of("disk-new"), None);
    assert_eq!(total_count(&svc, ""), acked.len() as u64, "queries see exactly the acknowledged events");
    svc.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = svc.wait_within(Duration::from_secs(30)).expect("SIGTERM stops a service whose disk is full");
    eprintln!("SIGTERM on a full disk: {exit}");
    drop(svc);

    // A bigger disk: everything acknowledged is there, once; the service takes writes again.
    mount.remount("size=16m");
    let svc = Service::start(&data);
    assert_eq!(svc.admin_status("/healthz/live"), Some(200));
    let records = read_records(&data);
    assert_acked_exactly_once(&records, &acked, &sent);
    assert_records_from(&records, &sent);
    assert_chains(&records);
    let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &records {
        newest.insert(&r.product_id, &r.new_price);
    }
    for (p, v) in &newest {
        assert_eq!(svc.price_of(p).as_deref(), Some(*v), "price of {p} after the restart");
    }
    assert_eq!(svc.reprice("disk-after", "1.5"), 202);
    assert!(svc.terminate().success());
    let (ok, report) = verify(&data);
    assert!(ok, "verify after the full disk: {report}");
    drop(mount);
}

fn serve_once(data_dir: &Path) -> Exited {
    run_to_exit(
        &["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    )
}

fn assert_exit_2_one_line(out: &Exited, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "exit status {} (stderr {:?})", out.status, out.stderr);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "one line on stderr, got {:?}", out.stderr);
    for n in needles {
        assert!(lines[0].to_lowercase().contains(&n.to_lowercase()), "{:?} does not mention {n:?}", lines[0]);
    }
}

#[test]
fn read_only_data_dir_fails_at_start() {
    // An empty read-only filesystem.
    let dir = temp_dir();
    {
        let _ro = Tmpfs::mount(dir.path(), "ro,size=1m");
        assert_exit_2_one_line(&serve_once(dir.path()), &[dir.path().to_str().unwrap(), "read-only"]);
        let nested = dir.path().join("data");
        assert_exit_2_one_line(&serve_once(&nested), &[nested.to_str().unwrap(), "read-only"]);
    }
    // A data directory with history, remounted read-only.
    let dir = temp_dir();
    let mount = Tmpfs::mount(dir.path(), "size=4m");
    let data = dir.path().join("data");
    let svc = Service::start(&data);
    assert_eq!(svc.reprice("ro-1", "8.5"), 202);
    assert!(svc.terminate().success());
    mount.remount("ro");
    assert_exit_2_one_line(&serve_once(&data), &["read-only"]);
    let (ok, report) = verify(&data);
    assert!(ok, "verify only reads, so it works on a read-only directory: {report}");
    mount.remount("rw");
    let svc = Service::start(&data);
    assert_eq!(svc.price_of("ro-1").as_deref(), Some("8.5"));
    assert!(svc.terminate().success());
    drop(mount);
}

#[test]
fn restarts_within_one_second_never_reuse_a_file_name() {
    let dir = temp_dir();
    wait_early_in_second();
    let started = Instant::now();
    let prices = ["1.10", "1.20", "1.30"];
    for price in prices {
        let svc = Service::start(dir.path());
        assert_eq!(svc.reprice("s-1", price), 202);
        assert!(svc.terminate().success());
    }
    eprintln!("three start/reprice/stop cycles in {:?}", started.elapsed());
    let files = names_in(&dir.path().join("results"));
    assert_eq!(files.len(), prices.len(), "one file per run: {files:?}");
    let mut distinct = files.clone();
    distinct.dedup();
    assert_eq!(distinct, files);
    let records = read_records(dir.path());
    assert_eq!(records.iter().map(|r| r.new_price.as_str()).collect::<Vec<_>>(), prices);
    assert_chains(&records);
    let ts: Vec<i64> = records.iter().map(|r| parse_rfc3339(&r.timestamp).unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "timestamps must strictly increase: {ts:?}");
    let (ok, report) = verify(dir.path());
    assert!(ok, "verify: {report}");
}
