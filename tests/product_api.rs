//! R3 `GET /api/product/{productId}/price`: ids percent-decoded from one path segment,
//! 404 with a JSON error for an unknown product, read-your-writes, and a timestamp with exactly
//! nine decimals that equals the product's last query row and works as an exact query bound.

mod common;

use common::{expect_json_error, temp_dir, Service};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Answer {
    product_id: String,
    price: Box<RawValue>,
    timestamp: Box<RawValue>,
}

/// `GET` the price; returns (productId, raw price, raw timestamp).
fn get(svc: &Service, id: &str) -> (String, String, String) {
    let resp = svc.get_price(id);
    assert_eq!(resp.status(), 200, "GET {id:?}");
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let text = resp.text().unwrap();
    let a: Answer = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    (a.product_id, a.price.get().to_string(), a.timestamp.get().to_string())
}

/// Every query row of `filter` (raw price and timestamp texts), following pages of 1000.
fn rows(svc: &Service, filter: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for page in 1.. {
        let resp = svc.query(&format!("{filter}&pagesize=1000&pageNumber={page}"));
        assert_eq!(resp.status(), 200, "{filter}");
        let text = resp.text().unwrap();
        let got: Vec<Answer> = serde_json::from_str(&text).unwrap();
        if got.is_empty() {
            break;
        }
        out.extend(got.into_iter().map(|a| (a.product_id, a.price.get().to_string(), a.timestamp.get().to_string())));
    }
    out
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

const AWKWARD_IDS: &[&str] = &[
    "a/b",
    "a%2Fb",
    "/leading",
    "trailing/",
    "a//b",
    "a+b",
    "a b",
    "100%",
    "%",
    "%zz",
    "what?",
    "what?x=1&y=2",
    "#1",
    "a#b?c",
    "ü 日本",
    "emoji 🦀",
    "semi;colon",
    "comma,eq=",
    "quote\"back\\slash",
    "tab\there",
    "price",
    "api/product/x/price",
    "~tilde.dot-dash_under",
];

#[test]
fn awkward_ids_round_trip_as_one_percent_encoded_segment() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    for (i, id) in AWKWARD_IDS.iter().enumerate() {
        assert_eq!(svc.reprice(id, &format!("{}.25", i + 1)), 202, "{id:?}");
    }
    for (i, id) in AWKWARD_IDS.iter().enumerate() {
        let (got_id, price, _) = get(&svc, id);
        assert_eq!(got_id, *id);
        assert_eq!(price, format!("{}.25", i + 1), "{id:?} must not collide with another id");
        // The same id through the query's productId parameter.
        let r = rows(&svc, &format!("productId={}", enc(id)));
        assert_eq!(r.len(), 1, "{id:?}");
        assert_eq!((r[0].0.as_str(), r[0].1.as_str()), (*id, price.as_str()));
    }
    // Lower-case percent escapes decode the same way.
    let resp = svc.http.get(format!("{}/api/product/a%2fb/price", svc.api)).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().unwrap()["productId"], "a/b");
    // Characters that need no escaping in a path segment may be sent raw.
    let resp = svc.http.get(format!("{}/api/product/a+b/price", svc.api)).send().unwrap();
    assert_eq!(resp.json::<serde_json::Value>().unwrap()["productId"], "a+b", "+ in a path is a plus, not a space");
    let resp = svc.http.get(format!("{}/api/product/comma,eq=/price", svc.api)).send().unwrap();
    assert_eq!(resp.json::<serde_json::Value>().unwrap()["productId"], "comma,eq=");
    assert!(svc.terminate().success());
    let records = common::read_records(dir.path());
    let ids: Vec<&str> = records.iter().map(|r| r.product_id.as_str()).collect();
    assert_eq!(ids, AWKWARD_IDS);
}

#[test]
fn unknown_products_are_404_with_a_json_error() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    assert_eq!(svc.reprice("known", "1.25"), 202);
    for id in ["unknown", "Known", "known ", "a/b", "ü"] {
        let msg = expect_json_error(svc.get_price(id), 404);
        assert!(!msg.is_empty());
    }
    // Ids outside 1..=256 bytes cannot exist: rejected (400) or unknown (404), always JSON.
    let too_long = "x".repeat(257);
    let resp = svc.get_price(&too_long);
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 404, "{status}");
    expect_json_error(resp, status);
    // A segment that is not UTF-8 once decoded cannot name a product.
    let resp = svc.http.get(format!("{}/api/product/%FF%FE/price", svc.api)).send().unwrap();
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 404, "{status}");
    expect_json_error(resp, status);
    // A % that starts no escape is a 400 (never read as a literal %): the id "%ZZ" is %25ZZ.
    assert_eq!(svc.reprice("%ZZ", "2.5"), 202);
    let error = expect_json_error(svc.http.get(format!("{}/api/product/%ZZ/price", svc.api)).send().unwrap(), 400);
    assert!(error.contains("%25"), "{error}");
    assert_eq!(get(&svc, "%ZZ").1, "2.5");
    assert_eq!(get(&svc, "known").1, "1.25");
    assert!(svc.terminate().success());
}

