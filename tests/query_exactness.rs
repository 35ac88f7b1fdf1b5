//! R4 paging exactness: every page of every filter equals a naive scan of the segment files.
//!
//! A synthetic history (`gen-history`: many one-second segments, dozens of products) is served
//! with `--segment-cache 3`, so nearly every page evicts and re-reads segments. For each filter
//! (none, product, time windows in both bound forms — epoch seconds with 9 decimals and RFC 3339
//! with non-Z offsets — bounds exactly at an event and between segments, product + window) and
//! page sizes 1, 7, 25 and 1000, the test checks `X-Total-Count`, every page's rows (productId,
//! exact price text, nanosecond timestamp), the empty page past the end and the `Link` header
//! (`rel="last"` is the last non-empty page; `next`/`prev` where those pages exist).
//!
//! The expected answer is always computed from the files themselves (`read_records`), never from
//! the service: the timestamps of the files (RFC 3339) are converted to epoch nanoseconds here
//! and compared with the API's epoch-seconds-with-9-decimals numbers.
//!
//! Then the same exactness holds after new events are posted (tail + new segments, before and
//! after a clean restart), while a writer appends (pages do not shift), and when the checkpoint
//! is missing, corrupt, truncated or stale.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use common::{read_records, temp_dir, Service};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::value::RawValue;

const NANOS: i64 = 1_000_000_000;
/// How thoroughly a set of filters is checked.
#[derive(Clone, Copy)]
struct Plan {
    /// Page sizes, each checked for every filter.
    sizes: &'static [u64],
    /// A (filter, page size) with at most this many pages and rows is paged completely (and
    /// the concatenation compared); larger ones are checked on a sample of pages: the first,
    /// the last ones, past the end, pages straddling segment boundaries, and a spread.
    max_full_pages: u64,
    max_full_rows: u64,
    /// How many spread pages and segment-boundary pages a sample holds (each).
    samples: u64,
}

/// Every page size of R4's range that matters: 1, a prime, the default and the maximum.
const FULL: Plan = Plan { sizes: &[1, 7, 25, 1000], max_full_pages: 60, max_full_rows: 2000, samples: 4 };
/// Every page size, fewer pages (for a second history).
const MEDIUM: Plan = Plan { sizes: &[1, 7, 25, 1000], max_full_pages: 30, max_full_rows: 1500, samples: 3 };
/// Pages over the newest events while they are being written.
const LIVE: Plan = Plan { sizes: &[1, 7, 25], max_full_pages: 60, max_full_rows: 1000, samples: 3 };
/// Every page of the whole history at the largest page size.
const EXHAUSTIVE_1000: Plan = Plan { sizes: &[1000], max_full_pages: 1000, max_full_rows: u64::MAX, samples: 0 };
/// For repeated checks of the same data (restarts): fewer pages, same filters.
const QUICK: Plan = Plan { sizes: &[25, 1000], max_full_pages: 12, max_full_rows: 1500, samples: 2 };
/// History size of the tests that restart or write (20 segments of 300).
const SMALL_EVENTS: usize = 6000;
/// gen-history's first window (1_700_000_000 s = 2023-11-14T22:13:20Z).
const GEN_START_SEC: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// The naive model: the files, in order.

/// One event as the API returns it: productId, exact price text, epoch nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    product: String,
    price: String,
    ts: i64,
}

/// Every event of `results/` in sequence order, and the index of the first event of each file.
struct History {
    events: Vec<Ev>,
    file_starts: Vec<usize>,
}

fn rfc3339_to_nanos(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("stored timestamp {s:?} is not RFC 3339: {e}"))
        .timestamp_nanos_opt()
        .expect("timestamp in range")
}

fn history(data_dir: &Path) -> History {
    let records = read_records(data_dir);
    let mut file_starts = Vec::new();
    let mut events = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        if i == 0 || records[i - 1].file != r.file {
            file_starts.push(i);
        }
        assert!(r.timestamp.ends_with('Z'), "stored timestamps are UTC: {r:?}");
        events.push(Ev { product: r.product_id.clone(), price: r.new_price.clone(), ts: rfc3339_to_nanos(&r.timestamp) });
    }
    for w in events.windows(2) {
        assert!(w[0].ts < w[1].ts, "file timestamps strictly increase: {:?} then {:?}", w[0], w[1]);
    }
    History { events, file_starts }
}

impl History {
    fn ts(&self, i: usize) -> i64 {
        self.events[i].ts
    }

    /// The instant halfway between file `f - 1`'s last event and file `f`'s first event.
    fn between_files(&self, f: usize) -> i64 {
        let b = self.file_starts[f];
        let (before, after) = (self.ts(b - 1), self.ts(b));
        assert!(after - before >= 2, "files {} and {f} touch", f - 1);
        before + (after - before) / 2
    }

    /// Indices of `product`'s events.
    fn of_product(&self, product: &str) -> Vec<usize> {
        (0..self.events.len()).filter(|&i| self.events[i].product == product).collect()
    }
}

