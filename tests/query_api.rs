//! R4 `GET /api/query`: filters (productId, from inclusive, to exclusive, in epoch and RFC 3339
//! form), paging (default 25, `pagesize`/`pageSize`, max 1000), `X-Total-Count`, `Link`,
//! parameter errors naming the parameter, sequence order, and paging that stays stable while new
//! events arrive.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{assert_chains, expect_json_error, read_records, temp_dir, Service};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One query row, every field as its raw JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    product_id: String,
    price: String,
    ts: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRow<'a> {
    product_id: String,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    timestamp: &'a RawValue,
}

/// One answered page.
#[derive(Debug)]
struct Page {
    total: u64,
    links: HashMap<String, String>,
    rows: Vec<Row>,
}

fn parse_links(header: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (url, params) = part.split_once(';').unwrap_or_else(|| panic!("Link part {part:?}"));
        let url = url.trim().strip_prefix('<').and_then(|u| u.strip_suffix('>')).unwrap_or_else(|| panic!("Link url {url:?}"));
        let rel = params.trim().strip_prefix("rel=").unwrap_or_else(|| panic!("Link params {params:?}")).trim_matches('"');
        assert!(out.insert(rel.to_string(), url.to_string()).is_none(), "rel {rel} twice in {header}");
    }
    out
}

fn read_page(resp: reqwest::blocking::Response, what: &str) -> Page {
    assert_eq!(resp.status(), 200, "{what}");
    let total = resp.headers().get("x-total-count").unwrap_or_else(|| panic!("{what}: no X-Total-Count"));
    let total: u64 = total.to_str().unwrap().parse().unwrap();
    let links = resp.headers().get("link").map(|l| parse_links(l.to_str().unwrap())).unwrap_or_default();
    let text = resp.text().unwrap();
    let raw: Vec<RawRow<'_>> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {text}: {e}"));
    let rows = raw
        .into_iter()
        .map(|r| Row { product_id: r.product_id, price: r.price.get().to_string(), ts: r.timestamp.get().to_string() })
        .collect();
    Page { total, links, rows }
}

fn page(svc: &Service, query: &str) -> Page {
    read_page(svc.query(query), query)
}

/// Every row of a filter (pages of 1000), checking X-Total-Count.
fn all(svc: &Service, filter: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut total = None;
    for n in 1.. {
        let p = page(svc, &format!("{filter}&pagesize=1000&pageNumber={n}"));
        assert!(total.is_none_or(|t| t == p.total));
        total = Some(p.total);
        if p.rows.is_empty() {
            break;
        }
        out.extend(p.rows);
    }
    assert_eq!(out.len() as u64, total.unwrap(), "X-Total-Count of {filter}");
    out
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// `secs.nnnnnnnnn` as nanoseconds.
fn nanos(ts: &str) -> i64 {
    let (s, n) = ts.split_once('.').unwrap_or_else(|| panic!("timestamp {ts}"));
    assert_eq!(n.len(), 9, "{ts}");
    s.parse::<i64>().unwrap() * 1_000_000_000 + n.parse::<i64>().unwrap()
}

fn epoch(n: i64) -> String {
    format!("{}.{:09}", n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000))
}

/// RFC 3339 text of an epoch timestamp, in UTC with `Z` (as in the segment files).
fn rfc3339_z(ts: &str) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos(ts)).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// RFC 3339 text of an epoch timestamp at a UTC offset of `offset` seconds.
fn rfc3339_at(ts: &str, offset: i32) -> String {
    let tz = chrono::FixedOffset::east_opt(offset).unwrap();
    chrono::DateTime::from_timestamp_nanos(nanos(ts)).with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string()
}

fn assert_strictly_increasing(rows: &[Row]) {
    for w in rows.windows(2) {
        assert!(nanos(&w[0].ts) < nanos(&w[1].ts), "timestamps must strictly increase: {:?} then {:?}", w[0], w[1]);
    }
}

const PRODUCTS: [&str; 3] = ["q-a", "q-b", "q c/ü+"];

