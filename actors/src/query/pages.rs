//! Planning and reading one page of history, shared by the QueryPlanner (pages whose segments
//! are all in memory) and the SegmentReader threads (pages that must open segment files).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use lru::LruCache;
use prometheus::IntGauge;

use super::catalog::Catalog;
use super::{Page, QueryError, RunQuery};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::segment::format::{index_records, parse_record_lines, parse_segment, RecordOffsets, SegmentName};

/// A parsed segment with the positions of each product's records, so that a product's page
/// inside a segment is found without scanning the segment.
pub struct LoadedSegment {
    /// The records in sequence order.
    pub events: Vec<Event>,
    by_product: HashMap<Arc<str>, Vec<u32>>,
    /// Estimated memory it takes (what the cache's byte budget counts).
    bytes: u64,
}

/// Estimated memory of one parsed record beyond its share of the file's bytes: the `Event`, its
/// three shared strings' headers and allocations, and its place in the per-product index.
const RECORD_OVERHEAD: u64 = 160;

impl LoadedSegment {
    fn new(events: Vec<Event>, file_bytes: u64) -> LoadedSegment {
        let mut by_product: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            by_product.entry(Arc::clone(&e.product_id)).or_default().push(i as u32);
        }
        let bytes = file_bytes + events.len() as u64 * RECORD_OVERHEAD;
        LoadedSegment { events, by_product, bytes }
    }

    /// The product's records in this segment, in order.
    fn of_product<'a>(&'a self, product: &str) -> impl Iterator<Item = &'a Event> + 'a {
        self.by_product.get(product).into_iter().flatten().map(|&i| &self.events[i as usize])
    }
}

/// What a cache entry costs in memory, for the cache's byte budget.
trait Weighed {
    fn bytes(&self) -> u64;
}

impl Weighed for LoadedSegment {
    fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// An open segment file with its record offsets: a page of it is one `pread` of its lines.
struct SegmentFile {
    file: File,
    offsets: RecordOffsets,
}

impl Weighed for SegmentFile {
    fn bytes(&self) -> u64 {
        self.offsets.bytes()
    }
}

/// An LRU map from segment index to `V`, bounded in entries and in estimated bytes (the most
/// recently put entry is always kept, so that the page that needed it can be answered).
struct WeighedLru<V> {
    lru: LruCache<usize, Arc<V>>,
    bytes: u64,
    max_bytes: u64,
}

impl<V: Weighed> WeighedLru<V> {
    fn new(capacity: usize, max_bytes: u64) -> WeighedLru<V> {
        let lru = LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("max(1)"));
        WeighedLru { lru, bytes: 0, max_bytes }
    }

    fn get(&mut self, index: usize) -> Option<Arc<V>> {
        self.lru.get(&index).cloned()
    }

    fn put(&mut self, index: usize, value: Arc<V>) {
        self.bytes += value.bytes();
        if let Some((_, evicted)) = self.lru.push(index, value) {
            self.bytes -= evicted.bytes();
        }
        while self.bytes > self.max_bytes && self.lru.len() > 1 {
            let (_, evicted) = self.lru.pop_lru().expect("len > 1");
            self.bytes -= evicted.bytes();
        }
    }
}

/// Share of the cache's byte budget that the record-offset indexes may take, besides the
/// parsed segments' (1/16: an index is about 1/1000 of its segment).
const OFFSETS_BUDGET_DIVISOR: u64 = 16;

/// Segment data shared by the planner and the reader threads, least recently used evicted
/// first: parsed segments, and open segment files with their record offsets, through which
/// unfiltered pages read only their own lines of a file. Each kind is bounded in entries
/// (`capacity`: also the bound on open files) and in estimated bytes.
pub struct SegmentCache {
    parsed: Mutex<WeighedLru<LoadedSegment>>,
    files: Mutex<WeighedLru<SegmentFile>>,
    /// Reports [`SegmentCache::bytes`] after every insert.
    bytes_gauge: IntGauge,
}