fn gen_history(dir: &Path, events: usize, products: usize, per_segment: usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_gen-history"))
        .arg(dir)
        .args([events.to_string(), products.to_string(), per_segment.to_string()])
        .output()
        .expect("run gen-history");
    assert!(out.status.success(), "gen-history failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn product(i: usize) -> String {
    format!("product-{i:07}")
}

/// Starts the service with a 3-segment cache: nearly every page evicts and re-reads segments.
fn start(dir: &Path) -> Service {
    Service::start_with(dir, &["--segment-cache", "3"], &[])
}

/// Starts the service with its default segment cache (the checkpoint tests restart many times;
/// what they check is the catalog restored at start, not the cache).
fn start_default_cache(dir: &Path) -> Service {
    Service::start(dir)
}

// ---------------------------------------------------------------------------------------------
// Filters and their query strings.

#[derive(Clone, Copy, Debug)]
enum Form {
    /// `1700000005.123456789`
    Epoch9,
    /// Epoch seconds with trailing fraction zeros (and the dot) dropped: `1700000005`.
    EpochShort,
    /// RFC 3339 with nanoseconds and this offset in seconds east of UTC (`+02:00`).
    Rfc3339(i32),
}

#[derive(Clone, Copy, Debug)]
struct Bound {
    t: i64,
    form: Form,
}

fn epoch(t: i64) -> Bound {
    Bound { t, form: Form::Epoch9 }
}

fn rfc(t: i64, offset_secs: i32) -> Bound {
    Bound { t, form: Form::Rfc3339(offset_secs) }
}

impl Bound {
    fn text(&self) -> String {
        match self.form {
            Form::Epoch9 => format!("{}.{:09}", self.t.div_euclid(NANOS), self.t.rem_euclid(NANOS)),
            Form::EpochShort => {
                let frac = format!("{:09}", self.t.rem_euclid(NANOS));
                let frac = frac.trim_end_matches('0');
                if frac.is_empty() {
                    format!("{}", self.t.div_euclid(NANOS))
                } else {
                    format!("{}.{frac}", self.t.div_euclid(NANOS))
                }
            }
            Form::Rfc3339(offset) => {
                let tz = FixedOffset::east_opt(offset).expect("valid offset");
                let text = DateTime::<Utc>::from_timestamp_nanos(self.t).with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string();
                assert!(offset == 0 || !text.ends_with('Z'), "{text}");
                text
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Filter {
    product: Option<String>,
    from: Option<Bound>,
    to: Option<Bound>,
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

impl Filter {
    fn all() -> Filter {
        Filter::default()
    }

    fn product(p: &str) -> Filter {
        Filter { product: Some(p.to_string()), ..Filter::default() }
    }

    fn window(from: Option<Bound>, to: Option<Bound>) -> Filter {
        Filter { product: None, from, to }
    }

    fn product_window(p: &str, from: Option<Bound>, to: Option<Bound>) -> Filter {
        Filter { product: Some(p.to_string()), from, to }
    }

    fn matches(&self, e: &Ev) -> bool {
        self.product.as_deref().is_none_or(|p| p == e.product)
            && self.from.is_none_or(|b| e.ts >= b.t)
            && self.to.is_none_or(|b| e.ts < b.t)
    }

    fn expected<'a>(&self, events: &'a [Ev]) -> Vec<&'a Ev> {
        events.iter().filter(|e| self.matches(e)).collect()
    }

    /// The filter part of the query string (percent-encoded).
    fn params(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.product {
            parts.push(format!("productId={}", enc(p)));
        }
        if let Some(b) = &self.from {
            parts.push(format!("from={}", enc(&b.text())));
        }
        if let Some(b) = &self.to {
            parts.push(format!("to={}", enc(&b.text())));
        }
        parts.join("&")
    }

    fn page_query(&self, page: u64, size: u64) -> String {
        let params = self.params();
        // Alternate the two accepted spellings of the page size parameter.
        let size_key = if size == 7 { "pageSize" } else { "pagesize" };
        if params.is_empty() {
            format!("/api/query?pageNumber={page}&{size_key}={size}")
        } else {
            format!("/api/query?{params}&pageNumber={page}&{size_key}={size}")
        }
    }

    fn describe(&self) -> String {
        let b = |b: &Option<Bound>| b.map_or("-".to_string(), |b| b.text());
        format!("productId={} from={} to={}", self.product.as_deref().unwrap_or("-"), b(&self.from), b(&self.to))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading pages.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row<'a> {
    #[serde(rename = "productId")]
    product_id: String,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    timestamp: &'a RawValue,
}

/// `1700000005.123456789` (exactly 9 decimals) → nanoseconds.
fn epoch9_to_nanos(text: &str) -> i64 {
    let (secs, frac) = text.split_once('.').unwrap_or_else(|| panic!("timestamp {text:?} has no fraction"));
    assert!(
        !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()) && frac.len() == 9 && frac.bytes().all(|b| b.is_ascii_digit()),
        "timestamp {text:?} is not epoch seconds with 9 decimals"
    );
    secs.parse::<i64>().unwrap() * NANOS + frac.parse::<i64>().unwrap()
}

fn parse_rows(body: &str) -> Vec<Ev> {
    let rows: Vec<Row<'_>> = serde_json::from_str(body).unwrap_or_else(|e| panic!("page body is not a JSON array of rows ({e}): {body:.300}"));
    rows.into_iter()
        .map(|r| Ev { product: r.product_id, price: r.price.get().to_string(), ts: epoch9_to_nanos(r.timestamp.get()) })
        .collect()
}

struct PageResp {
    total: u64,
    rows: Vec<Ev>,
    /// rel → target (`/api/query?...`).
    links: HashMap<String, String>,
}

fn parse_links(header: &str) -> HashMap<String, String> {
    let mut links = HashMap::new();
    for part in header.split(',') {
        let part = part.trim();
        let (target, rest) = part
            .strip_prefix('<')
            .and_then(|p| p.split_once('>'))
            .unwrap_or_else(|| panic!("Link part {part:?} of {header:?} is not <target>; rel=..."));
        let rel = rest
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("rel="))
            .unwrap_or_else(|| panic!("Link part {part:?} has no rel"))
            .trim_matches('"');
        assert!(links.insert(rel.to_string(), target.to_string()).is_none(), "rel {rel:?} twice in {header:?}");
    }
    links
}

static REQUESTS: AtomicUsize = AtomicUsize::new(0);

fn fetch(svc: &Service, path_and_query: &str) -> PageResp {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let resp = svc.get_path(path_and_query);
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().expect("page body");
    assert_eq!(status, 200, "GET {path_and_query}: {body}");
    let total = headers
        .get("x-total-count")
        .unwrap_or_else(|| panic!("GET {path_and_query}: no X-Total-Count"))
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap_or_else(|e| panic!("GET {path_and_query}: X-Total-Count: {e}"));
    let links = parse_links(headers.get("link").unwrap_or_else(|| panic!("GET {path_and_query}: no Link header")).to_str().unwrap());
    PageResp { total, rows: parse_rows(&body), links }
}

fn page_number_of(target: &str) -> u64 {
    let query = target.split_once('?').map_or("", |q| q.1);
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("pageNumber="))
        .unwrap_or_else(|| panic!("link {target:?} has no pageNumber"))
        .parse()
        .unwrap()
}

/// Asserts `got` equals `want` row for row, naming the first difference.
fn assert_rows(got: &[Ev], want: &[&Ev], what: &dyn Fn() -> String) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != *want[i]) {
        panic!("{}: row {i} is {:?}, the files say {:?}", what(), got[i], want[i]);
    }
    assert_eq!(got.len(), want.len(), "{}: {} rows, the files say {} (first extra/missing: {:?} / {:?})", what(), got.len(), want.len(), got.get(want.len()), want.get(got.len()));
}

