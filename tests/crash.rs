//! The crash test (R6, R8, R9, R10): concurrent reprices, `kill -9` at a random moment, restart
//! on the same data directory, twenty times over; nothing acknowledged is lost or duplicated,
//! `previousPrice` chains stay exact across restarts, and the sequence continues gap-free.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{assert_acked_exactly_once, assert_chains, assert_records_from, read_records, temp_dir, verify, Load, LoadOutcome, Record, Service};
use rand::Rng;

const ROUNDS: usize = 20;
const THREADS: usize = 8;
const PRODUCTS: usize = 20;

/// Checks a freshly restarted service against everything done so far: every acknowledged
/// reprice is in `results/` exactly once (the crashed window was completed from the WAL), the
/// chains are exact, `verify` passes, and each product reads back its last stored price.
fn check_after_restart(svc: &Service, all: &LoadOutcome, round: usize) -> Vec<Record> {
    if let Some(line) = svc.log_text().lines().find(|l| l.contains("recovery finished")) {
        eprintln!("before round {round}: {}", &line[line.find("recovery finished").unwrap()..]);
    }
    let records = read_records(&svc.data_dir);
    assert_acked_exactly_once(&records, &all.acked, &all.sent);
    assert_records_from(&records, &all.sent);
    assert_chains(&records);
    let (ok, report) = verify(&svc.data_dir);
    assert!(ok, "verify before round {round}: {report}");
    assert_eq!(report["events"].as_u64(), Some(records.len() as u64), "verify report {report}");
    let mut last: HashMap<&str, &str> = HashMap::new();
    for r in &records {
        last.insert(&r.product_id, &r.new_price);
    }
    for (product, price) in &last {
        assert_eq!(svc.price_of(product).as_deref(), Some(*price), "restored last price of {product} before round {round}");
    }
    let total = svc.query("pagesize=1").headers().get("x-total-count").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(total, Some(records.len().to_string()), "X-Total-Count before round {round}");
    records
}

#[test]
fn kill9_at_random_moments_loses_nothing_acknowledged() {
    let dir = temp_dir();
    let started = Instant::now();
    let mut rng = rand::rng();
    let mut all = LoadOutcome::default();
    // Checkpoints every second, so that some restarts load a checkpoint and replay only the tail;
    // odd rounds use 100 ms windows, so that the kill also lands during window seals (segment
    // written, WAL not yet removed) and the window length changes across restarts.
    let args = |round: usize| ["--checkpoint-interval", "1s", "--window", if round % 2 == 1 { "100ms" } else { "1s" }];
    for round in 0..ROUNDS {
        let svc = Service::start_with(dir.path(), &args(round), &[]);
        check_after_restart(&svc, &all, round);
        if round % 4 == 3 {
            // Let the checkpointer fold what recovery just sealed before the next crash.
            std::thread::sleep(Duration::from_millis(1200));
        }
        let load = Load::start(&svc.api, THREADS, PRODUCTS, "crash-");
        let delay = Duration::from_millis(rng.random_range(50..=700));
        std::thread::sleep(delay);
        svc.kill9();
        let outcome = load.finish();
        eprintln!("round {round}: killed after {delay:?}; {:?}", outcome.statuses);
        all.extend(outcome);
    }
    let svc = Service::start_with(dir.path(), &args(ROUNDS), &[]);
    check_after_restart(&svc, &all, ROUNDS);
    assert!(svc.terminate().success());
    let wal: Vec<_> = std::fs::read_dir(dir.path().join("wal")).unwrap().collect();
    assert!(wal.is_empty(), "WAL left after a clean stop");
    let records = read_records(dir.path());
    assert_acked_exactly_once(&records, &all.acked, &all.sent);
    assert_chains(&records);
    let (ok, report) = verify(dir.path());
    assert!(ok, "final verify: {report}");
    assert!(all.acked.len() >= ROUNDS, "too little was acknowledged to mean anything: {:?}", all.statuses);
    eprintln!(
        "{} reprices acknowledged, {} records, {} files, in {:?}",
        all.acked.len(),
        records.len(),
        report["files"],
        started.elapsed()
    );
}
