//! R1 `POST /api/reprice`: every rejection is a 400/413/415 with a JSON error and writes
//! nothing; the edge values just inside the limits are accepted; 100 parallel reprices of 50
//! products all succeed with exact `previousPrice` chains.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{assert_chains, expect_json_error, read_records, temp_dir, Service};

/// A reprice body with `price` written verbatim.
fn body(id: &str, price: &str) -> String {
    format!("{{\"productId\":{},\"price\":{price}}}", serde_json::to_string(id).unwrap())
}

/// The raw `price` text of a GET answer.
fn price_text(svc: &Service, id: &str) -> String {
    let resp = svc.get_price(id);
    assert_eq!(resp.status(), 200, "GET price of {id:?}");
    let text = resp.text().unwrap();
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        price: &'a serde_json::value::RawValue,
    }
    let a: Answer<'_> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    a.price.get().to_string()
}

/// Pads a JSON object text with spaces after its first `{` to exactly `len` bytes.
fn padded(json: &str, len: usize) -> String {
    assert!(json.len() <= len);
    format!("{{{}{}", " ".repeat(len - json.len()), &json[1..])
}

#[test]
fn every_rejection_is_a_json_error_and_writes_nothing() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    // One accepted event, so that rejected reprices of a known product can be checked too.
    assert_eq!(svc.reprice("known", "5.00"), 202);

    let long_id = "x".repeat(257);
    let long_utf8_id = format!("{}x", "ü".repeat(128)); // 257 bytes, 129 characters
    let price65 = format!("1.{}", "0".repeat(63));
    let digits65 = format!("1{}", "0".repeat(64));
    assert_eq!((price65.len(), digits65.len(), long_utf8_id.len()), (65, 65, 257));
    let json = "application/json";
    let cases: Vec<(&str, String, &str, u16)> = vec![
        // Malformed JSON.
        ("truncated object", r#"{"productId":"known","price":6"#.into(), json, 400),
        ("not JSON", "productId=known&price=6".into(), json, 400),
        ("empty body", String::new(), json, 400),
        ("only whitespace", "   ".into(), json, 400),
        ("trailing garbage", r#"{"productId":"known","price":6} x"#.into(), json, 400),
        ("two objects", r#"{"productId":"known","price":6}{"productId":"known","price":7}"#.into(), json, 400),
        ("single quotes", "{'productId':'known','price':6}".into(), json, 400),
        ("leading zero", r#"{"productId":"known","price":06}"#.into(), json, 400),
        ("trailing dot", r#"{"productId":"known","price":6.}"#.into(), json, 400),
        ("NaN", r#"{"productId":"known","price":NaN}"#.into(), json, 400),
        ("Infinity", r#"{"productId":"known","price":Infinity}"#.into(), json, 400),
        ("hex", r#"{"productId":"known","price":0x10}"#.into(), json, 400),
        // JSON that is not an object.
        ("array of a reprice", r#"[{"productId":"known","price":6}]"#.into(), json, 400),
        ("array of values", r#"["known", 6]"#.into(), json, 400),
        ("array after whitespace", " \n [\"known\", 6]".into(), json, 400),
        ("string", r#""known""#.into(), json, 400),
        ("number", "6".into(), json, 400),
        ("null", "null".into(), json, 400),
        // Wrong types.
        ("numeric id", r#"{"productId":7,"price":6}"#.into(), json, 400),
        ("null id", r#"{"productId":null,"price":6}"#.into(), json, 400),
        ("array id", r#"{"productId":["known"],"price":6}"#.into(), json, 400),
        ("object id", r#"{"productId":{"id":"known"},"price":6}"#.into(), json, 400),
        ("string price", r#"{"productId":"known","price":"6"}"#.into(), json, 400),
        ("string price with decimals", r#"{"productId":"known","price":"19.99"}"#.into(), json, 400),
        ("boolean price", r#"{"productId":"known","price":true}"#.into(), json, 400),
        ("null price", r#"{"productId":"known","price":null}"#.into(), json, 400),
        ("array price", r#"{"productId":"known","price":[6]}"#.into(), json, 400),
        ("object price", r#"{"productId":"known","price":{"amount":6}}"#.into(), json, 400),
        // Missing fields.
        ("no price", r#"{"productId":"known"}"#.into(), json, 400),
        ("no id", r#"{"price":6}"#.into(), json, 400),
        ("empty object", "{}".into(), json, 400),
        // Unknown fields.
        ("unknown field", r#"{"productId":"known","price":6,"currency":"EUR"}"#.into(), json, 400),
        ("wrong case field", r#"{"productid":"known","price":6}"#.into(), json, 400),
        ("snake case field", r#"{"product_id":"known","price":6}"#.into(), json, 400),
        // Id length.
        ("empty id", body("", "6"), json, 400),
        ("257-byte id", body(&long_id, "6"), json, 400),
        ("257-byte UTF-8 id", body(&long_utf8_id, "6"), json, 400),
        // Price value.
        ("zero price", body("known", "0"), json, 400),
        ("zero decimal price", body("known", "0.00"), json, 400),
        ("zero exponent price", body("known", "0e5"), json, 400),
        ("negative zero price", body("known", "-0"), json, 400),
        ("negative price", body("known", "-1"), json, 400),
        ("negative decimal price", body("known", "-19.99"), json, 400),
        ("65-character price", body("known", &price65), json, 400),
        ("65-digit price", body("known", &digits65), json, 400),
        ("infinite price", body("known", "1e999"), json, 400),
        // Body size.
        ("64 KiB + 1 body", padded(&body("known", "6"), 64 * 1024 + 1), json, 413),
        // Content type.
        ("text/plain", body("known", "6"), "text/plain", 415),
        ("text/plain charset", body("known", "6"), "text/plain; charset=utf-8", 415),
        ("form", body("known", "6"), "application/x-www-form-urlencoded", 415),
        ("xml", body("known", "6"), "application/xml", 415),
        ("json in latin1", body("known", "6"), "application/json; charset=latin1", 415),
        ("json in utf-16", body("known", "6"), "application/json; charset=\"UTF-16\"", 415),
    ];
    let mut wrong = Vec::new();
    for (what, body, content_type, status) in &cases {
        let resp = svc.post_raw(body, content_type);
        let got = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let text = resp.text().unwrap();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .filter(|v| v.as_object().is_some_and(|o| o.len() == 1))
            .and_then(|v| v["error"].as_str().map(str::to_string));
        if got != *status || !ctype.starts_with("application/json") || msg.as_ref().is_none_or(|m| m.trim().len() < 10) {
            wrong.push(format!("{what}: expected {status} with {{\"error\": ...}}, got {got} {ctype:?} {text:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} rejections are wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    // Without a Content-Length (chunked), the limit holds as well.
    let chunked = padded(&body("known", "6"), 64 * 1024 + 1);
    let resp = svc
        .http
        .post(format!("{}/api/reprice", svc.api))
        .header("content-type", json)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(chunked.into_bytes())))
        .send()
        .unwrap();
    expect_json_error(resp, 413);

    // Errors name what is wrong.
    let msg = expect_json_error(svc.post_raw(&body("known", "-1"), json), 400);
    assert!(msg.to_lowercase().contains("price"), "{msg}");
    let msg = expect_json_error(svc.post_raw(&body(&long_id, "6"), json), 400);
    assert!(msg.contains("productId"), "{msg}");
    let msg = expect_json_error(svc.post_raw(r#"{"productId":"known","price":6,"currency":"EUR"}"#, json), 400);
    assert!(msg.contains("currency"), "{msg}");

    // Nothing of it is visible: the known price is unchanged, the rejected ids are unknown.
    assert_eq!(price_text(&svc, "known"), "5.00");
    let q = svc.query("pagesize=1000");
    assert_eq!(q.headers()["x-total-count"], "1");

    // Nothing of it is written.
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0].product_id.as_str(), records[0].new_price.as_str()), ("known", "5.00"));
    assert_eq!(records[0].previous_price, None);
}

#[test]
fn values_just_inside_the_limits_are_accepted() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    let id256 = "i".repeat(256);
    let utf8_id256 = "ü".repeat(128); // 256 bytes, 128 characters
    let cjk_id256 = format!("{}abcd", "日".repeat(84)); // 252 + 4 bytes
    assert_eq!((id256.len(), utf8_id256.len(), cjk_id256.len()), (256, 256, 256));
    let price64 = format!("1.{}", "0".repeat(62));
    let digits64 = format!("9{}", "8".repeat(63));
    assert_eq!((price64.len(), digits64.len()), (64, 64));
    let big = body("big-body", "3.25");
    let big64k = padded(&big, 64 * 1024);
    assert_eq!(big64k.len(), 65536);

    let accepted: Vec<(&str, String, &str, &str)> = vec![
        // (id, body, content type, exact price)
        (&id256, body(&id256, "1.5"), "application/json", "1.5"),
        (&utf8_id256, body(&utf8_id256, "2.5"), "application/json", "2.5"),
        (&cjk_id256, body(&cjk_id256, "2.75"), "application/json", "2.75"),
        ("price-64", body("price-64", &price64), "application/json", &price64),
        ("digits-64", body("digits-64", &digits64), "application/json", &digits64),
        ("big-body", big64k, "application/json", "3.25"),
        ("charset", body("charset", "4.5"), "application/json; charset=utf-8", "4.5"),
        ("upper-case type", body("upper-case type", "4.75"), "Application/JSON", "4.75"),
        ("fields reversed", r#"{"price":5.5,"productId":"fields reversed"}"#.into(), "application/json", "5.5"),
        ("whitespace", " \n {\n \"productId\" : \"whitespace\" ,\n \"price\" : 6.5 \n} \n".into(), "application/json", "6.5"),
        ("escaped \"id\"/\\", r#"{"productId":"escaped \"id\"\/\\","price":7.5}"#.into(), "application/json", "7.5"),
        ("unicode-escape ü", r#"{"productId":"unicode-escape \u00fc","price":8.5}"#.into(), "application/json", "8.5"),
        ("tiny", body("tiny", "1e-300"), "application/json", "1e-300"),
    ];
    // A chunked body of exactly 64 KiB is accepted too.
    let chunked = padded(&body("chunked", "3.5"), 64 * 1024);
    let resp = svc
        .http
        .post(format!("{}/api/reprice", svc.api))
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(chunked.into_bytes())))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202, "chunked 64 KiB body");
    for (id, body, content_type, _) in &accepted {
        let resp = svc.post_raw(body, content_type);
        assert_eq!(resp.status(), 202, "{id:?} ({} bytes, {content_type})", body.len());
        assert_eq!(resp.text().unwrap(), "", "202 has an empty body");
    }
    for (id, _, _, price) in &accepted {
        assert_eq!(price_text(&svc, id), *price, "{id:?}");
    }
    assert_eq!(price_text(&svc, "chunked"), "3.5");
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    let got: Vec<(&str, &str)> = records.iter().map(|r| (r.product_id.as_str(), r.new_price.as_str())).collect();
    let want: Vec<(&str, &str)> =
        std::iter::once(("chunked", "3.5")).chain(accepted.iter().map(|(id, _, _, p)| (*id, *p))).collect();
    assert_eq!(got, want);
    assert!(records.iter().all(|r| r.previous_price.is_none()));
}

#[test]
fn hundred_parallel_reprices_of_fifty_products_all_succeed_with_exact_chains() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    let api = svc.api.clone();
    let start = Arc::new(Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let api = api.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                let (id, price) = (format!("par-{}", i % 50), format!("{}.{:02}", 10 + i, i));
                start.wait();
                let resp = client
                    .post(format!("{api}/api/reprice"))
                    .header("content-type", "application/json")
                    .body(body(&id, &price))
                    .send()
                    .expect("POST");
                (id, price, resp.status().as_u16())
            })
        })
        .collect();
    let results: Vec<(String, String, u16)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let failed: Vec<_> = results.iter().filter(|r| r.2 != 202).collect();
    assert!(failed.is_empty(), "not all 100 parallel reprices got 202: {failed:?}");

    // Every product reads back as the last price in sequence order (checked against the files).
    let read: HashMap<String, String> = (0..50).map(|p| format!("par-{p}")).map(|id| (id.clone(), price_text(&svc, &id))).collect();
    let q = svc.query("pagesize=1000");
    assert_eq!(q.headers()["x-total-count"], "100");

    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_chains(&records);
    let mut sent: Vec<(String, String)> = results.into_iter().map(|(id, p, _)| (id, p)).collect();
    let mut stored: Vec<(String, String)> = records.iter().map(|r| (r.product_id.clone(), r.new_price.clone())).collect();
    sent.sort();
    stored.sort();
    assert_eq!(stored, sent, "every accepted event exactly once");
    let mut last: HashMap<&str, &str> = HashMap::new();
    for r in &records {
        last.insert(&r.product_id, &r.new_price);
    }
    for (id, price) in &read {
        assert_eq!(last[id.as_str()], price, "GET of {id} vs the last record");
    }
    let (ok, report) = common::verify(dir.path());
    assert!(ok, "{report}");
}