/// Page numbers to check for a (filter, size) with `last` pages: all of them (and the one past
/// the end) when that is affordable, otherwise a sample. `true` when all.
fn pages_to_check(plan: Plan, expected: &[&Ev], size: u64, last: u64, file_of: &dyn Fn(&Ev) -> usize) -> (Vec<u64>, bool) {
    if last <= plan.max_full_pages && expected.len() as u64 <= plan.max_full_rows {
        return ((1..=last + 1).collect(), true);
    }
    // Large pages are costly to produce in a debug build: fewer of them.
    let samples = if size >= 1000 { plan.samples.min(1) } else { plan.samples };
    let mut pages: BTreeSet<u64> = [1, last.saturating_sub(1).max(1), last, last + 1, last + 50].into_iter().collect();
    for k in 1..=samples {
        pages.insert(1 + (last - 1) * k / (samples + 1));
    }
    // Pages holding the first row of a segment (for size > 1 they straddle two segments).
    let mut boundary_pages = Vec::new();
    let mut prev_file = usize::MAX;
    for (i, e) in expected.iter().enumerate() {
        let f = file_of(e);
        if f != prev_file {
            boundary_pages.push(i as u64 / size + 1);
            prev_file = f;
        }
    }
    let step = boundary_pages.len().div_ceil(samples.max(1) as usize).max(1);
    pages.extend(boundary_pages.into_iter().skip(1).step_by(step).take(samples as usize));
    (pages.into_iter().collect(), false)
}

