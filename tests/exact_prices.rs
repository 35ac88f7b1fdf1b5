//! R2: a price is kept as the exact decimal literal the crawler sent, through
//! `GET /api/product/{id}/price`, `/api/query` rows, the `results/` files (as `newPrice` and
//! `previousPrice`) and a restart. Every comparison is on raw JSON text, never via f64.

mod common;

use common::{assert_chains, read_records, temp_dir, Service};
use serde::Deserialize;
use serde_json::value::RawValue;

const PRICES: &[&str] = &[
    "19.990",
    "1e2",
    "0.30000000000000004",
    "123456789012345678901234567890",
    "1E-7",
    "12345678901234567890.123456789",
    "100.00",
    "1.5E+3",
    "2.50e-1",
    "0.1",
    "9007199254740993",
    "4.9406564584124654e-324",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Row<'a> {
    product_id: String,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    timestamp: &'a RawValue,
}

/// The raw `price` text of `GET /api/product/{id}/price`, after checking the body holds it verbatim.
fn get_price_text(svc: &Service, id: &str) -> String {
    let resp = svc.get_price(id);
    assert_eq!(resp.status(), 200, "GET {id}");
    let text = resp.text().unwrap();
    let row: Row<'_> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(row.product_id, id);
    assert!(text.contains(&format!("\"price\":{}", row.price.get())), "{text}");
    let (secs, nanos) = row.timestamp.get().split_once('.').expect("timestamp with decimals");
    assert!(secs.bytes().all(|b| b.is_ascii_digit()) && nanos.len() == 9 && nanos.bytes().all(|b| b.is_ascii_digit()), "{text}");
    row.price.get().to_string()
}

/// Raw `price` texts of every query row for `filter` (all pages of 1000).
fn query_price_texts(svc: &Service, filter: &str) -> Vec<(String, String)> {
    let resp = svc.query(&format!("{filter}&pagesize=1000"));
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    let rows: Vec<Row<'_>> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    rows.iter().map(|r| (r.product_id.clone(), r.price.get().to_string())).collect()
}

fn id(i: usize) -> String {
    format!("exact-{i}")
}

#[test]
fn price_literals_round_trip_exactly_everywhere() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    // One product per literal, and one product ("chain") that steps through all of them so that
    // every literal is also stored as a previousPrice.
    for (i, p) in PRICES.iter().enumerate() {
        assert_eq!(svc.reprice(&id(i), p), 202, "{p}");
        assert_eq!(svc.reprice("chain", p), 202, "{p}");
        assert_eq!(get_price_text(&svc, &id(i)), *p, "GET right after the 202");
        assert_eq!(get_price_text(&svc, "chain"), *p, "GET right after the 202");
    }
    let chain: Vec<String> = PRICES.iter().map(|p| p.to_string()).collect();
    let check_reads = |svc: &Service| {
        for (i, p) in PRICES.iter().enumerate() {
            assert_eq!(get_price_text(svc, &id(i)), *p);
        }
        assert_eq!(get_price_text(svc, "chain"), *PRICES.last().unwrap());
        let rows = query_price_texts(svc, "productId=chain");
        assert_eq!(rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(), chain, "query rows of the chain product");
        for (i, p) in PRICES.iter().enumerate() {
            assert_eq!(query_price_texts(svc, &format!("productId={}", id(i))), vec![(id(i), p.to_string())]);
        }
        let all = query_price_texts(svc, "pageNumber=1");
        let expected: Vec<(String, String)> =
            PRICES.iter().enumerate().flat_map(|(i, p)| [(id(i), p.to_string()), ("chain".to_string(), p.to_string())]).collect();
        assert_eq!(all, expected, "unfiltered query rows");
    };
    // While the window is open (events in memory and WAL).
    check_reads(&svc);

    // On disk: newPrice and previousPrice literals.
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_chains(&records);
    let chain_records: Vec<_> = records.iter().filter(|r| r.product_id == "chain").collect();
    assert_eq!(chain_records.iter().map(|r| r.new_price.clone()).collect::<Vec<_>>(), chain);
    let previous: Vec<Option<String>> = chain_records.iter().map(|r| r.previous_price.clone()).collect();
    let expected_previous: Vec<Option<String>> =
        std::iter::once(None).chain(PRICES[..PRICES.len() - 1].iter().map(|p| Some(p.to_string()))).collect();
    assert_eq!(previous, expected_previous);
    for (i, p) in PRICES.iter().enumerate() {
        let r: Vec<_> = records.iter().filter(|r| r.product_id == id(i)).collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].new_price, *p);
        assert_eq!(r[0].previous_price, None);
    }
    // The raw file text holds the literals verbatim too.
    let mut raw = String::new();
    for e in std::fs::read_dir(dir.path().join("results")).unwrap() {
        raw.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    for p in PRICES {
        assert!(raw.contains(&format!("\"newPrice\":{p},")) || raw.contains(&format!("\"newPrice\": {p},")), "{p} in files");
        assert!(raw.contains(&format!("\"previousPrice\":{p},")) || raw.contains(&format!("\"previousPrice\": {p},")) || p == PRICES.last().unwrap());
    }

    // After a restart (recovered from the files), reads are still exact, and the next event's
    // previousPrice is the exact literal.
    let svc = Service::start(dir.path());
    check_reads(&svc);
    assert_eq!(svc.reprice("chain", "0.010"), 202);
    assert_eq!(get_price_text(&svc, "chain"), "0.010");
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_chains(&records);
    let last = records.last().unwrap();
    assert_eq!((last.product_id.as_str(), last.new_price.as_str()), ("chain", "0.010"));
    assert_eq!(last.previous_price.as_deref(), PRICES.last().copied());
    let (ok, report) = common::verify(dir.path());
    assert!(ok, "{report}");
}

#[test]
fn exact_prices_survive_kill_9_recovery_from_the_open_window() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    for p in PRICES {
        assert_eq!(svc.reprice("wal", p), 202);
    }
    svc.kill9();
    let svc = Service::start(dir.path());
    assert_eq!(get_price_text(&svc, "wal"), *PRICES.last().unwrap());
    let rows = query_price_texts(&svc, "productId=wal");
    assert_eq!(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), PRICES);
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_chains(&records);
    assert_eq!(records.iter().map(|r| r.new_price.as_str()).collect::<Vec<_>>(), PRICES);
}
