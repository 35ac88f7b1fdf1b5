//! R12: `/metrics` on the admin port is Prometheus text format, and its counters move with the
//! traffic that caused them; `/healthz/live` and `/healthz/ready` answer 200 with JSON.
//!
//! The parser below is strict about the text format (version 0.0.4): every sample line is
//! `name{labels} value [timestamp]` with a float value, every family has `# HELP` and `# TYPE`
//! (before its samples), a series appears once, and histograms are cumulative with a `+Inf`
//! bucket equal to `_count`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{api_addr, expect_json_error, stalled_reader, temp_dir, Service};

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format.

type Labels = BTreeMap<String, String>;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    help: HashMap<String, String>,
    types: HashMap<String, String>,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Parses `{a="x",b="y\"z"}` at the start of `s`; returns the labels and the rest.
fn parse_labels<'a>(s: &'a str, line: &str) -> (Labels, &'a str) {
    let mut labels = Labels::new();
    let mut rest = s.strip_prefix('{').expect("labels start with {");
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let (name, r) = rest.split_once('=').unwrap_or_else(|| panic!("label without '=' in {line:?}"));
        let name = name.trim();
        assert!(is_name(name, false), "bad label name {name:?} in {line:?}");
        let mut chars = r.strip_prefix('"').unwrap_or_else(|| panic!("unquoted label value in {line:?}")).char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(labels.insert(name.to_string(), value).is_none(), "label {name} twice in {line:?}");
        rest = &r[1 + end + 1..];
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else {
            assert!(rest.starts_with('}'), "expected ',' or '}}' in {line:?}");
        }
    }
}

fn parse_value(s: &str, line: &str) -> f64 {
    match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse::<f64>().unwrap_or_else(|e| panic!("value {s:?} of {line:?} is not a float: {e}")),
    }
}

/// The family a sample belongs to (`x_bucket`/`x_sum`/`x_count` of histogram `x`, ...).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            match types.get(base).map(String::as_str) {
                Some("histogram") => return base,
                Some("summary") if suffix != "_bucket" => return base,
                _ => {}
            }
        }
    }
    name
}

fn parse_exposition(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut series: HashSet<(String, Labels)> = HashSet::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), doc) => {
                    assert!(is_name(name, true), "bad metric name in {line:?}");
                    assert!(out.help.insert(name.to_string(), doc.unwrap_or("").to_string()).is_none(), "second HELP for {name}");
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_name(name, true), "bad metric name in {line:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.trim()),
                        "unknown type in {line:?}"
                    );
                    assert!(!out.samples.iter().any(|s| family_of(&s.name, &out.types) == name), "TYPE of {name} after its samples");
                    assert!(out.types.insert(name.to_string(), kind.trim().to_string()).is_none(), "second TYPE for {name}");
                }
                (Some("TYPE"), _, _) => panic!("malformed {line:?}"),
                _ => {} // a plain comment
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("sample line without a value: {line:?}"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "bad metric name {name:?} in {line:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') { parse_labels(&line[name_end..], line) } else { (Labels::new(), &line[name_end..]) };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().unwrap_or_else(|| panic!("no value in {line:?}")), line);
        if let Some(ts) = fields.next() {
            assert!(ts.parse::<i64>().is_ok(), "bad timestamp in {line:?}");
        }
        assert!(fields.next().is_none(), "trailing text in {line:?}");
        assert!(rest.starts_with(' '), "no space before the value in {line:?}");
        let family = family_of(name, &out.types);
        assert!(out.types.contains_key(family), "no # TYPE for family {family} (sample {line:?})");
        assert!(out.help.contains_key(family), "no # HELP for family {family} (sample {line:?})");
        assert!(series.insert((name.to_string(), labels.clone())), "series {name}{labels:?} appears twice");
        out.samples.push(Sample { name: name.to_string(), labels, value });
    }
    check_histograms(&out);
    out
}