#[test]
fn a_price_is_readable_the_moment_its_202_is_sent() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    // Sequentially, many times over, on one product and then on fresh ones.
    for i in 0..120 {
        let price = format!("{}.{:03}", 1 + i / 7, i);
        assert_eq!(svc.reprice("ryw", &price), 202);
        assert_eq!(get(&svc, "ryw").1, price, "read right after the 202 of reprice {i}");
        let fresh = format!("fresh-{i}");
        assert_eq!(svc.reprice(&fresh, &price), 202);
        assert_eq!(get(&svc, &fresh).1, price);
    }
    // From several threads at once, each on its own products: every reader sees its own write.
    std::thread::scope(|s| {
        for t in 0..6 {
            let svc = &svc;
            s.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for i in 0..40 {
                    let id = format!("ryw-{t}-{}", i % 3);
                    let price = format!("{}{i}.5", t + 1);
                    let body = format!("{{\"productId\":\"{id}\",\"price\":{price}}}");
                    let resp = client
                        .post(format!("{}/api/reprice", svc.api))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .unwrap();
                    assert_eq!(resp.status(), 202);
                    let got: serde_json::Value =
                        client.get(format!("{}/api/product/{}/price", svc.api, enc(&id))).send().unwrap().json().unwrap();
                    assert_eq!(got["price"].to_string(), price, "{id}");
                }
            });
        }
    });
    // The query sees it at once too.
    for i in 0..30 {
        let price = format!("77.{i:02}");
        assert_eq!(svc.reprice("ryw-query", &price), 202);
        let r = svc.query("productId=ryw-query&pagesize=1&pageNumber=1000000");
        assert_eq!(r.headers()["x-total-count"], (i + 1).to_string().as_str());
        let last = rows(&svc, "productId=ryw-query").pop().unwrap();
        assert_eq!(last.1, price);
    }
    assert!(svc.terminate().success());
}

#[test]
fn timestamp_has_nine_decimals_matches_the_last_query_row_and_bounds_exactly() {
    let dir = temp_dir();
    // A short window, so that history spans sealed files and the open window.
    let svc = Service::start_with(dir.path(), &["--window", "20ms"], &[]);
    let products = ["t-a", "t/b", "t ü"];
    let mut history: Vec<(String, String)> = Vec::new();
    for i in 0..60 {
        let id = products[i % 3];
        let price = format!("{}.{}0", i + 1, i % 10);
        assert_eq!(svc.reprice(id, &price), 202);
        history.push((id.to_string(), price));
        let (_, got_price, ts) = get(&svc, id);
        assert_eq!(got_price, history.last().unwrap().1);
        let (secs, nanos) = ts.split_once('.').unwrap_or_else(|| panic!("timestamp {ts} has no decimals"));
        assert!(!secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()), "{ts}");
        assert_eq!(nanos.len(), 9, "timestamp {ts} must have exactly 9 decimals");
        assert!(nanos.bytes().all(|b| b.is_ascii_digit()), "{ts}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let secs: u64 = secs.parse().unwrap();
        assert!(secs + 3600 > now && secs < now + 3600, "timestamp {ts} is epoch seconds near now ({now})");
    }
    for id in products {
        let (_, price, ts) = get(&svc, id);
        let all = rows(&svc, &format!("productId={}", enc(id)));
        let last = all.last().unwrap();
        assert_eq!((&last.1, &last.2), (&price, &ts), "GET of {id:?} vs its last query row");
        // The returned timestamp used as a bound selects exactly.
        let from = rows(&svc, &format!("productId={}&from={ts}", enc(id)));
        assert_eq!(from, vec![last.clone()], "from={ts} (inclusive) selects the last event only");
        let to = rows(&svc, &format!("productId={}&to={ts}", enc(id)));
        assert_eq!(to, all[..all.len() - 1].to_vec(), "to={ts} (exclusive) selects everything before it");
        let unfiltered_from = rows(&svc, &format!("from={ts}"));
        assert_eq!(unfiltered_from.first(), Some(last), "from={ts} without productId starts at that event");
    }
    assert!(svc.terminate().success());
}
