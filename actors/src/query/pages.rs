//! Planning and reading one page of history, shared by the QueryPlanner (pages whose segments
//! are all in memory) and the SegmentReader threads (pages that must open segment files).

use std::collections::HashMap;
use std::fs;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use lru::LruCache;

use super::catalog::Catalog;
use super::{Page, QueryError, RunQuery};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::segment::format::parse_segment;

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

/// Parsed segments shared by the planner and the reader threads, least recently used evicted
/// first.
pub struct SegmentCache {
    entries: Mutex<LruCache<usize, Arc<LoadedSegment>>>,
}

impl SegmentCache {
    /// A cache holding up to `capacity` segments.
    pub fn new(capacity: usize) -> SegmentCache {
        SegmentCache { entries: Mutex::new(LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("max(1)"))) }
    }

    fn get(&self, index: usize) -> Option<Arc<LoadedSegment>> {
        self.entries.lock().expect("cache lock poisoned").get(&index).cloned()
    }

    fn put(&self, index: usize, segment: Arc<LoadedSegment>) {
        self.entries.lock().expect("cache lock poisoned").put(index, segment);
    }
}

/// Whether planning a page may open segment files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Only segments already parsed in the cache: a page that needs a file is given up (the
    /// QueryPlanner, which runs on the HTTP thread and must never wait for a disk).
    CachedOnly,
    /// Open and parse whatever the page needs (the SegmentReader threads).
    FromDisk,
}

/// What planning a page cost, reported on the query's span.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageCost {
    /// Segments the plan touched (cached or not).
    pub planned: u64,
    /// Segment files read from disk.
    pub opened: u64,
}

/// The result of [`PagePlanner::run`]: a page, or the news that it needs a segment file and
/// reads were not allowed.
pub type Planned = Option<(Page, PageCost)>;

/// Gives up planning (returns `Ok(None)`) when a segment is not cached and reads are off.
macro_rules! loaded {
    ($e:expr) => {
        match $e? {
            Some(segment) => segment,
            None => return Ok(None),
        }
    };
}

/// Plans pages from the [`Catalog`] and reads them from cached or opened segments.
pub struct PagePlanner {
    catalog: Arc<RwLock<Catalog>>,
    cache: Arc<SegmentCache>,
    results: PathBuf,
    metrics: Metrics,
}

/// One page's planning state: how it may read and what it has cost so far.
struct Plan<'a> {
    pages: &'a PagePlanner,
    reads: Reads,
    cost: PageCost,
}

impl PagePlanner {
    /// A planner over the shared catalog and segment cache; files are read from `results`.
    pub fn new(catalog: Arc<RwLock<Catalog>>, cache: Arc<SegmentCache>, results: PathBuf, metrics: Metrics) -> PagePlanner {
        PagePlanner { catalog, cache, results, metrics }
    }

    /// Plans and reads one page; `Ok(None)` if it needs a segment file and `reads` is
    /// [`Reads::CachedOnly`].
    pub fn run(&self, q: &RunQuery, reads: Reads) -> Result<Planned, QueryError> {
        Plan { pages: self, reads, cost: PageCost::default() }.run(q)
    }

    fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().expect("catalog lock poisoned")
    }
}