/// Buckets are cumulative, end in `+Inf`, and `+Inf` equals `_count`.
fn check_histograms(m: &Exposition) {
    for (family, kind) in &m.types {
        if kind != "histogram" {
            continue;
        }
        let mut buckets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for s in m.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").unwrap_or_else(|| panic!("{family}_bucket without le: {s:?}"));
            buckets.entry(labels).or_default().push((parse_value(&le, &le), s.value));
        }
        for (labels, mut bs) in buckets {
            bs.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(bs.windows(2).all(|w| w[0].1 <= w[1].1), "{family}{labels:?}: buckets not cumulative: {bs:?}");
            let inf = bs.last().filter(|b| b.0 == f64::INFINITY).unwrap_or_else(|| panic!("{family}{labels:?}: no +Inf bucket"));
            let count = m.get(&format!("{family}_count"), &labels);
            assert_eq!(inf.1, count, "{family}{labels:?}: +Inf bucket != _count");
            assert!(m.has(&format!("{family}_sum"), &labels), "{family}{labels:?}: no _sum");
        }
    }
}

impl Exposition {
    fn find(&self, name: &str, labels: &Labels) -> Option<f64> {
        self.samples.iter().find(|s| s.name == name && &s.labels == labels).map(|s| s.value)
    }

    fn has(&self, name: &str, labels: &Labels) -> bool {
        self.find(name, labels).is_some()
    }

    /// The value of the series with exactly these labels; 0 when it does not exist (yet).
    fn get(&self, name: &str, labels: &Labels) -> f64 {
        self.find(name, labels).unwrap_or(0.0)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, &labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn families(&self) -> impl Iterator<Item = &String> {
        self.types.keys()
    }
}

fn scrape(svc: &Service) -> Exposition {
    let resp = svc.http.get(format!("{}/metrics", svc.admin)).send().expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(ctype.starts_with("text/plain"), "content-type {ctype:?}");
    parse_exposition(&resp.text().unwrap())
}

fn requests(m: &Exposition, method: &str, route: &str, status: &str) -> f64 {
    m.value(
        "http_server_request_duration_seconds_count",
        &[("http_request_method", method), ("http_route", route), ("http_response_status_code", status)],
    )
}

const SEQUENCED: &str = "repricer_events_sequenced_total";
const SEALED: &str = "repricer_segments_sealed_total";
const COMMIT_COUNT: &str = "repricer_commit_events_count";
const COMMIT_SUM: &str = "repricer_commit_events_sum";
const FSYNC_COUNT: &str = "repricer_fsync_duration_seconds_count";

fn assert_health(svc: &Service) {
    for path in ["/healthz/live", "/healthz/ready"] {
        let resp = svc.http.get(format!("{}{path}", svc.admin)).send().expect("GET health");
        assert_eq!(resp.status(), 200, "{path}");
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(ctype.starts_with("application/json"), "{path}: content-type {ctype:?}");
        let body = resp.text().unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: body {body:?} is not JSON: {e}"));
        assert!(v.is_object(), "{path}: body {body:?} is not a JSON object");
    }
}

#[test]
fn metrics_are_prometheus_text_and_move_with_traffic() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    assert_health(&svc);

    let m0 = scrape(&svc);
    let sealed0 = m0.get(SEALED, &Labels::new());
    for needle in ["repricer_events_sequenced_total", "repricer_segments_sealed_total", "repricer_fsync_duration_seconds", "recovery"] {
        assert!(m0.families().any(|f| f.contains(needle)), "no metric family {needle:?} before any traffic");
    }