/// Every event's timestamp as `from` and as `to`, unfiltered and per product, and small pages
/// of a product filter with a time bound: each against the expectation computed from `rows`.
fn sweep_bounds(svc: &Service, rows: &[Row], when: &str) {
    for (k, row) in rows.iter().enumerate() {
        let ts = &row.ts;
        assert_eq!(all(svc, &format!("from={ts}")), rows[k..].to_vec(), "{when}: from=ts[{k}]");
        assert_eq!(all(svc, &format!("to={ts}")), rows[..k].to_vec(), "{when}: to=ts[{k}]");
        for p in PRODUCTS {
            let from: Vec<Row> = rows[k..].iter().filter(|r| r.product_id == p).cloned().collect();
            let to: Vec<Row> = rows[..k].iter().filter(|r| r.product_id == p).cloned().collect();
            assert_eq!(all(svc, &format!("productId={}&from={ts}", enc(p))), from, "{when}: {p} from=ts[{k}]");
            assert_eq!(all(svc, &format!("productId={}&to={ts}", enc(p))), to, "{when}: {p} to=ts[{k}]");
        }
    }
    for k in (0..rows.len()).step_by(7) {
        let p = &rows[k].product_id;
        let want: Vec<Row> = rows[k..].iter().filter(|r| &r.product_id == p).cloned().collect();
        let mut got = Vec::new();
        for n in 1..=want.len().div_ceil(2) + 1 {
            let page = page(svc, &format!("productId={}&from={}&pagesize=2&pageNumber={n}", enc(p), rows[k].ts));
            assert_eq!(page.total, want.len() as u64, "{when}: X-Total-Count of {p} from ts[{k}]");
            got.extend(page.rows);
        }
        assert_eq!(got, want, "{when}: pages of 2 of {p} from ts[{k}]");
    }
}

/// Posts `n` events one after another, round robin over PRODUCTS; returns (productId, price).
fn post_sequential(svc: &Service, n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let (id, price) = (PRODUCTS[i % 3].to_string(), format!("{}.{tag}{i}", i + 1));
            assert_eq!(svc.reprice(&id, &price), 202);
            (id, price)
        })
        .collect()
}

