//! Restarts (R6–R9): after SIGTERM or kill -9 on the same data directory, every acknowledged
//! event and every last price is still there, the query returns the old history unchanged, new
//! reprices continue each product's `previousPrice` chain, and `repricer verify` passes.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{assert_chains, read_records, temp_dir, Record, Service};

/// Every query row (productId, raw price, raw timestamp), pages of 1000.
fn history(svc: &Service) -> Vec<(String, String, String)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        product_id: String,
        price: Box<serde_json::value::RawValue>,
        timestamp: Box<serde_json::value::RawValue>,
    }
    let mut out = Vec::new();
    for n in 1.. {
        let resp = svc.query(&format!("pagesize=1000&pageNumber={n}"));
        assert_eq!(resp.status(), 200);
        let rows: Vec<Row> = resp.json().unwrap();
        if rows.is_empty() {
            break;
        }
        out.extend(rows.into_iter().map(|r| (r.product_id, r.price.get().to_string(), r.timestamp.get().to_string())));
    }
    out
}

/// The raw price text of a product.
fn price_of(svc: &Service, id: &str) -> String {
    let resp = svc.get_price(id);
    assert_eq!(resp.status(), 200, "GET {id} after restart");
    let v: HashMap<String, Box<serde_json::value::RawValue>> = serde_json::from_str(&resp.text().unwrap()).unwrap();
    v["price"].get().to_string()
}

fn nanos(ts: &str) -> i64 {
    let (s, n) = ts.split_once('.').unwrap();
    s.parse::<i64>().unwrap() * 1_000_000_000 + n.parse::<i64>().unwrap()
}

/// Asserts that the records hold each (productId, price) of `acked` exactly once (plus
/// possibly others when `exact` is false) and that verify passes.
fn assert_all_present(records: &[Record], acked: &[(String, String)], exact: bool) {
    let mut stored: HashMap<(&str, &str), usize> = HashMap::new();
    for r in records {
        *stored.entry((&r.product_id, &r.new_price)).or_default() += 1;
    }
    for (id, price) in acked {
        let n = stored.get(&(id.as_str(), price.as_str())).copied().unwrap_or(0);
        assert_eq!(n, 1, "acknowledged event ({id}, {price}) is stored {n} times");
    }
    assert!(stored.values().all(|&n| n == 1), "an event is stored twice");
    if exact {
        assert_eq!(records.len(), acked.len(), "events that were never acknowledged are stored");
    }
}

const PRODUCTS: usize = 6;

#[test]
fn sigterm_restart_keeps_everything_and_chains_continue() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    let mut acked = Vec::new();
    for round in 0..8 {
        for p in 0..PRODUCTS {
            let (id, price) = (format!("r-{p}"), format!("{}.{round}{p}", 10 + round));
            assert_eq!(svc.reprice(&id, &price), 202);
            acked.push((id, price));
        }
    }
    let before = history(&svc);
    assert_eq!(before.len(), acked.len());
    let last: HashMap<String, String> = (0..PRODUCTS).map(|p| format!("r-{p}")).map(|id| (id.clone(), price_of(&svc, &id))).collect();
    let status = svc.terminate();
    assert!(status.success(), "SIGTERM exit status {status}");
    let (ok, report) = common::verify(dir.path());
    assert!(ok, "after SIGTERM: {report}");

    // Restart on the same directory, several times (also within the same second).
    let mut expected_history = before.clone();
    for restart in 0..3 {
        let svc = Service::start(dir.path());
        assert_eq!(history(&svc), expected_history, "restart {restart}: the query returns the old events unchanged");
        if restart == 0 {
            for (id, price) in &last {
                assert_eq!(&price_of(&svc, id), price, "restart {restart}: last price of {id}");
            }
        }
        for p in 0..PRODUCTS {
            let (id, price) = (format!("r-{p}"), format!("{}.{restart}{p}", 90 + restart));
            assert_eq!(svc.reprice(&id, &price), 202);
            assert_eq!(price_of(&svc, &id), price);
            acked.push((id, price));
        }
        assert_eq!(svc.reprice(&format!("new-after-{restart}"), "1.5"), 202);
        acked.push((format!("new-after-{restart}"), "1.5".into()));
        let now = history(&svc);
        assert_eq!(now[..expected_history.len()], expected_history[..]);
        assert_eq!(now.len(), expected_history.len() + PRODUCTS + 1);
        let boundary = expected_history.last().map(|r| nanos(&r.2)).unwrap();
        assert!(now[expected_history.len()..].iter().all(|r| nanos(&r.2) > boundary), "timestamps continue to increase");
        expected_history = now;
        let status = svc.terminate();
        assert!(status.success(), "restart {restart}: SIGTERM exit status {status}");
    }

    let records = read_records(dir.path());
    assert_chains(&records);
    assert_all_present(&records, &acked, true);
    // The first new event of each product points back at the price from before the restart.
    for (id, price) in &last {
        let chain: Vec<&Record> = records.iter().filter(|r| &r.product_id == id).collect();
        assert_eq!(chain[8].previous_price.as_ref(), Some(price), "{id}: previousPrice across the restart");
    }
    let (ok, report) = common::verify(dir.path());
    assert!(ok, "{report}");
    assert_eq!(report["events"], acked.len());
}