/// Checks one filter at one page size against the naive list.
fn check_size(svc: &Service, plan: Plan, events: &[Ev], file_of: &dyn Fn(&Ev) -> usize, f: &Filter, size: u64) {
    let expected = f.expected(events);
    let total = expected.len() as u64;
    let last = total.div_ceil(size).max(1);
    let (pages, complete) = pages_to_check(plan, &expected, size, last, file_of);
    let mut concat: Vec<Ev> = Vec::new();
    for &page in &pages {
        let q = f.page_query(page, size);
        let r = fetch(svc, &q);
        let what = || format!("{} (GET {q})", f.describe());
        assert_eq!(r.total, total, "{}: X-Total-Count", what());
        let lo = ((page - 1) * size).min(total) as usize;
        let hi = (page * size).min(total) as usize;
        assert_rows(&r.rows, &expected[lo..hi], &what);
        if page > last {
            assert!(r.rows.is_empty(), "{}: a page past the end is []", what());
        }
        // Link: rel="last" is the last non-empty page; next/prev where those pages exist.
        let last_link = r.links.get("last").unwrap_or_else(|| panic!("{}: no rel=\"last\" in {:?}", what(), r.links));
        assert_eq!(page_number_of(last_link), last, "{}: rel=\"last\" {last_link}", what());
        if page <= last {
            match r.links.get("next") {
                Some(next) => {
                    assert!(page < last, "{}: rel=\"next\" {next} on the last page", what());
                    assert_eq!(page_number_of(next), page + 1, "{}: rel=\"next\"", what());
                }
                None => assert_eq!(page, last, "{}: no rel=\"next\" on page {page} of {last}", what()),
            }
            match r.links.get("prev") {
                Some(prev) => {
                    assert!(page > 1, "{}: rel=\"prev\" on page 1", what());
                    assert_eq!(page_number_of(prev), page - 1, "{}: rel=\"prev\"", what());
                }
                None => assert_eq!(page, 1, "{}: no rel=\"prev\" on page {page}", what()),
            }
        }
        if complete && page <= last {
            concat.extend(r.rows);
        }
        // Follow rel="last" (at one page size per filter): same filter, same total, last rows.
        if page == 1 && size == plan.sizes[0] {
            let via = fetch(svc, last_link);
            let what = || format!("{} (rel=\"last\" {last_link})", f.describe());
            assert_eq!(via.total, total, "{}: X-Total-Count", what());
            let lo = ((last - 1) * size).min(total) as usize;
            assert_rows(&via.rows, &expected[lo..], &what);
            assert!(total == 0 || !via.rows.is_empty(), "{}: rel=\"last\" is not the last non-empty page", what());
        }
    }
    if complete {
        assert_rows(&concat, &expected, &|| format!("{} pagesize={size}: all pages concatenated", f.describe()));
    }
}

/// Checks every filter at every page size of `plan`.
fn check_filters(svc: &Service, hist: &History, filters: &[Filter], plan: Plan) {
    let started = Instant::now();
    let requests = REQUESTS.load(Ordering::Relaxed);
    // Event → file index, by timestamp (timestamps are unique and increasing).
    let file_ts: Vec<i64> = hist.file_starts.iter().map(|&i| hist.events[i].ts).collect();
    let file_of = |e: &Ev| file_ts.partition_point(|&t| t <= e.ts).saturating_sub(1);
    for f in filters {
        for &size in plan.sizes {
            check_size(svc, plan, &hist.events, &file_of, f, size);
        }
    }
    eprintln!(
        "checked {} filters x {:?} in {:?} ({} requests)",
        filters.len(),
        plan.sizes,
        started.elapsed(),
        REQUESTS.load(Ordering::Relaxed) - requests
    );
}

