//! QueryPlanner: answers paged, filtered history queries (R4).
//!
//! A page is planned from the [`catalog::Catalog`] (segment time ranges, first sequence
//! numbers, per-product runs) with binary searches; only the segments that hold the page, plus
//! at most one boundary segment per time bound, are opened. Events not yet sealed come from the
//! catalog's in-memory tail. Planners run on their own threads (a `SyncArbiter`), so reading
//! files never stalls the write path, and they take the catalog lock only for lookups.

pub mod catalog;

use std::collections::HashMap;
use std::fs;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use actix::prelude::*;
use lru::LruCache;

use crate::event::Event;
use crate::hop_span;
use crate::metrics::Metrics;
use crate::segment::format::parse_segment;
use crate::telemetry::Traced;
use catalog::{Catalog, Filter};

/// Fetch one page of the events that pass a filter, in sequence order.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<Page, QueryError>")]
pub struct RunQuery {
    /// Which events.
    pub filter: Filter,
    /// 1-based page number.
    pub page_number: u64,
    /// Events per page.
    pub page_size: u64,
}

/// One page and the size of the whole result.
#[derive(Debug, Default)]
pub struct Page {
    /// Events passing the filter (`X-Total-Count`).
    pub total: u64,
    /// The page's events.
    pub rows: Vec<Event>,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A sealed segment could not be read.
    #[error("cannot read segment {file}: {reason}")]
    Segment {
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
}

/// A parsed segment with the positions of each product's records, so that a product's page
/// inside a segment is found without scanning the segment.
pub struct LoadedSegment {
    /// The records in sequence order.
    pub events: Vec<Event>,
    by_product: HashMap<Arc<str>, Vec<u32>>,
}

impl LoadedSegment {
    fn new(events: Vec<Event>) -> LoadedSegment {
        let mut by_product: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            by_product.entry(Arc::clone(&e.product_id)).or_default().push(i as u32);
        }
        LoadedSegment { events, by_product }
    }

    /// The product's records in this segment, in order.
    fn of_product<'a>(&'a self, product: &str) -> impl Iterator<Item = &'a Event> + 'a {
        self.by_product.get(product).into_iter().flatten().map(|&i| &self.events[i as usize])
    }
}

/// Parsed segments shared by all planner threads, least recently used evicted first.
pub struct SegmentCache {
    entries: Mutex<LruCache<usize, Arc<LoadedSegment>>>,
}

impl SegmentCache {
    /// A cache holding up to `capacity` segments.
    pub fn new(capacity: usize) -> SegmentCache {
        SegmentCache { entries: Mutex::new(LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("max(1)"))) }
    }
}

/// The planner actor (one per planner thread).
pub struct QueryPlanner {
    catalog: Arc<RwLock<Catalog>>,
    cache: Arc<SegmentCache>,
    results: PathBuf,
    metrics: Metrics,
}

impl Actor for QueryPlanner {
    type Context = SyncContext<Self>;

    /// Planner threads run at a lower priority than the write path: under contention for the
    /// cores, long queries slow down before reprices do.
    fn started(&mut self, _: &mut Self::Context) {
        #[cfg(target_os = "linux")]
        // SAFETY: setpriority on this thread's own id only changes its scheduling weight.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
        }
    }
}

/// Per-query counters reported on its span.
#[derive(Default)]
struct Cost {
    planned: u64,
    opened: u64,
}

impl QueryPlanner {
    /// A planner over the shared catalog and cache.
    pub fn new(catalog: Arc<RwLock<Catalog>>, cache: Arc<SegmentCache>, results: PathBuf, metrics: Metrics) -> QueryPlanner {
        QueryPlanner { catalog, cache, results, metrics }
    }

    fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().expect("catalog lock poisoned")
    }

    fn load(&self, index: usize, cost: &mut Cost) -> Result<Arc<LoadedSegment>, QueryError> {
        cost.planned += 1;
        if let Some(hit) = self.cache.entries.lock().expect("cache lock poisoned").get(&index) {
            return Ok(Arc::clone(hit));
        }
        let name = self.catalog().segment(index).name.clone();
        let file = name.file_name();
        let fail = |reason: String| QueryError::Segment { file: file.clone(), reason };
        let bytes = fs::read(self.results.join(&file)).map_err(|e| fail(e.to_string()))?;
        let segment = Arc::new(LoadedSegment::new(parse_segment(&bytes, name.first_seq).map_err(|e| fail(e.to_string()))?));
        cost.opened += 1;
        self.metrics.segments_opened.inc();
        self.cache.entries.lock().expect("cache lock poisoned").put(index, Arc::clone(&segment));
        Ok(segment)
    }

    /// Sequence number of the first event at or after `t` among the first `n` segments.
    fn seq_at(&self, t: i64, n: usize, cost: &mut Cost) -> Result<u64, QueryError> {
        let (i, end) = {
            let c = self.catalog();
            (c.first_segment_reaching(t, n), end_seq(&c, n))
        };
        if i == n {
            return Ok(end);
        }
        let events = &self.load(i, cost)?.events;
        let first = events.first().map_or(end, |e| e.seq);
        Ok(first + events.partition_point(|e| e.timestamp < t) as u64)
    }

    /// Events with sequence numbers in `start..end` from the first `n` segments.
    fn fetch_seq_range(&self, mut start: u64, end: u64, n: usize, cost: &mut Cost) -> Result<Vec<Event>, QueryError> {
        let mut rows = Vec::new();
        while start < end {
            let Some(i) = self.catalog().segment_holding(start, n) else { break };
            let segment = self.load(i, cost)?;
            let events = &segment.events;
            let first = events.first().map_or(start, |e| e.seq);
            let from = start.saturating_sub(first) as usize;
            let to = ((end - first) as usize).min(events.len());
            rows.extend_from_slice(&events[from..to]);
            start = first + events.len() as u64;
        }
        Ok(rows)
    }

    /// How many of the product's events among its first `len` runs come before `t`.
    fn product_pos_at(&self, product: &str, t: i64, len: usize, count: u64, cost: &mut Cost) -> Result<u64, QueryError> {
        let Some(run) = self.catalog().product_run_reaching(product, t, len) else { return Ok(count) };
        let segment = self.load(run.segment as usize, cost)?;
        let before = segment.of_product(product).take_while(|e| e.timestamp < t).count();
        Ok(run.before + before as u64)
    }

    /// The product's events at positions `start..end` (0-based) among its first `len` runs.
    fn fetch_product_range(&self, product: &str, mut start: u64, end: u64, len: usize, cost: &mut Cost) -> Result<Vec<Event>, QueryError> {
        let mut rows = Vec::new();
        while start < end {
            let Some(run) = self.catalog().product_run_holding(product, start, len) else { break };
            let segment = self.load(run.segment as usize, cost)?;
            let skip = (start - run.before) as usize;
            let take = (end - start).min(u64::from(run.count) - skip as u64) as usize;
            rows.extend(segment.of_product(product).skip(skip).take(take).cloned());
            start = run.before + u64::from(run.count);
        }
        Ok(rows)
    }

    /// Plans and reads one page.
    pub fn run(&self, q: &RunQuery) -> Result<(Page, u64, u64), QueryError> {
        let mut cost = Cost::default();
        let (n, tail) = {
            let c = self.catalog();
            (c.segment_count(), c.tail_matching(&q.filter))
        };
        let (lo, hi) = match q.filter.product_id.as_deref() {
            None => {
                let (first, end) = {
                    let c = self.catalog();
                    (c.first_seq(), end_seq(&c, n))
                };
                let lo = match q.filter.from {
                    Some(t) => self.seq_at(t, n, &mut cost)?,
                    None => first,
                };
                let hi = match q.filter.to {
                    Some(t) => self.seq_at(t, n, &mut cost)?,
                    None => end,
                };
                (lo, hi.max(lo))
            }
            Some(p) => {
                let (len, count) = self.catalog().product_extent(p, n);
                let lo = match q.filter.from {
                    Some(t) => self.product_pos_at(p, t, len, count, &mut cost)?,
                    None => 0,
                };
                let hi = match q.filter.to {
                    Some(t) => self.product_pos_at(p, t, len, count, &mut cost)?,
                    None => count,
                };
                (lo, hi.max(lo))
            }
        };
        let sealed = hi - lo;
        let total = sealed + tail.len() as u64;
        let offset = (q.page_number - 1).saturating_mul(q.page_size);
        let mut rows = Vec::new();
        if offset < sealed {
            let start = lo + offset;
            let end = (start + q.page_size).min(hi);
            rows = match q.filter.product_id.as_deref() {
                None => {
                    self.fetch_seq_range(start, end, n, &mut cost)?
                }
                Some(p) => {
                    let len = self.catalog().product_extent(p, n).0;
                    self.fetch_product_range(p, start, end, len, &mut cost)?
                }
            };
        }
        if offset.saturating_add(q.page_size) > sealed && (rows.len() as u64) < q.page_size {
            let skip = offset.saturating_sub(sealed) as usize;
            let want = q.page_size as usize - rows.len();
            rows.extend(tail.into_iter().skip(skip).take(want));
        }
        Ok((Page { total, rows }, cost.planned, cost.opened))
    }
}

fn end_seq(c: &Catalog, n: usize) -> u64 {
    n.checked_sub(1).map_or(c.first_seq(), |l| c.segment(l).name.end_seq())
}

impl Handler<Traced<RunQuery>> for QueryPlanner {
    type Result = Result<Page, QueryError>;

    fn handle(&mut self, traced: Traced<RunQuery>, _: &mut Self::Context) -> Self::Result {
        let span = hop_span!(
            traced,
            "QueryPlanner handle RunQuery",
            query.segments_planned = tracing::field::Empty,
            query.segments_opened = tracing::field::Empty,
            query.total = tracing::field::Empty
        );
        let _entered = span.enter();
        let (page, planned, opened) = self.run(&traced.msg)?;
        span.record("query.segments_planned", planned);
        span.record("query.segments_opened", opened);
        span.record("query.total", page.total);
        Ok(page)
    }
}