    // N reprices: sequenced, acknowledged with 202, committed, fsync'd.
    const N: u64 = 37;
    for i in 0..N {
        assert_eq!(svc.reprice(&format!("metrics-{}", i % 5), &format!("{}.{:02}", 10 + i, i)), 202);
    }
    let m1 = scrape(&svc);
    assert_eq!(m1.get(SEQUENCED, &Labels::new()) - m0.get(SEQUENCED, &Labels::new()), N as f64, "{SEQUENCED} grew by N");
    assert_eq!(requests(&m1, "POST", "/api/reprice", "202") - requests(&m0, "POST", "/api/reprice", "202"), N as f64, "202s of POST /api/reprice");
    let commits = m1.get(COMMIT_COUNT, &Labels::new()) - m0.get(COMMIT_COUNT, &Labels::new());
    assert!((1.0..=N as f64).contains(&commits), "{COMMIT_COUNT} grew by {commits}");
    assert_eq!(m1.get(COMMIT_SUM, &Labels::new()) - m0.get(COMMIT_SUM, &Labels::new()), N as f64, "events made durable by the commits");
    assert!(m1.get(FSYNC_COUNT, &Labels::new()) - m0.get(FSYNC_COUNT, &Labels::new()) >= 1.0, "{FSYNC_COUNT} grew");
    assert!(m1.families().any(|f| f.contains("mailbox")), "no mailbox depth metric after traffic");

    // The window is sealed within a few seconds (default window 1 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if scrape(&svc).get(SEALED, &Labels::new()) > sealed0 {
            break;
        }
        assert!(Instant::now() < deadline, "{SEALED} did not grow within 15 s of the reprices");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_dir(dir.path().join("results")).unwrap().count() >= 1);

    // A rejected reprice is counted under 400; nothing is sequenced for it.
    let m2 = scrape(&svc);
    expect_json_error(svc.post_raw("{\"productId\": \"x\", \"price\": ", "application/json"), 400);
    expect_json_error(svc.post_raw("{\"productId\": \"x\", \"price\": -1}", "application/json"), 400);
    // Reads: a hit, a miss (404), a query — by route template, not by concrete path.
    assert_eq!(svc.get_price("metrics-1").status(), 200);
    assert_eq!(svc.get_price("no-such-product-4711").status(), 404);
    assert_eq!(svc.query("productId=metrics-2&pagesize=3").status(), 200);
    assert_eq!(svc.query("pagesize=0").status(), 400);
    let m3 = scrape(&svc);
    assert_eq!(requests(&m3, "POST", "/api/reprice", "400") - requests(&m2, "POST", "/api/reprice", "400"), 2.0, "400s of POST /api/reprice");
    assert_eq!(m3.get(SEQUENCED, &Labels::new()), m2.get(SEQUENCED, &Labels::new()), "nothing sequenced for a 400");
    let price_route = "/api/product/{productId}/price";
    assert_eq!(requests(&m3, "GET", price_route, "200") - requests(&m2, "GET", price_route, "200"), 1.0, "GET price 200");
    assert_eq!(requests(&m3, "GET", price_route, "404") - requests(&m2, "GET", price_route, "404"), 1.0, "GET price 404");
    assert_eq!(requests(&m3, "GET", "/api/query", "200") - requests(&m2, "GET", "/api/query", "200"), 1.0, "GET query 200");
    assert_eq!(requests(&m3, "GET", "/api/query", "400") - requests(&m2, "GET", "/api/query", "400"), 1.0, "GET query 400");
    for s in &m3.samples {
        assert!(
            !s.labels.values().any(|v| v.contains("no-such-product") || v.contains("metrics-1")),
            "a label holds a concrete product id (unbounded cardinality): {s:?}"
        );
    }
    // Durations are observed: the sum of a route's histogram is positive once it has requests.
    let labels: Labels = [("http_request_method", "POST"), ("http_route", "/api/reprice"), ("http_response_status_code", "202")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(m3.get("http_server_request_duration_seconds_sum", &labels) > 0.0);
    assert_health(&svc);
    assert!(svc.terminate().success());
}

// ---------------------------------------------------------------------------------------------
// Admission rejections (R5), made deterministic the way tests/admission.rs does it: a page of
// ~380 KB that a client with tiny socket buffers never reads keeps the only query slot taken.

const ROWS: usize = 1000;