#[test]
fn filters_select_exactly_by_product_and_time_in_both_forms() {
    let dir = temp_dir();
    // Short windows: the history spans many sealed files plus the open window.
    let svc = Service::start_with(dir.path(), &["--window", "20ms"], &[]);
    let sent = post_sequential(&svc, 90, "5");
    let rows = all(&svc, "");
    assert_eq!(rows.iter().map(|r| (r.product_id.clone(), r.price.clone())).collect::<Vec<_>>(), sent, "sequence order");
    assert_strictly_increasing(&rows);
    let ts: Vec<&str> = rows.iter().map(|r| r.ts.as_str()).collect();

    // productId.
    for p in PRODUCTS {
        let want: Vec<Row> = rows.iter().filter(|r| r.product_id == p).cloned().collect();
        assert_eq!(all(&svc, &format!("productId={}", enc(p))), want, "productId={p}");
    }
    assert_eq!(all(&svc, "productId=nobody"), vec![]);
    let empty = page(&svc, "productId=nobody");
    assert_eq!((empty.total, empty.rows.len()), (0, 0));

    // from (inclusive) and to (exclusive), with the API's own timestamps.
    for k in [0, 1, 29, 45, 88, 89] {
        assert_eq!(all(&svc, &format!("from={}", ts[k])), rows[k..].to_vec(), "from=ts[{k}]");
        assert_eq!(all(&svc, &format!("to={}", ts[k])), rows[..k].to_vec(), "to=ts[{k}]");
        assert_eq!(all(&svc, &format!("from={}&to={}", ts[k], ts[k])), vec![], "from=to=ts[{k}]");
        // One nanosecond either side.
        let (before, after) = (epoch(nanos(ts[k]) - 1), epoch(nanos(ts[k]) + 1));
        assert_eq!(all(&svc, &format!("from={after}")), rows[k + 1..].to_vec(), "from=ts[{k}]+1ns");
        assert_eq!(all(&svc, &format!("to={after}")), rows[..=k].to_vec(), "to=ts[{k}]+1ns");
        assert_eq!(all(&svc, &format!("from={before}&to={after}")), vec![rows[k].clone()], "around ts[{k}]");
    }
    for (a, b) in [(0, 90), (10, 20), (3, 87), (44, 45), (89, 89)] {
        let to = if b == 90 { epoch(nanos(ts[89]) + 1) } else { ts[b].to_string() };
        assert_eq!(all(&svc, &format!("from={}&to={to}", ts[a])), rows[a..b].to_vec(), "ts[{a}]..ts[{b}]");
        for p in PRODUCTS {
            let want: Vec<Row> = rows[a..b].iter().filter(|r| r.product_id == p).cloned().collect();
            assert_eq!(all(&svc, &format!("productId={}&from={}&to={to}", enc(p), ts[a])), want, "{p} ts[{a}]..ts[{b}]");
        }
    }
    sweep_bounds(&svc, &rows, "while running");

    // Coarser epoch bounds: whole seconds and milliseconds.
    for k in [0, 30, 60, 89] {
        let n = nanos(ts[k]);
        for (bound, unit) in [(n - n.rem_euclid(1_000_000_000), 1_000_000_000), (n - n.rem_euclid(1_000_000), 1_000_000)] {
            let text = if unit == 1_000_000_000 { (bound / unit).to_string() } else { format!("{}.{:03}", bound / 1_000_000_000, (bound % 1_000_000_000) / 1_000_000) };
            let from: Vec<Row> = rows.iter().filter(|r| nanos(&r.ts) >= bound).cloned().collect();
            let to: Vec<Row> = rows.iter().filter(|r| nanos(&r.ts) < bound).cloned().collect();
            assert_eq!(all(&svc, &format!("from={text}")), from, "from={text}");
            assert_eq!(all(&svc, &format!("to={text}")), to, "to={text}");
        }
    }
    // Bounds outside the history.
    assert_eq!(all(&svc, "from=0"), rows);
    assert_eq!(all(&svc, "to=0"), vec![]);
    assert_eq!(all(&svc, &format!("from={}", epoch(nanos(ts[89]) + 1))), vec![]);
    assert_eq!(all(&svc, "from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z"), rows);

    // RFC 3339 bounds: UTC with Z, and other offsets (the `+` percent-encoded and raw).
    for k in [0, 17, 46, 89] {
        let z = rfc3339_z(ts[k]);
        assert_eq!(all(&svc, &format!("from={}", enc(&z))), rows[k..].to_vec(), "from={z}");
        assert_eq!(all(&svc, &format!("to={z}")), rows[..k].to_vec(), "to={z} (unencoded)");
        let plus = rfc3339_at(ts[k], 2 * 3600);
        assert!(plus.ends_with("+02:00"), "{plus}");
        assert_eq!(all(&svc, &format!("from={}", enc(&plus))), rows[k..].to_vec(), "from={plus}");
        assert_eq!(all(&svc, &format!("to={plus}")), rows[..k].to_vec(), "to={plus} with a raw +");
        let minus = rfc3339_at(ts[k], -(5 * 3600 + 30 * 60));
        assert!(minus.ends_with("-05:30"), "{minus}");
        assert_eq!(all(&svc, &format!("from={}&to={}", enc(&minus), ts[89])), rows[k..89].to_vec(), "from={minus}");
        // A mix of forms in one query.
        assert_eq!(all(&svc, &format!("from={}&to={}", ts[0], enc(&minus))), rows[..k].to_vec());
    }

    assert!(svc.terminate().success());
    // The files hold the same events in the same order, with the same instants in RFC 3339 form;
    // the file text itself works as a bound.
    let records = read_records(dir.path());
    assert_eq!(records.len(), rows.len());
    for (r, q) in records.iter().zip(&rows) {
        assert_eq!((&r.product_id, &r.new_price), (&q.product_id, &q.price));
        assert_eq!(r.timestamp, rfc3339_z(&q.ts), "file timestamp vs API timestamp");
    }
    assert!(records.windows(2).any(|w| w[0].file != w[1].file), "history spans several files");
    let svc = Service::start(dir.path());
    assert_eq!(all(&svc, ""), rows, "after a restart");
    sweep_bounds(&svc, &rows, "after a restart");
    for k in [0, 33, 89] {
        let from = &records[k].timestamp;
        assert_eq!(all(&svc, &format!("from={}", enc(from))), rows[k..].to_vec(), "from={from} (file text)");
        assert_eq!(all(&svc, &format!("to={}", enc(from))), rows[..k].to_vec(), "to={from} (file text)");
    }
    assert!(svc.terminate().success());
}