/// The filters checked against a history: none, products, time windows in both forms with
/// bounds exactly at events and between segments, and product + window.
fn standard_filters(h: &History) -> Vec<Filter> {
    let n = h.events.len();
    let files = h.file_starts.len();
    assert!(files >= 15, "a history of many segments ({files})");
    let (pa, pb, pc) = (product(0), product(17), product(39));
    let at = |i: usize| h.ts(i);
    let pb_events = h.of_product(&pb);
    let pa_events = h.of_product(&pa);
    let pc_events = h.of_product(&pc);
    let (pa_n, pb_n) = (pa_events.len(), pb_events.len());
    assert!(pa_n >= 40 && pb_n >= 40 && pc_events.len() >= 40, "products with a long history");
    let (f1, f2) = (files / 6, files / 6 + 4);
    let filters = vec![
        Filter::all(),
        Filter::product(&pa),
        Filter::product(&pb),
        Filter::product(&pc),
        Filter::product("product-9999999"),
        // Bounds exactly at events: from inclusive, to exclusive; both forms; mixed forms.
        Filter::window(Some(epoch(at(n / 6))), Some(epoch(at(n / 6 + n / 12)))),
        Filter::window(Some(rfc(at(n / 6), 7200)), Some(rfc(at(n / 6 + n / 12), 7200))),
        Filter::window(Some(rfc(at(n / 2), -(5 * 3600 + 1800))), Some(epoch(at(n / 2 + 1500)))),
        // A window of exactly one event, and an empty one (from = to).
        Filter::window(Some(epoch(at(n / 4))), Some(epoch(at(n / 4 + 1)))),
        Filter::window(Some(epoch(at(n / 4))), Some(rfc(at(n / 4), 3600))),
        // Bounds between segments.
        Filter::window(Some(epoch(h.between_files(f1))), Some(rfc(h.between_files(f2), 7200))),
        // Bounds at the first event of a segment and at the last event of another (excluded).
        Filter::window(Some(rfc(at(h.file_starts[f1]), 7200)), Some(epoch(at(h.file_starts[f2] - 1)))),
        // The last event of one segment up to (excluding) the first of the next: exactly one.
        Filter::window(Some(epoch(at(h.file_starts[f2] - 1))), Some(rfc(at(h.file_starts[f2]), 9 * 3600))),
        // Whole-second epoch bounds (window starts, before each segment's first event).
        Filter::window(
            Some(Bound { t: (GEN_START_SEC + 3) * NANOS, form: Form::EpochShort }),
            Some(Bound { t: (GEN_START_SEC + 7) * NANOS, form: Form::EpochShort }),
        ),
        // A few rows either side of a segment boundary (every page size is paged completely).
        Filter::window(Some(epoch(at(h.file_starts[f2] - 20))), Some(rfc(at(h.file_starts[f2] + 20), 7200))),
        // One-sided windows.
        Filter::window(Some(epoch(at(n - 1234))), None),
        Filter::window(None, Some(rfc(at(150), 7200))),
        // Everything, and nothing after the end.
        Filter::window(Some(epoch(0)), Some(rfc(4_102_444_800 * NANOS, 7200))),
        Filter::window(Some(epoch(at(n - 1) + 1)), None),
        // Product + window: bounds at the product's own events (size 1 is affordable here).
        Filter::product_window(&pb, Some(epoch(at(pb_events[pb_n / 4]))), Some(rfc(at(pb_events[pb_n / 4 + pb_n / 2]), 7200))),
        // Product + window between segments.
        Filter::product_window(&pa, Some(rfc(h.between_files(f1), 7200)), Some(epoch(h.between_files(f1 + 3)))),
        // Product + from at its own event, no `to`.
        Filter::product_window(&pc, Some(rfc(at(pc_events[pc_events.len() - 30]), 7200)), None),
        // Product + bounds at other products' events next to its own.
        Filter::product_window(&pa, Some(epoch(at(pa_events[pa_n / 4] + 1))), Some(epoch(at(pa_events[pa_n / 2] - 1)))),
        Filter::product_window(&pa, Some(epoch(at(pa_events[pa_n / 4] - 1))), Some(epoch(at(pa_events[pa_n / 2] + 1)))),
        // Product + a window that holds none of its events.
        Filter::product_window(&pa, Some(epoch(at(pa_events[10]) + 1)), Some(epoch(at(pa_events[11])))),
    ];
    // Sanity of the chosen bounds.
    let one = &filters[8];
    assert_eq!(one.expected(&h.events).len(), 1);
    assert_eq!(filters[9].expected(&h.events).len(), 0);
    assert_eq!(filters[12].expected(&h.events).len(), 1);
    assert_eq!(filters[14].expected(&h.events).len(), 40);
    assert_eq!(filters[19].expected(&h.events).len(), pb_n / 2);
    filters
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn pages_of_every_filter_equal_a_naive_scan_of_the_files() {
    let dir = temp_dir();
    gen_history(dir.path(), 30_000, 40, 700);
    let hist = history(dir.path());
    assert_eq!(hist.events.len(), 30_000);
    assert!(hist.file_starts.len() >= 40, "{} segments", hist.file_starts.len());
    let svc = start(dir.path());
    let filters = standard_filters(&hist);
    assert!(filters[0].product.is_none() && filters[0].from.is_none() && filters[0].to.is_none());
    // The whole history: every page at the largest size, a sample at the others.
    check_filters(&svc, &hist, &filters[..1], EXHAUSTIVE_1000);
    check_filters(&svc, &hist, &filters[..1], Plan { sizes: &FULL.sizes[..3], ..FULL });
    check_filters(&svc, &hist, &filters[1..], FULL);

    // The default page size is 25, and an unencoded `+` in an offset (a space once decoded)
    // selects the same events.
    let f = &filters[6];
    let expected = f.expected(&hist.events);
    let r = fetch(&svc, &format!("/api/query?{}", f.params()));
    assert_eq!(r.total, expected.len() as u64);
    assert_rows(&r.rows, &expected[..25], &|| format!("{} default page size", f.describe()));
    let (from, to) = (f.from.unwrap().text(), f.to.unwrap().text());
    assert!(from.contains('+'));
    let r = fetch(&svc, &format!("/api/query?from={from}&to={to}&pagesize=1000&pageNumber=2"));
    assert_eq!(r.total, expected.len() as u64, "unencoded + in the offset");
    assert_rows(&r.rows, &expected[1000..2000.min(expected.len())], &|| "unencoded +".to_string());
    assert!(svc.terminate().success());
}

/// With several HTTP workers each worker plans pages with a QueryPlanner of its own (over the
/// shared catalog and cache): pages fetched concurrently over several connections, so from
/// several workers, are still exact.
#[test]
fn pages_planned_on_several_http_workers_equal_a_naive_scan() {
    let dir = temp_dir();
    gen_history(dir.path(), SMALL_EVENTS, 40, 300);
    let hist = history(dir.path());
    let svc = Service::start_with(dir.path(), &["--segment-cache", "3", "--http-workers", "2"], &[]);
    let filters = standard_filters(&hist);
    std::thread::scope(|s| {
        for half in filters.chunks(filters.len().div_ceil(2)) {
            let (svc, hist) = (&svc, &hist);
            s.spawn(move || check_filters(svc, hist, half, QUICK));
        }
    });
    assert!(svc.terminate().success());
}

/// Posts `count` reprices one at a time over `products` (in turn) and reads each one's
/// timestamp back (read-your-writes), so the model knows every new event exactly. Returns the
/// acknowledged (202) events in sequence order; a 503 is tolerated and left out.
fn post_sequentially(svc: &Service, products: &[&str], count: usize, tag: usize) -> Vec<Ev> {
    assert!(count < 100_000);
    let started = Instant::now();
    let literals = ["19.990", "1e2", "12345678901234567890.123456789", "0.10", "7", "2.5E-3", "1000.000"];
    let mut acked = Vec::new();
    for i in 0..count {
        let p = products[i % products.len()];
        // Literals that a float conversion would change, and distinct numbers.
        let price = match i % 4 {
            0 => literals[(i / 4) % literals.len()].to_string(),
            1 => format!("{}.{:03}0", tag * 100_000 + i, i % 1000),
            2 => format!("{}e-2", tag * 100_000 + i + 1),
            _ => format!("{}", tag * 100_000 + i + 1),
        };
        let status = svc.reprice(p, &price);
        if status != 202 {
            assert_eq!(status, 503, "reprice {p} {price}");
            continue;
        }
        let resp = svc.get_price(p);
        assert_eq!(resp.status(), 200);
        let text = resp.text().unwrap();
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            price: &'a RawValue,
            #[serde(borrow)]
            timestamp: &'a RawValue,
        }
        let body: Body<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(body.price.get(), price, "read-your-writes of {p}");
        acked.push(Ev { product: p.to_string(), price, ts: epoch9_to_nanos(body.timestamp.get()) });
    }
    eprintln!("posted {count} reprices one at a time in {:?}", started.elapsed());
    acked
}