#[test]
fn kill_9_after_the_202s_loses_no_acknowledged_event() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    // Parallel writers, so that acknowledged events come from several group commits.
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (svc, acked) = (&svc, &acked);
            s.spawn(move || {
                for i in 0..30 {
                    // Each product is written by one thread only, so its last price is known.
                    let (id, price) = (format!("k-{t}-{}", i % 3), format!("{}.{t}", i + 1));
                    assert_eq!(svc.reprice(&id, &price), 202);
                    acked.lock().unwrap().push((id, price));
                }
            });
        }
    });
    let mut acked = acked.into_inner().unwrap();
    let before = history(&svc);
    svc.kill9();

    let svc = Service::start(dir.path());
    assert_eq!(history(&svc), before, "every acknowledged event, same order and timestamps");
    for t in 0..4 {
        for j in 0..3 {
            let id = format!("k-{t}-{j}");
            let last = acked.iter().rev().find(|(i, _)| *i == id).unwrap();
            assert_eq!(price_of(&svc, &id), last.1, "last price of {id} after kill -9");
        }
    }
    // New reprices continue the chains.
    for t in 0..4 {
        let id = format!("k-{t}-0");
        assert_eq!(svc.reprice(&id, "0.5"), 202);
        acked.push((id, "0.5".into()));
    }
    // kill -9 again right after, then once more right after the restart (recovery twice).
    svc.kill9();
    let svc = Service::start(dir.path());
    svc.kill9();
    let svc = Service::start(dir.path());
    let after = history(&svc);
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(after.len(), acked.len());
    assert!(svc.terminate().success());

    let records = read_records(dir.path());
    assert_chains(&records);
    assert_all_present(&records, &acked, true);
    let (ok, report) = common::verify(dir.path());
    assert!(ok, "{report}");
}

#[test]
fn kill_9_during_a_write_storm_keeps_every_acknowledged_event() {
    let dir = temp_dir();
    let mut acked: Vec<(String, String)> = Vec::new();
    for round in 0..3 {
        let svc = Service::start(dir.path());
        let got = Mutex::new(Vec::new());
        let count = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..6 {
                let (api, got, count, stop) = (svc.api.clone(), &got, &count, &stop);
                s.spawn(move || {
                    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let (id, price) = (format!("w-{}", (t + i) % 10), format!("{}.{round}{t}", i + 1));
                        let body = format!("{{\"productId\":\"{id}\",\"price\":{price}}}");
                        let resp = client.post(format!("{api}/api/reprice")).header("content-type", "application/json").body(body).send();
                        match resp {
                            Ok(r) if r.status() == 202 => {
                                got.lock().unwrap().push((id, price));
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            // Killed mid-request: not acknowledged, may or may not be stored.
                            _ => break,
                        }
                        i += 1;
                    }
                });
            }
            // Kill while the writers are still posting, once enough has been acknowledged.
            let deadline = Instant::now() + Duration::from_secs(60);
            while count.load(Ordering::Relaxed) < 150 {
                assert!(Instant::now() < deadline, "writers too slow");
                std::thread::sleep(Duration::from_millis(5));
            }
            svc.signal(nix::sys::signal::Signal::SIGKILL);
            stop.store(true, Ordering::Relaxed);
        });
        acked.extend(got.into_inner().unwrap());
        svc.kill9(); // reaps the process
    }
    let svc = Service::start(dir.path());
    let rows = history(&svc);
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_eq!(records.len(), rows.len());
    assert_chains(&records);
    assert_all_present(&records, &acked, false);
    let (ok, report) = common::verify(dir.path());
    assert!(ok, "{report}");
}