#[test]
fn far_past_and_far_future_bounds_are_valid() {
    // `to=9999-12-31T23:59:59Z` is the usual way to say "no upper bound"; it is valid RFC 3339
    // and must select everything (and `from` that far out nothing), not be refused as malformed.
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    let sent = post_sequential(&svc, 3, "1");
    let rows = all(&svc, "");
    assert_eq!(rows.len(), sent.len());
    let mut wrong = Vec::new();
    for (query, want) in [
        ("to=9999-12-31T23:59:59Z", 3),
        ("to=2999-01-01T00:00:00Z", 3),
        ("from=0001-01-01T00:00:00Z", 3),
        ("from=1000-01-01T00:00:00%2B01:00", 3),
        ("from=9999-12-31T23:59:59Z", 0),
        ("to=99999999999", 3),
        ("from=99999999999.5", 0),
    ] {
        let resp = svc.query(query);
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        let n = serde_json::from_str::<Vec<serde_json::Value>>(&text).map(|v| v.len()).ok();
        if status != 200 || n != Some(want) {
            wrong.push(format!("{query}: expected 200 with {want} rows, got {status} {text}"));
        }
    }
    assert!(svc.terminate().success());
    assert!(wrong.is_empty(), "valid far bounds refused:\n{}", wrong.join("\n"));
}

#[test]
fn paging_default_size_alias_links_and_the_last_partial_page() {
    let dir = temp_dir();
    let svc = Service::start_with(dir.path(), &["--window", "50ms"], &[]);
    let sent = post_sequential(&svc, 60, "7");
    let rows = all(&svc, "");
    assert_eq!(rows.len(), 60);
    assert_eq!(rows.iter().map(|r| (r.product_id.clone(), r.price.clone())).collect::<Vec<_>>(), sent);

    // Default page size 25: 25 + 25 + 10, then empty pages.
    let p1 = page(&svc, "");
    assert_eq!((p1.total, p1.rows.clone()), (60, rows[..25].to_vec()), "default page");
    assert_eq!(page(&svc, "pageNumber=1").rows, rows[..25]);
    let p2 = page(&svc, "pageNumber=2");
    assert_eq!((p2.total, p2.rows.clone()), (60, rows[25..50].to_vec()));
    let p3 = page(&svc, "pageNumber=3");
    assert_eq!((p3.total, p3.rows.clone()), (60, rows[50..].to_vec()), "last partial page");
    for n in [4, 5, 1000, 1_000_000_000] {
        let p = page(&svc, &format!("pageNumber={n}"));
        assert_eq!((p.total, p.rows.len()), (60, 0), "page {n} past the end is []");
        assert!(!p.links.contains_key("next"), "no next past the end");
    }

    // Links: first/last always, prev/next where those pages exist.
    let mut keys: Vec<&str> = p1.links.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["first", "last", "next"], "page 1 links");
    let mut keys: Vec<&str> = p2.links.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["first", "last", "next", "prev"], "page 2 links");
    let mut keys: Vec<&str> = p3.links.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["first", "last", "prev"], "last page links");
    let follow = |url: &str| read_page(svc.get_path(url), url);
    assert_eq!(follow(&p1.links["next"]).rows, rows[25..50]);
    assert_eq!(follow(&p1.links["last"]).rows, rows[50..]);
    assert_eq!(follow(&p2.links["prev"]).rows, rows[..25]);
    assert_eq!(follow(&p2.links["next"]).rows, rows[50..]);
    assert_eq!(follow(&p3.links["first"]).rows, rows[..25]);
    assert_eq!(follow(&p3.links["prev"]).rows, rows[25..50]);
    // A single page has neither prev nor next.
    let single = page(&svc, "pagesize=1000");
    assert_eq!(single.rows, rows);
    assert!(!single.links.contains_key("next") && !single.links.contains_key("prev"), "{:?}", single.links);

    // pagesize and its alias pageSize.
    for size in [1, 7, 25, 59, 60, 61, 1000] {
        for name in ["pagesize", "pageSize"] {
            let mut seen = Vec::new();
            let pages = 60usize.div_ceil(size);
            for n in 1..=pages {
                let p = page(&svc, &format!("{name}={size}&pageNumber={n}"));
                assert_eq!(p.total, 60);
                let want = &rows[(n - 1) * size..(n * size).min(60)];
                assert_eq!(p.rows, want, "{name}={size} page {n}");
                seen.extend(p.rows);
            }
            assert_eq!(seen, rows);
            assert_eq!(page(&svc, &format!("{name}={size}&pageNumber={}", pages + 1)).rows, vec![]);
        }
    }

    // Following `next` from page 1 visits every event exactly once, in order.
    for size in [1, 7, 25] {
        let mut url = format!("/api/query?pagesize={size}");
        let mut visited = Vec::new();
        let mut pages = 0;
        loop {
            let p = follow(&url);
            pages += 1;
            assert_eq!(p.total, 60);
            visited.extend(p.rows);
            match p.links.get("next") {
                Some(next) => url = next.clone(),
                None => break,
            }
            assert!(pages <= 60, "next links do not end");
        }
        assert_eq!(pages, 60usize.div_ceil(size), "pages of {size}");
        assert_eq!(visited, rows, "following next with pagesize={size}");
    }
    // ... also with a filter that needs encoding and a time range: the links keep the filter.
    let p = PRODUCTS[2];
    let (from, to) = (rows[5].ts.clone(), rows[50].ts.clone());
    let want: Vec<Row> = rows[5..50].iter().filter(|r| r.product_id == p).cloned().collect();
    let z_from = rfc3339_at(&from, 3600);
    let mut url = format!("/api/query?productId={}&from={}&to={to}&pageSize=4", enc(p), enc(&z_from));
    let mut visited = Vec::new();
    loop {
        let page = follow(&url);
        assert_eq!(page.total, want.len() as u64);
        visited.extend(page.rows);
        match page.links.get("next") {
            Some(next) => url = next.clone(),
            None => break,
        }
    }
    assert_eq!(visited, want, "next links keep productId, from and to");
    assert!(svc.terminate().success());
}