/// Filters over events posted after the generated history.
fn filters_over_new_events(h: &History, new: &[Ev], products: &[&str]) -> Vec<Filter> {
    let old_last = new[0].ts - 1;
    let mut filters: Vec<Filter> = products.iter().map(|p| Filter::product(p)).collect();
    let k = new.len();
    filters.extend([
        // Everything after the generated history, in both forms.
        Filter::window(Some(epoch(old_last)), None),
        Filter::window(Some(rfc(old_last, 7200)), Some(rfc(new[k - 1].ts + 1, -3 * 3600))),
        // Bounds exactly at new events.
        Filter::window(Some(epoch(new[k / 5].ts)), Some(rfc(new[4 * k / 5].ts, 7200))),
        Filter::product_window(products[0], Some(rfc(new[k / 3].ts, 7200)), Some(epoch(new[k - 2].ts))),
        Filter::product_window(products[2], Some(epoch(new[1].ts)), None),
        // Old and new together.
        Filter::window(Some(epoch(h.ts(h.events.len() - 900))), Some(epoch(new[k / 2].ts))),
        Filter::product_window(products[1], Some(epoch(h.ts(h.events.len() / 2))), None),
    ]);
    filters
}

#[test]
fn posted_events_are_paged_exactly_before_and_after_a_restart() {
    let dir = temp_dir();
    gen_history(dir.path(), SMALL_EVENTS, 40, 300);
    let old = history(dir.path());
    let svc = start(dir.path());

    // A few hundred reprices for existing products and one new product whose id needs encoding.
    let special = "shelf 7/ü&=+%";
    let (p0, p5, p17) = (product(0), product(5), product(17));
    let products = [p0.as_str(), p5.as_str(), special, p17.as_str()];
    let old_last = old.ts(old.events.len() - 1);
    // Posted in rounds; right after each round the newest events are still in the open window
    // (the catalog's tail), so these pages straddle old segments, new segments and the tail.
    let live_filters = [
        Filter::window(Some(epoch(old_last + 1)), None),
        Filter::product_window(&p0, Some(epoch(old.ts(old.events.len() - 400))), None),
        Filter::product_window(special, None, None),
        Filter::product_window(&p5, Some(rfc(old_last + 1, 7200)), None),
    ];
    let mut new: Vec<Ev> = Vec::new();
    for round in 0..4 {
        new.extend(post_sequentially(&svc, &products, 80, 1 + round));
        let mut so_far = History { events: old.events.clone(), file_starts: old.file_starts.clone() };
        so_far.events.extend(new.iter().cloned());
        check_filters(&svc, &so_far, &live_filters, LIVE);
    }
    assert!(new.len() >= 300, "{} of 320 reprices were acknowledged", new.len());
    assert!(new[0].ts > old_last, "new events come after the history");

    // Before the restart (the open window is still in the tail, the rest in new segments):
    // every total is the old naive total plus the 202s that match the filter, and every page
    // is exact.
    let mut model = History { events: old.events.clone(), file_starts: old.file_starts.clone() };
    model.events.extend(new.iter().cloned());
    // The standard filters whose answers the new events change, two that they must not
    // change, and filters over the new events.
    let standard = standard_filters(&old);
    let mut filters: Vec<Filter> = vec![standard[5].clone(), standard[10].clone()];
    filters.extend(standard.into_iter().filter(|f| f.to.is_none_or(|b| b.t > old_last)));
    filters.extend(filters_over_new_events(&old, &new, &products));
    for f in &filters {
        let want = f.expected(&old.events).len() + new.iter().filter(|e| f.matches(e)).count();
        let r = fetch(&svc, &f.page_query(1, 1));
        assert_eq!(r.total, want as u64, "{}: old naive total + matching 202s", f.describe());
    }
    check_filters(&svc, &model, &filters, MEDIUM);

    // The files hold exactly the model; after a clean restart the pages still match them.
    assert!(svc.terminate().success(), "clean SIGTERM");
    let after = history(dir.path());
    assert_rows(&after.events, &model.events.iter().collect::<Vec<_>>(), &|| "results/ after SIGTERM".to_string());
    assert!(after.file_starts.len() > old.file_starts.len(), "the new events were sealed into new segments");
    let svc = start(dir.path());
    check_filters(&svc, &after, &filters, QUICK);
    assert!(svc.terminate().success());
}