impl SegmentCache {
    /// A cache holding up to `capacity` parsed segments and about `max_bytes` of them (and
    /// up to `capacity` open files), its size reported in `bytes_gauge`.
    pub fn new(capacity: usize, max_bytes: u64, bytes_gauge: IntGauge) -> SegmentCache {
        let offsets_bytes = (max_bytes / OFFSETS_BUDGET_DIVISOR).max(1);
        SegmentCache {
            parsed: Mutex::new(WeighedLru::new(capacity, max_bytes)),
            files: Mutex::new(WeighedLru::new(capacity, offsets_bytes)),
            bytes_gauge,
        }
    }

    fn get(&self, index: usize) -> Option<Arc<LoadedSegment>> {
        self.parsed.lock().expect("cache lock poisoned").get(index)
    }

    fn put(&self, index: usize, segment: Arc<LoadedSegment>) {
        self.parsed.lock().expect("cache lock poisoned").put(index, segment);
        self.bytes_gauge.set(self.bytes() as i64);
    }

    fn file(&self, index: usize) -> Option<Arc<SegmentFile>> {
        self.files.lock().expect("cache lock poisoned").get(index)
    }

    fn put_file(&self, index: usize, file: Arc<SegmentFile>) {
        self.files.lock().expect("cache lock poisoned").put(index, file);
        self.bytes_gauge.set(self.bytes() as i64);
    }

    /// Estimated bytes of the cached parsed segments and offset indexes.
    pub fn bytes(&self) -> u64 {
        self.parsed.lock().expect("cache lock poisoned").bytes + self.files.lock().expect("cache lock poisoned").bytes
    }
}

/// Whether planning a page may wait for a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Only what is in memory: parsed segments, and lines of already open segment files that
    /// are in the kernel's page cache (read with `RWF_NOWAIT`, which fails rather than wait for
    /// the disk). A page that needs anything else is given up: the QueryPlanner runs on the
    /// HTTP thread and must never wait for a disk.
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
        let events = parse_segment(&bytes, name.first_seq).map_err(|e| fail(e.to_string()))?;
        let segment = Arc::new(LoadedSegment::new(events, bytes.len() as u64));
        self.count_opened();
        self.pages.cache.put(index, Arc::clone(&segment));
        Ok(Some(segment))
    }

    /// A segment file was read from disk (or may have been: a read that could wait for it).
    fn count_opened(&mut self) {
        self.cost.opened += 1;
        self.pages.metrics.segments_opened.inc();
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
            let name = self.catalog().segment(i).name.clone();
            let from = (start - name.first_seq) as usize;
            let to = ((end - name.first_seq) as usize).min(name.count as usize);
            rows.extend(loaded!(self.records_of(i, &name, from, to)));
            start = name.end_seq();
        }
        Ok(Some(rows))
    }

    /// Records `from..to` (positions in the file) of segment `index`: from its parsed copy if
    /// that is cached, else (reads allowed) only their lines of the file, found by its record
    /// offsets (indexed on the first read of the file, then cached).
    fn records_of(&mut self, index: usize, name: &SegmentName, from: usize, to: usize) -> Result<Option<Vec<Event>>, QueryError> {
        self.cost.planned += 1;
        if let Some(segment) = self.pages.cache.get(index) {
            return Ok(Some(segment.events[from..to].to_vec()));
        }
        let fail = |reason: String| QueryError::Segment { file: name.file_name(), reason };
        // The file's index (opening and indexing it on the first read); a file just read whole
        // is parsed from those bytes.
        let (segment, whole_file) = match (self.pages.cache.file(index), self.reads) {
            (Some(segment), _) => (segment, None),
            (None, Reads::CachedOnly) => return Ok(None),
            (None, Reads::FromDisk) => {
                let mut file = File::open(self.pages.results.join(name.file_name())).map_err(|e| fail(e.to_string()))?;
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
                let offsets = index_records(&bytes).map_err(|e| fail(e.to_string()))?;
                if offsets.count() != name.count as usize {
                    return Err(fail(format!("{} records where its name says {}", offsets.count(), name.count)));
                }
                let segment = Arc::new(SegmentFile { file, offsets });
                self.pages.cache.put_file(index, Arc::clone(&segment));
                (segment, Some(bytes))
            }
        };
        let (range, skip) = segment.offsets.byte_range(from, to);
        let chunk = match whole_file {
            Some(mut bytes) => {
                bytes.truncate(range.end as usize);
                bytes.drain(..range.start as usize);
                self.count_opened();
                bytes
            }
            None => {
                let mut chunk = vec![0; (range.end - range.start) as usize];
                if self.reads == Reads::CachedOnly {
                    if !read_from_page_cache(&segment.file, &mut chunk, range.start) {
                        return Ok(None);
                    }
                } else {
                    segment.file.read_exact_at(&mut chunk, range.start).map_err(|e| fail(e.to_string()))?;
                    self.count_opened();
                }
                chunk
            }
        };
        let first_seq = name.first_seq + (from - skip) as u64;
        let events = parse_record_lines(&chunk, first_seq, skip, to - from).map_err(|e| fail(e.to_string()))?;
        Ok(Some(events))
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
        // The tail is taken with the segment count, so the two agree. Without time bounds the
        // sealed events matching the filter are counted here too, so only the tail events on
        // the page are taken; with them, every tail event up to the end of the page may be.
        let (n, tail_total, tail_skipped, tail) = {
            let c = self.catalog();
            let n = c.segment_count();
            let (skip, limit) = if q.filter.from.is_none() && q.filter.to.is_none() {
                let sealed = match q.filter.product_id.as_deref() {
                    None => end_seq(&c, n) - c.first_seq(),
                    Some(p) => c.product_extent(p, n).1,
                };
                (offset.saturating_sub(sealed), q.page_size)
            } else {
                (0, offset.saturating_add(q.page_size))
            };
            let (skip, limit) = (skip.min(usize::MAX as u64) as usize, limit.min(usize::MAX as u64) as usize);
            let (total, rows) = c.tail_matching(&q.filter, skip, limit);
            (n, total, skip, rows)
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
            let skip = offset.saturating_sub(sealed) as usize - tail_skipped;
            let want = q.page_size as usize - rows.len();
            rows.extend(tail.into_iter().skip(skip).take(want));
        }
        Ok(Some((Page { total, rows }, self.cost)))
    }
}