#[test]
fn invalid_parameters_are_400_naming_the_parameter() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    assert_eq!(svc.reprice("x", "1"), 202);
    let cases = [
        ("pagesize=0", "pagesize"),
        ("pagesize=1001", "pagesize"),
        ("pagesize=-5", "pagesize"),
        ("pagesize=abc", "pagesize"),
        ("pagesize=2.5", "pagesize"),
        ("pageSize=0", "pageSize"),
        ("pageSize=1001", "pageSize"),
        ("pageNumber=0", "pageNumber"),
        ("pageNumber=-1", "pageNumber"),
        ("pageNumber=abc", "pageNumber"),
        ("pageNumber=1.0", "pageNumber"),
        ("from=yesterday", "from"),
        ("from=2026-13-45T00:00:00Z", "from"),
        ("from=2026-12-03", "from"),
        ("from=2026-12-03T15:04:05", "from"),
        ("from=1764774245.", "from"),
        ("to=tomorrow", "to"),
        ("from=1764774245&to=1764774244", "from"),
        ("from=2026-12-03T15:04:06Z&to=2026-12-03T15:04:05Z", "from"),
        ("colour=red", "colour"),
        ("page=2", "page"),
    ];
    let mut wrong = Vec::new();
    for (query, name) in cases {
        let resp = svc.query(query);
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        let msg = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_string));
        if status != 400 || msg.as_ref().is_none_or(|m| !m.contains(name)) {
            wrong.push(format!("{query}: expected 400 with an error naming {name}, got {status} {text}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The error body is exactly {"error": "..."} with a JSON content type.
    expect_json_error(svc.query("pagesize=0"), 400);
    // from == to is a valid, empty range; the limits themselves are valid.
    let ok = page(&svc, "from=1764774245&to=1764774245");
    assert_eq!((ok.total, ok.rows.len()), (0, 0));
    assert_eq!(page(&svc, "pagesize=1000&pageNumber=1").rows.len(), 1);
    assert_eq!(page(&svc, "pagesize=1").rows.len(), 1);
    assert!(svc.terminate().success());
}

#[test]
fn paging_is_stable_while_new_events_arrive() {
    let dir = temp_dir();
    // Short windows: segments are sealed while the pages are read.
    let svc = Service::start_with(dir.path(), &["--window", "20ms"], &[]);
    std::thread::scope(|s| {
        for t in 0..4 {
            let svc = &svc;
            s.spawn(move || {
                for i in 0..50 {
                    assert_eq!(svc.reprice(&format!("s-{}", (t + i) % 5), &format!("{}.{t}{i}", i + 1)), 202);
                }
            });
        }
    });
    let original = all(&svc, "");
    assert_eq!(original.len(), 200);
    assert_strictly_increasing(&original);
    let bound = epoch(nanos(&original[199].ts) + 1);

    let stop = AtomicBool::new(false);
    /// Stops the writer even when an assertion fails (or the scope would wait for it forever).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop_guard = StopOnDrop(&stop);
        let writer = s.spawn(|| {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) || i < 20 {
                let (id, price) = (format!("s-{}", i % 6), format!("9{i}.5"));
                assert_eq!(svc.reprice(&id, &price), 202);
                acked.push((id, price));
                i += 1;
            }
            acked
        });
        let stride = 9;
        let pages = 200usize.div_ceil(stride);
        // (a) No bound: pages of the original events do not shift while new ones append.
        let mut seen = Vec::new();
        let mut last_total = 200;
        for n in 1..=pages {
            let p = page(&svc, &format!("pagesize={stride}&pageNumber={n}"));
            assert!(p.total >= last_total, "X-Total-Count went from {last_total} to {}", p.total);
            last_total = p.total;
            // Pages before the last one of the original events are full; that one holds at least
            // the rest of them (plus whatever the writer appended by then).
            let at_least = stride.min(200 - (n - 1) * stride);
            assert!(p.rows.len() >= at_least, "page {n} holds {} rows, expected at least {at_least}", p.rows.len());
            seen.extend(p.rows);
        }
        assert_eq!(seen[..200], original[..], "unbounded paging while writing");
        assert_strictly_increasing(&seen);
        // (b) A fixed `to` bound: exactly the original events, whatever arrives meanwhile.
        let mut seen = Vec::new();
        for n in 1..=pages + 1 {
            let p = page(&svc, &format!("to={bound}&pageSize={stride}&pageNumber={n}"));
            assert_eq!(p.total, 200, "X-Total-Count with a fixed to bound");
            seen.extend(p.rows);
        }
        assert_eq!(seen, original, "bounded paging while writing");
        // (c) Following next links with a fixed bound, and per product.
        for filter in ["".to_string(), "productId=s-1&".to_string(), "productId=s-4&".to_string()] {
            let want: Vec<Row> = original
                .iter()
                .filter(|r| filter.is_empty() || filter == format!("productId={}&", r.product_id))
                .cloned()
                .collect();
            let mut url = format!("/api/query?{filter}to={bound}&pagesize=4");
            let mut seen = Vec::new();
            loop {
                let p = read_page(svc.get_path(&url), &url);
                assert_eq!(p.total, want.len() as u64);
                seen.extend(p.rows);
                match p.links.get("next") {
                    Some(next) => url = next.clone(),
                    None => break,
                }
            }
            assert_eq!(seen, want, "next links over {filter:?} while writing");
        }
        // (d) Per product without a bound: that product's earlier events keep their pages.
        let want: Vec<Row> = original.iter().filter(|r| r.product_id == "s-2").cloned().collect();
        let mut seen = Vec::new();
        for n in 1..=want.len().div_ceil(3) {
            seen.extend(page(&svc, &format!("productId=s-2&pagesize=3&pageNumber={n}")).rows);
        }
        assert_eq!(seen[..want.len()], want[..], "per-product paging while writing");

        stop.store(true, Ordering::Relaxed);
        let acked = writer.join().unwrap();
        // Everything acknowledged is visible, after the original events, in sequence order.
        let now = all(&svc, "");
        assert_eq!(now.len(), 200 + acked.len());
        assert_eq!(now[..200], original[..]);
        assert_strictly_increasing(&now);
        let later: Vec<(String, String)> = now[200..].iter().map(|r| (r.product_id.clone(), r.price.clone())).collect();
        assert_eq!(later, acked, "a single writer's events are in its order");
    });
    let final_rows = all(&svc, "");
    assert!(svc.terminate().success());
    // Query order is the files' order (sequence order), with the same instants.
    let records = read_records(dir.path());
    assert_chains(&records);
    assert_eq!(records.len(), final_rows.len());
    for (r, q) in records.iter().zip(&final_rows) {
        assert_eq!((&r.product_id, &r.new_price, &r.timestamp), (&q.product_id, &q.price, &rfc3339_z(&q.ts)));
    }
    let (ok, report) = common::verify(dir.path());
    assert!(ok, "{report}");
}