/// Writes one sealed segment of `ROWS` records with 256-byte ids and 62-character prices.
fn write_large_history(data_dir: &Path) {
    let results = data_dir.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let mut body = String::from("[\n");
    for i in 0..ROWS {
        if i > 0 {
            body.push_str(",\n");
        }
        let id = format!("{i:0>256}");
        let price = format!("{}.{}", i + 1, "7".repeat(61 - (i + 1).to_string().len()));
        body.push_str(&format!(
            "{{\"productId\":\"{id}\",\"newPrice\":{price},\"timestamp\":\"2023-11-14T22:13:20.{:09}Z\"}}",
            (i + 1) * 1000
        ));
    }
    body.push_str("\n]\n");
    std::fs::write(results.join(format!("20231114T221320.000Z_{:020}_{ROWS:010}.json", 1)), body).unwrap();
}


const OPENED: &str = "repricer_query_segments_opened_total";

/// Pages over segments already read are answered from memory (by the QueryPlanner on the HTTP
/// thread: parsed segments, or the lines of an indexed file that are in the page cache) and
/// equal the same pages read from the file (by a SegmentReader).
#[test]
fn cached_pages_read_no_file_and_equal_the_pages_read_from_disk() {
    let dir = temp_dir();
    write_large_history(dir.path());
    let svc = Service::start(dir.path());
    let fetch = |query: &str| {
        let resp = svc.query(query);
        assert_eq!(resp.status(), 200, "{query}");
        let total = resp.headers()["x-total-count"].to_str().unwrap().to_string();
        (total, resp.text().unwrap())
    };
    let opened = || scrape(&svc).get(OPENED, &Labels::new());
    // Unfiltered (record offsets), by product and by time (parsed segment).
    let queries = ["pageNumber=3&pagesize=7", &format!("productId={:0>256}", 17), "from=1700000000.000017&to=1700000000.000400&pagesize=50"];
    let mut first_pages = Vec::new();
    for q in queries {
        let before = opened();
        let from_disk = fetch(q);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&from_disk.1).unwrap();
        assert!(!rows.is_empty() && from_disk.0.parse::<usize>().unwrap() >= rows.len(), "{q}: {from_disk:?}");
        assert!(opened() - before <= 1.0, "{q} opens at most the one segment file");
        first_pages.push(from_disk);
    }
    let opened1 = opened();
    assert!(opened1 >= 1.0, "the first pages read the file");
    for (q, from_disk) in queries.iter().zip(&first_pages) {
        assert_eq!(&fetch(q), from_disk, "the cached page of {q} equals the page read from disk");
    }
    assert_eq!(fetch("pageNumber=2&pagesize=9"), fetch("pageNumber=2&pagesize=9"));
    assert_eq!(opened(), opened1, "pages of a segment already read open no file");
    let from_disk = first_pages[0].clone();

    // A restart empties the cache: the same pages are read from the file again, unchanged.
    assert!(svc.terminate().success());
    let svc = Service::start(dir.path());
    let resp = svc.query("pageNumber=3&pagesize=7");
    assert_eq!(resp.headers()["x-total-count"].to_str().unwrap(), from_disk.0);
    assert_eq!(resp.text().unwrap(), from_disk.1, "the page read from disk after a restart");
    assert_eq!(scrape(&svc).get(OPENED, &Labels::new()), 1.0, "a fresh cache reads the file");
    assert!(svc.terminate().success());
}