/// Fills `buf` from `file` at `offset` only if those bytes are in the page cache: `preadv2` with
/// `RWF_NOWAIT` returns `EAGAIN` (or a short read) instead of waiting for the disk. `false`
/// means "read it on a thread that may wait" (also where the kernel lacks `RWF_NOWAIT`).
fn read_from_page_cache(file: &File, buf: &mut [u8], offset: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: `iov` describes `buf`, which outlives the call; the fd is open for reading.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset as libc::off_t, libc::RWF_NOWAIT) };
        n >= 0 && n as usize == buf.len()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, buf, offset);
        false
    }
}

fn end_seq(c: &Catalog, n: usize) -> u64 {
    n.checked_sub(1).map_or(c.first_seq(), |l| c.segment(l).name.end_seq())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::Price;

    fn segment(records: usize) -> Arc<LoadedSegment> {
        let events = (0..records)
            .map(|i| Event {
                seq: i as u64 + 1,
                timestamp: i as i64,
                product_id: Arc::from("p"),
                price: Price::parse("1").unwrap(),
                previous_price: None,
            })
            .collect();
        Arc::new(LoadedSegment::new(events, records as u64 * 100))
    }

    #[test]
    fn the_cache_is_bounded_by_bytes_as_well_as_by_count() {
        let one = segment(1000).bytes;
        let cache = SegmentCache::new(100, 3 * one, IntGauge::new("g", "g").unwrap());
        for i in 0..10 {
            cache.put(i, segment(1000));
            assert!(cache.bytes() <= 3 * one, "{} bytes after {} segments", cache.bytes(), i + 1);
        }
        assert_eq!(cache.bytes(), 3 * one);
        assert!(cache.get(9).is_some() && cache.get(7).is_some() && cache.get(6).is_none());
        // A segment larger than the whole budget is still kept alone (its page needs it).
        cache.put(10, segment(5000));
        assert!(cache.get(10).is_some() && cache.get(9).is_none());
        assert_eq!(cache.bytes(), segment(5000).bytes);
        // Re-inserting a key does not count it twice.
        cache.put(10, segment(5000));
        assert_eq!(cache.bytes(), segment(5000).bytes);
        // The count bound still holds.
        let small = SegmentCache::new(2, u64::MAX, IntGauge::new("g", "g").unwrap());
        for i in 0..5 {
            small.put(i, segment(10));
        }
        assert_eq!(small.bytes(), 2 * segment(10).bytes);
    }
}