impl Plan<'_> {
    fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.pages.catalog()
    }

    fn load(&mut self, index: usize) -> Result<Option<Arc<LoadedSegment>>, QueryError> {
        self.cost.planned += 1;
        if let Some(hit) = self.pages.cache.get(index) {
            return Ok(Some(hit));
        }
        if self.reads == Reads::CachedOnly {
            return Ok(None);
        }
        let name = self.catalog().segment(index).name.clone();
        let file = name.file_name();
        let fail = |reason: String| QueryError::Segment { file: file.clone(), reason };
        let bytes = fs::read(self.pages.results.join(&file)).map_err(|e| fail(e.to_string()))?;
        let segment = Arc::new(LoadedSegment::new(parse_segment(&bytes, name.first_seq).map_err(|e| fail(e.to_string()))?));
        self.cost.opened += 1;
        self.pages.metrics.segments_opened.inc();
        self.pages.cache.put(index, Arc::clone(&segment));
        Ok(Some(segment))
    }

    /// Sequence number of the first event at or after `t` among the first `n` segments.
    fn seq_at(&mut self, t: i64, n: usize) -> Result<Option<u64>, QueryError> {
        let (i, end) = {
            let c = self.catalog();
            (c.first_segment_reaching(t, n), end_seq(&c, n))
        };
        if i == n {
            return Ok(Some(end));
        }
        let segment = loaded!(self.load(i));
        let events = &segment.events;
        let first = events.first().map_or(end, |e| e.seq);
        Ok(Some(first + events.partition_point(|e| e.timestamp < t) as u64))
    }

    /// Events with sequence numbers in `start..end` from the first `n` segments.
    fn fetch_seq_range(&mut self, mut start: u64, end: u64, n: usize) -> Result<Option<Vec<Event>>, QueryError> {
        let mut rows = Vec::new();
        while start < end {
            let Some(i) = self.catalog().segment_holding(start, n) else { break };
            let segment = loaded!(self.load(i));
            let events = &segment.events;
            let first = events.first().map_or(start, |e| e.seq);
            let from = start.saturating_sub(first) as usize;
            let to = ((end - first) as usize).min(events.len());
            rows.extend_from_slice(&events[from..to]);
            start = first + events.len() as u64;
        }
        Ok(Some(rows))
    }

    /// How many of the product's events among its first `len` runs come before `t`.
    fn product_pos_at(&mut self, product: &str, t: i64, len: usize, count: u64) -> Result<Option<u64>, QueryError> {
        let Some(run) = self.catalog().product_run_reaching(product, t, len) else { return Ok(Some(count)) };
        let segment = loaded!(self.load(run.segment as usize));
        let before = segment.of_product(product).take_while(|e| e.timestamp < t).count();
        Ok(Some(run.before + before as u64))
    }

    /// The product's events at positions `start..end` (0-based) among its first `len` runs.
    fn fetch_product_range(&mut self, product: &str, mut start: u64, end: u64, len: usize) -> Result<Option<Vec<Event>>, QueryError> {
        let mut rows = Vec::new();
        while start < end {
            let Some(run) = self.catalog().product_run_holding(product, start, len) else { break };
            let segment = loaded!(self.load(run.segment as usize));
            let skip = (start - run.before) as usize;
            let take = (end - start).min(u64::from(run.count) - skip as u64) as usize;
            rows.extend(segment.of_product(product).skip(skip).take(take).cloned());
            start = run.before + u64::from(run.count);
        }
        Ok(Some(rows))
    }

    fn run(mut self, q: &RunQuery) -> Result<Planned, QueryError> {
        let offset = (q.page_number - 1).saturating_mul(q.page_size);
        // The tail is taken with the segment count, so the two agree; only the events up to the
        // end of the page can appear on it.
        let tail_limit = offset.saturating_add(q.page_size).min(usize::MAX as u64) as usize;
        let (n, tail_total, tail) = {
            let c = self.catalog();
            let (total, rows) = c.tail_matching(&q.filter, tail_limit);
            (c.segment_count(), total, rows)
        };
        let (lo, hi) = match q.filter.product_id.as_deref() {
            None => {
                let (first, end) = {
                    let c = self.catalog();
                    (c.first_seq(), end_seq(&c, n))
                };
                let lo = match q.filter.from {
                    Some(t) => loaded!(self.seq_at(t, n)),
                    None => first,
                };
                let hi = match q.filter.to {
                    Some(t) => loaded!(self.seq_at(t, n)),
                    None => end,
                };
                (lo, hi.max(lo))
            }
            Some(p) => {
                let (len, count) = self.catalog().product_extent(p, n);
                let lo = match q.filter.from {
                    Some(t) => loaded!(self.product_pos_at(p, t, len, count)),
                    None => 0,
                };
                let hi = match q.filter.to {
                    Some(t) => loaded!(self.product_pos_at(p, t, len, count)),
                    None => count,
                };
                (lo, hi.max(lo))
            }
        };
        let sealed = hi - lo;
        let total = sealed + tail_total;
        let mut rows = Vec::new();
        if offset < sealed {
            let start = lo + offset;
            let end = (start + q.page_size).min(hi);
            rows = match q.filter.product_id.as_deref() {
                None => loaded!(self.fetch_seq_range(start, end, n)),
                Some(p) => {
                    let len = self.catalog().product_extent(p, n).0;
                    loaded!(self.fetch_product_range(p, start, end, len))
                }
            };
        }
        if offset.saturating_add(q.page_size) > sealed && (rows.len() as u64) < q.page_size {
            let skip = offset.saturating_sub(sealed) as usize;
            let want = q.page_size as usize - rows.len();
            rows.extend(tail.into_iter().skip(skip).take(want));
        }
        Ok(Some((Page { total, rows }, self.cost)))
    }
}

fn end_seq(c: &Catalog, n: usize) -> u64 {
    n.checked_sub(1).map_or(c.first_seq(), |l| c.segment(l).name.end_seq())
}
