//! R5 admission: a slow reader of a large query page keeps its slot until its body is written,
//! and the excess gets `503` with `Retry-After` and a JSON error at once, without queueing.
//!
//! How this is made deterministic:
//! - a page is ~380 KB (1000 rows with 256-byte ids and 64-character prices);
//! - a stalled reader connects with a 4 KiB receive buffer and a 536-byte MSS (Linux sizes the
//!   server's send buffer from MSS x congestion window, so it stays near 100 KB), sends one
//!   query for the full page and never reads past the status line: the server cannot hand the
//!   body over, and the request stays in flight until the connection is closed;
//! - each stalled reader is opened while nothing else is in flight and reads its status line
//!   (`200`), so it is known to hold a slot before the next one is opened. (Probing while the
//!   readers' requests are still arriving would race: a probe holding the slot makes a reader's
//!   request get a quick 503, and then nothing stalls.)

mod common;

use std::time::{Duration, Instant};

use common::{api_addr, expect_json_error, stalled_reader, temp_dir, Service};

const ROWS: usize = 1000;
const LIMIT: usize = 3;


/// Socket state of the API port, for failure messages.
fn socket_report(svc: &Service) -> String {
    let port = api_addr(svc).port();
    std::process::Command::new("ss")
        .args(["-tnm", &format!("sport = :{port} or dport = :{port}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}


fn rejections(svc: &Service) -> u64 {
    let text = svc.http.get(format!("{}/metrics", svc.admin)).send().unwrap().text().unwrap();
    text.lines()
        .filter(|l| l.starts_with("repricer_admission_rejections_total") && l.contains("endpoint=\"query\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Asserts the next query is refused at once with 503, `Retry-After` and a JSON error.
fn assert_refused(svc: &Service) {
    let started = Instant::now();
    let r = svc.query("pagesize=1");
    let elapsed = started.elapsed();
    if r.status() != 503 {
        panic!("expected 503 while {LIMIT} slots are held, got {}\n{}", r.status(), socket_report(svc));
    }
    let retry = r.headers().get("retry-after").expect("Retry-After on 503").to_str().unwrap().to_string();
    assert!(retry.trim().parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After {retry:?}");
    let msg = expect_json_error(r, 503);
    assert!(msg.contains("query"), "the error names the endpoint: {msg}");
    // Refused at once, not queued behind the stalled requests (generous bound for a debug build).
    assert!(elapsed < Duration::from_secs(5), "a refusal took {elapsed:?}");
}

/// Polls until a query is admitted again (bounded wait; the assertion is that it happens).
fn await_admitted(svc: &Service) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = svc.query("pagesize=1");
        if r.status() == 200 {
            return;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "no slot was released after a slow reader closed\n{}", socket_report(svc));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_readers_of_large_pages_hold_query_slots_and_the_excess_gets_503() {
    let dir = temp_dir();
    let limit = LIMIT.to_string();
    let svc = Service::start_with(dir.path(), &["--query-max-inflight", &limit], &[]);

    // 1000 events with long ids and long prices, posted from 8 threads.
    std::thread::scope(|s| {
        for t in 0..8 {
            let svc = &svc;
            s.spawn(move || {
                for i in (t..ROWS).step_by(8) {
                    let id = format!("{i:0>256}");
                    let price = format!("{}.{}", i + 1, "7".repeat(61 - (i + 1).to_string().len()));
                    assert_eq!(price.len(), 62);
                    assert_eq!(svc.reprice(&id, &price), 202);
                }
            });
        }
    });
    let full = svc.query(&format!("pagesize={ROWS}"));
    assert_eq!(full.status(), 200);
    let page_bytes = full.text().unwrap().len();
    assert!(page_bytes > 350_000, "a full page is {page_bytes} bytes");

    let addr = api_addr(&svc);
    let rejected_before = rejections(&svc);

    // LIMIT slow readers, each admitted (nothing else is in flight) and then stalled.
    let mut stalled = Vec::new();
    for i in 0..LIMIT {
        let (stream, status) = stalled_reader(addr, ROWS);
        assert_eq!(status, "HTTP/1.1 200 OK", "slow reader {i} is within the limit");
        stalled.push(stream);
    }
    // The limit is reached: every further query is refused at once, for as long as they stall.
    for _ in 0..10 {
        assert_refused(&svc);
        std::thread::sleep(Duration::from_millis(30));
    }
    // A raw request over another connection is refused the same way.
    let (_, status) = stalled_reader(addr, ROWS);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert!(rejections(&svc) >= rejected_before + 11, "rejections are counted in /metrics");

    // Other endpoints have their own limits: reprices and price reads still work.
    assert_eq!(svc.reprice("other", "1.5"), 202);
    assert_eq!(svc.get_price("other").status(), 200);

    // Closing one slow reader frees exactly one slot: a new slow reader takes it, and the
    // limit is reached again.
    drop(stalled.pop());
    await_admitted(&svc);
    let (stream, status) = stalled_reader(addr, ROWS);
    assert_eq!(status, "HTTP/1.1 200 OK", "the freed slot is available");
    stalled.push(stream);
    assert_refused(&svc);

    // Closing them all frees every slot.
    drop(stalled);
    await_admitted(&svc);
    let r = svc.query(&format!("pagesize={ROWS}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-total-count"], (ROWS + 1).to_string().as_str());
    let rows: Vec<serde_json::Value> = r.json().unwrap();
    assert_eq!(rows.len(), ROWS);
    // All LIMIT slots are free again: LIMIT concurrent slow readers are admitted.
    let again: Vec<_> = (0..LIMIT).map(|_| stalled_reader(addr, ROWS)).collect();
    assert!(again.iter().all(|(_, s)| s == "HTTP/1.1 200 OK"), "{:?}", again.iter().map(|a| &a.1).collect::<Vec<_>>());
    assert_refused(&svc);
    drop(again);
    await_admitted(&svc);
    assert!(svc.terminate().success());
}