#[test]
fn query_admission_rejections_are_counted() {
    let dir = temp_dir();
    write_large_history(dir.path());
    let svc = Service::start_with(dir.path(), &["--query-max-inflight", "1"], &[]);
    let full = svc.query(&format!("pagesize={ROWS}"));
    assert_eq!(full.status(), 200);
    assert!(full.text().unwrap().len() > 350_000, "a full page is large");

    let m0 = scrape(&svc);
    let rejected = |m: &Exposition| m.value("repricer_admission_rejections_total", &[("endpoint", "query")]);
    // The only slot is taken by a reader that does not read its body...
    let (stalled, status) = stalled_reader(api_addr(&svc), ROWS);
    assert_eq!(status, "HTTP/1.1 200 OK");
    // ... so these are refused at once and counted.
    const REFUSED: u64 = 3;
    for _ in 0..REFUSED {
        let r = svc.query("pagesize=1");
        assert_eq!(r.status(), 503, "the only query slot is held by a slow reader");
    }
    let m1 = scrape(&svc);
    assert_eq!(rejected(&m1) - rejected(&m0), REFUSED as f64, "repricer_admission_rejections_total{{endpoint=\"query\"}}");
    assert_eq!(requests(&m1, "GET", "/api/query", "503") - requests(&m0, "GET", "/api/query", "503"), REFUSED as f64, "503s of GET /api/query");
    assert_eq!(m1.value("repricer_admission_rejections_total", &[("endpoint", "product")]), 0.0);

    // Once the slow reader goes away, queries are admitted and nothing more is rejected.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = svc.query("pagesize=1");
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "the slot was never released");
        std::thread::sleep(Duration::from_millis(20));
    }
    let m2 = scrape(&svc);
    let m3 = {
        assert_eq!(svc.query("pagesize=1").status(), 200);
        scrape(&svc)
    };
    assert_eq!(rejected(&m3), rejected(&m2), "an admitted query is not a rejection");
    assert_health(&svc);
    assert!(svc.terminate().success());
}

/// Label values come from closed sets: a made-up method is `_OTHER`, a path that no route
/// matches is `unmatched` (also one that only looks like the product path), so no request can
/// add a series of its own. Rejection counters exist at 0 before any rejection, and the
/// checkpoint time is set from the start.
#[test]
fn metric_labels_are_bounded_and_every_series_exists_from_the_start() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    let m0 = scrape(&svc);
    for endpoint in ["reprice", "product", "query"] {
        assert!(m0.has("repricer_admission_rejections_total", &[("endpoint".to_string(), endpoint.to_string())].into()), "{endpoint}");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let checkpoint = checkpoint_time_once_set(&svc);
    assert!((now - checkpoint).abs() < 120.0, "checkpoint time {checkpoint} at start, now {now}");

    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let resp = svc.http.request(method, format!("{}/api/reprice", svc.api)).send().unwrap();
        assert_eq!(resp.status(), 405);
    }
    for path in ["/api/product/a/b/price", "/api/product//price", "/nothing/here"] {
        assert_eq!(svc.http.get(format!("{}{path}", svc.api)).send().unwrap().status(), 404, "{path}");
    }
    let m1 = scrape(&svc);
    let methods: BTreeSet<String> = m1
        .samples
        .iter()
        .filter(|s| s.name == "http_server_request_duration_seconds_count")
        .filter_map(|s| s.labels.get("http_request_method").cloned())
        .collect();
    assert!(methods.iter().all(|m| ["GET", "POST", "_OTHER"].contains(&m.as_str())), "{methods:?}");
    assert_eq!(requests(&m1, "_OTHER", "/api/reprice", "405"), 20.0);
    assert_eq!(requests(&m1, "GET", "unmatched", "404"), 3.0);
    assert_eq!(requests(&m1, "GET", "/api/product/{productId}/price", "404"), 0.0);
    assert!(svc.terminate().success());

    // After a restart that loads the checkpoint written at shutdown, the time is that of the
    // restart's first fold, not 0.
    let svc = Service::start(dir.path());
    let checkpoint = checkpoint_time_once_set(&svc);
    assert!(checkpoint >= now.floor(), "checkpoint time {checkpoint} after a restart");
    assert!(svc.terminate().success());
}

/// `repricer_checkpoint_timestamp_seconds` once the Checkpointer's first fold (at start, on its
/// own thread) has set it; fails if that takes longer than 10 s (the interval is 30 s).
fn checkpoint_time_once_set(svc: &Service) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = scrape(svc).value("repricer_checkpoint_timestamp_seconds", &[]);
        if t > 0.0 {
            return t;
        }
        assert!(Instant::now() < deadline, "the checkpoint time is still 0 10 s after start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