#[test]
fn pages_do_not_shift_while_a_writer_appends() {
    let dir = temp_dir();
    gen_history(dir.path(), SMALL_EVENTS, 40, 300);
    let hist = history(dir.path());
    let svc = start(dir.path());
    let target = product(3);
    let other = product(4);
    let old_target: Vec<Ev> = hist.events.iter().filter(|e| e.product == target).cloned().collect();

    // `to` fixed before the writer starts: nothing the writer adds can fall before it.
    let now = Utc::now().timestamp_nanos_opt().unwrap();
    let to = rfc(now.max(hist.ts(hist.events.len() - 1) + 1), 7200);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, api, target, other) = (Arc::clone(&stop), svc.api.clone(), target.clone(), other.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut acked_target = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = if i % 3 == 2 { &other } else { &target };
                let price = format!("{}.{:02}", 500 + i, i % 100);
                let status = http
                    .post(format!("{api}/api/reprice"))
                    .header("content-type", "application/json")
                    .body(format!("{{\"productId\":\"{p}\",\"price\":{price}}}"))
                    .send()
                    .expect("POST")
                    .status()
                    .as_u16();
                assert_eq!(status, 202, "one sequential writer is never refused");
                if p == &target {
                    acked_target.push(price);
                }
                i += 1;
            }
            acked_target
        })
    };
    // Let the writer get going (and a window or two seal while paging below).
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch(&svc, &format!("/api/query?productId={target}&from={}&pagesize=1", enc(&to.text()))).total < 5 {
        assert!(Instant::now() < deadline, "the writer's events do not show up");
        std::thread::sleep(Duration::from_millis(10));
    }

    // 1. With the fixed `to`: every page is exactly the naive list, total constant.
    let fixed = Filter::product_window(&target, None, Some(to));
    let expected = fixed.expected(&old_target);
    assert_eq!(expected.len(), old_target.len());
    for size in [7u64, 25] {
        let last = (expected.len() as u64).div_ceil(size);
        for page in 1..=last + 1 {
            let q = fixed.page_query(page, size);
            let r = fetch(&svc, &q);
            assert_eq!(r.total, expected.len() as u64, "GET {q} while writing: X-Total-Count");
            let lo = ((page - 1) * size).min(expected.len() as u64) as usize;
            let hi = (page * size).min(expected.len() as u64) as usize;
            assert_rows(&r.rows, &expected[lo..hi], &|| format!("GET {q} while writing"));
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    // 2. Without `to`: the total only grows, and consecutive pages neither repeat nor skip.
    // Keep paging into the live end for a while (the writer keeps adding to it).
    let open = Filter::product(&target);
    let mut got: Vec<Ev> = Vec::new();
    let mut partials: Vec<(usize, Vec<Ev>)> = Vec::new();
    let mut last_total = 0u64;
    let size = 7u64;
    let mut page = 1u64;
    let started = Instant::now();
    let initial = fetch(&svc, &open.page_query(1, size)).total;
    assert!(initial as usize > old_target.len());
    while started.elapsed() < Duration::from_millis(2500) || (got.len() as u64) < initial {
        assert!(started.elapsed() < Duration::from_secs(30), "paging never finished");
        let q = open.page_query(page, size);
        let r = fetch(&svc, &q);
        assert!(r.total >= last_total, "GET {q}: X-Total-Count went from {last_total} down to {}", r.total);
        last_total = r.total;
        if r.rows.len() as u64 == size {
            got.extend(r.rows);
            page += 1;
            std::thread::sleep(Duration::from_millis(2));
        } else {
            // At the live end: remember what it showed, wait for the writer, read it again.
            partials.push((got.len(), r.rows));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let acked_target = writer.join().expect("writer");

    // Every product page now: the old history, then the writer's prices in order.
    let mut full: Vec<Ev> = Vec::new();
    let mut p = 1;
    let total = loop {
        let r = fetch(&svc, &open.page_query(p, 1000));
        let done = r.rows.len() < 1000;
        full.extend(r.rows);
        if done {
            break r.total;
        }
        p += 1;
    };
    assert_eq!(total as usize, full.len());
    assert_eq!(full.len(), old_target.len() + acked_target.len(), "old history + 202s of the writer");
    assert_rows(&full[..old_target.len()], &old_target.iter().collect::<Vec<_>>(), &|| "old history of the product".to_string());
    let prices: Vec<&str> = full[old_target.len()..].iter().map(|e| e.price.as_str()).collect();
    assert_eq!(prices, acked_target.iter().map(String::as_str).collect::<Vec<_>>(), "the writer's events, in order");
    assert!(got.len() as u64 >= initial, "paged {} of the {initial} events that existed when paging started", got.len());
    assert_rows(&got, &full[..got.len()].iter().collect::<Vec<_>>(), &|| "pages read while writing vs the final history".to_string());
    for (at, rows) in &partials {
        assert!(at + rows.len() <= full.len(), "a short page at row {at} showed rows that are not in the final history: {rows:?}");
        assert_rows(rows, &full[*at..*at + rows.len()].iter().collect::<Vec<_>>(), &|| format!("a short page at row {at} while writing"));
    }

    // And the files agree with what the API returned, timestamps included.
    assert!(svc.terminate().success());
    let files = history(dir.path());
    let in_files: Vec<&Ev> = files.events.iter().filter(|e| e.product == target).collect();
    assert_rows(&full, &in_files, &|| "the product's history vs results/".to_string());
}

#[test]
fn a_missing_corrupt_truncated_or_stale_checkpoint_gives_the_same_answers() {
    let dir = temp_dir();
    gen_history(dir.path(), SMALL_EVENTS, 40, 300);
    let checkpoint = dir.path().join("checkpoint.bin");
    let svc = start_default_cache(dir.path());
    let (p0, p9) = (product(0), product(9));
    let new = post_sequentially(&svc, &[p0.as_str(), p9.as_str(), "fresh"], 60, 2);
    assert!(svc.terminate().success());
    assert!(checkpoint.exists(), "a clean SIGTERM leaves DATA/checkpoint.bin");
    let stale = std::fs::read(&checkpoint).unwrap();
    let hist = history(dir.path());
    let mut filters = standard_filters(&hist);
    filters.extend(filters_over_new_events(&hist, &new, &[p0.as_str(), p9.as_str(), "fresh"]));

    let check = |case: &str, hist: &History| {
        let svc = start_default_cache(dir.path());
        eprintln!("checkpoint case: {case}");
        // Last-known prices are restored too.
        let mut last: HashMap<&str, &Ev> = HashMap::new();
        for e in &hist.events {
            last.insert(&e.product, e);
        }
        for (p, e) in &last {
            assert_eq!(svc.price_of(p).as_deref(), Some(e.price.as_str()), "{case}: last price of {p}");
        }
        check_filters(&svc, hist, &filters, QUICK);
        assert!(svc.terminate().success(), "{case}: clean SIGTERM");
        assert!(checkpoint.exists(), "{case}: checkpoint.bin is rewritten at shutdown");
    };

    std::fs::remove_file(&checkpoint).unwrap();
    check("deleted", &hist);

    let mut bytes = std::fs::read(&checkpoint).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&checkpoint, &bytes).unwrap();
    check("one byte flipped in the middle", &hist);

    let bytes = std::fs::read(&checkpoint).unwrap();
    std::fs::write(&checkpoint, &bytes[..bytes.len() / 2]).unwrap();
    check("truncated to half", &hist);

    std::fs::write(&checkpoint, b"").unwrap();
    check("empty", &hist);

    // Stale: a checkpoint from before more events were sealed (as after a kill -9 between
    // checkpoints) covers a prefix of results/; the rest is replayed.
    let svc = start_default_cache(dir.path());
    let more = post_sequentially(&svc, &[p9.as_str(), "fresh", "later"], 60, 3);
    assert!(!more.is_empty());
    assert!(svc.terminate().success());
    std::fs::write(&checkpoint, &stale).unwrap();
    let hist = history(dir.path());
    assert_eq!(hist.events.len(), SMALL_EVENTS + new.len() + more.len());
    check("stale (covers a prefix of results/)", &hist);
}
