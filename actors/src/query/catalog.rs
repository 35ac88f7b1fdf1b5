//! Segment metadata kept in memory for the QueryPlanner (R4, R7).
//!
//! Sealed segments are immutable and only ever appended, so an index into `segments` or into a
//! product's run list stays valid forever. Planning a page is a few binary searches here plus
//! opening only the segments that hold the page.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::product::ProductMap;
use crate::event::Event;
use crate::segment::format::SegmentName;
use crate::time::Nanos;

/// What the planner knows about a sealed segment without opening it.
#[derive(Clone, Debug)]
pub struct SegmentMeta {
    /// Window start, first sequence number and record count (from the file name).
    pub name: SegmentName,
    /// Timestamp of the first record.
    pub first_ts: Nanos,
    /// Timestamp of the last record.
    pub last_ts: Nanos,
    /// Size of the file in bytes (lets start-up notice a file damaged after it was sealed).
    pub bytes: u64,
}

/// A product's records in one segment: `count` of them, after `before` in earlier segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProductRun {
    /// Index of the segment.
    pub segment: u32,
    /// Records of the product in that segment.
    pub count: u32,
    /// Records of the product in all earlier segments.
    pub before: u64,
}

/// A product's runs. Most products of a large catalogue sit in one segment or few, so the
/// first run is stored inline (no heap allocation per product).
pub type Runs = SmallVec<[ProductRun; 1]>;

/// A segment about to enter the catalog with its records counted per product: counted before
/// the catalog's write lock is taken, so that queries wait only for the insert.
pub struct SealedSegment {
    meta: SegmentMeta,
    counts: Vec<(Arc<str>, u32)>,
}

impl SealedSegment {
    /// Counts `events` (the segment's records in order) per product.
    pub fn new(name: SegmentName, events: &[Event], bytes: u64) -> SealedSegment {
        let (first_ts, last_ts) = match (events.first(), events.last()) {
            (Some(f), Some(l)) => (f.timestamp, l.timestamp),
            _ => (name.window_start, name.window_start),
        };
        let mut counts: ProductMap<u32> = ProductMap::default();
        for e in events {
            match counts.get_mut(&*e.product_id) {
                Some(count) => *count += 1,
                None => {
                    counts.insert(Arc::clone(&e.product_id), 1);
                }
            }
        }
        SealedSegment { meta: SegmentMeta { name, first_ts, last_ts, bytes }, counts: counts.into_iter().collect() }
    }
}

/// The sealed segments, per-product runs over them, and the durable tail not yet sealed.
#[derive(Default)]
pub struct Catalog {
    segments: Vec<SegmentMeta>,
    runs: ProductMap<Runs>,
    tail: Vec<Event>,
}

/// A query's filter (R4): all parts optional; `from` inclusive, `to` exclusive.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this product's events.
    pub product_id: Option<String>,
    /// Events at or after this instant.
    pub from: Option<Nanos>,
    /// Events strictly before this instant.
    pub to: Option<Nanos>,
}

impl Filter {
    /// Whether an event passes the filter.
    pub fn matches(&self, e: &Event) -> bool {
        self.product_id.as_deref().is_none_or(|p| *e.product_id == *p)
            && self.from.is_none_or(|f| e.timestamp >= f)
            && self.to.is_none_or(|t| e.timestamp < t)
    }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// A catalog restored from a checkpoint.
    pub fn from_parts(segments: Vec<SegmentMeta>, runs: ProductMap<Runs>) -> Catalog {
        Catalog { segments, runs, tail: Vec::new() }
    }

    /// Number of sealed segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Metadata of sealed segment `i`.
    pub fn segment(&self, i: usize) -> &SegmentMeta {
        &self.segments[i]
    }

    /// Records in the first `n` sealed segments.
    pub fn sealed_records(&self, n: usize) -> u64 {
        n.checked_sub(1).map_or(0, |last| self.segments[last].name.end_seq() - self.segments[0].name.first_seq)
    }

    /// Sequence number of the first sealed record (1 for a complete history).
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(1, |s| s.name.first_seq)
    }

    /// Records a sealed segment and its per-product runs. `events` are its records in order.
    pub fn add_sealed(&mut self, name: SegmentName, events: &[Event], bytes: u64) {
        self.add_counted(SealedSegment::new(name, events, bytes));
    }

    fn add_counted(&mut self, sealed: SealedSegment) {
        let index = self.segments.len() as u32;
        self.segments.push(sealed.meta);
        for (product, count) in sealed.counts {
            let runs = self.runs.entry(product).or_default();
            let before = runs.last().map_or(0, |r| r.before + u64::from(r.count));
            runs.push(ProductRun { segment: index, count, before });
        }
    }

    /// Adds a durable, not yet sealed event (visible to queries at once).
    pub fn push_tail(&mut self, event: Event) {
        self.tail.push(event);
    }

    /// Moves the first `sealed.meta.name.count` tail events into the sealed segment. Returns
    /// them, so that the caller drops them after releasing the lock.
    pub fn seal_tail(&mut self, sealed: SealedSegment) -> Vec<Event> {
        let n = (sealed.meta.name.count as usize).min(self.tail.len());
        let events: Vec<Event> = self.tail.drain(..n).collect();
        debug_assert_eq!(events.first().map(|e| e.seq), Some(sealed.meta.name.first_seq));
        self.add_counted(sealed);
        events
    }

    /// How many tail events pass `filter`, and `limit` of them after the first `skip`, in
    /// sequence order (a page never needs more, and the tail can hold a whole window of
    /// events). Without a product the matching events are one range of the time-ordered tail,
    /// found by binary search.
    pub fn tail_matching(&self, filter: &Filter, skip: usize, limit: usize) -> (u64, Vec<Event>) {
        if filter.product_id.is_none() {
            let start = filter.from.map_or(0, |f| self.tail.partition_point(|e| e.timestamp < f));
            let end = filter.to.map_or(self.tail.len(), |t| self.tail.partition_point(|e| e.timestamp < t)).max(start);
            let first = start.saturating_add(skip).min(end);
            let last = first.saturating_add(limit).min(end);
            return ((end - start) as u64, self.tail[first..last].to_vec());
        }
        let mut rows = Vec::new();
        let mut total = 0u64;
        for e in self.tail.iter().filter(|e| filter.matches(e)) {
            if total >= skip as u64 && rows.len() < limit {
                rows.push(e.clone());
            }
            total += 1;
        }
        (total, rows)
    }

    /// Index of the first of the first `n` segments whose last record is at or after `t`.
    pub fn first_segment_reaching(&self, t: Nanos, n: usize) -> usize {
        self.segments[..n].partition_point(|s| s.last_ts < t)
    }

    /// Index of the segment holding sequence number `seq`, among the first `n`.
    pub fn segment_holding(&self, seq: u64, n: usize) -> Option<usize> {
        let i = self.segments[..n].partition_point(|s| s.name.end_seq() <= seq);
        (i < n).then_some(i)
    }

    /// The product's runs over the first `n` segments: how many there are and the total count.
    pub fn product_extent(&self, product: &str, n: usize) -> (usize, u64) {
        let Some(runs) = self.runs.get(product) else { return (0, 0) };
        let len = runs.partition_point(|r| (r.segment as usize) < n);
        (len, len.checked_sub(1).map_or(0, |l| runs[l].before + u64::from(runs[l].count)))
    }

    /// The first of the product's first `len` runs whose segment reaches `t`, if any.
    pub fn product_run_reaching(&self, product: &str, t: Nanos, len: usize) -> Option<ProductRun> {
        let runs = &self.runs.get(product)?[..len];
        let i = runs.partition_point(|r| self.segments[r.segment as usize].last_ts < t);
        runs.get(i).copied()
    }

    /// The run holding the product's `pos`-th record (0-based) among its first `len` runs.
    pub fn product_run_holding(&self, product: &str, pos: u64, len: usize) -> Option<ProductRun> {
        let runs = &self.runs.get(product)?[..len];
        let i = runs.partition_point(|r| r.before + u64::from(r.count) <= pos);
        runs.get(i).copied()
    }

    /// Number of distinct products with sealed records.
    pub fn product_count(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::Price;

    #[test]
    fn tail_matching_equals_a_naive_filter_for_every_skip_and_limit() {
        let mut catalog = Catalog::new();
        let products = ["a", "b", "c"];
        let events: Vec<Event> = (0..40u64)
            .map(|i| Event {
                seq: i + 1,
                timestamp: 1000 + 10 * i as i64,
                product_id: Arc::from(products[(i % 3) as usize]),
                price: Price::parse("1").unwrap(),
                previous_price: None,
            })
            .collect();
        for e in &events {
            catalog.push_tail(e.clone());
        }
        let bounds = [None, Some(995), Some(1000), Some(1005), Some(1200), Some(1390), Some(2000)];
        for product in [None, Some("a"), Some("c"), Some("zz")] {
            for from in bounds {
                for to in bounds {
                    let filter = Filter { product_id: product.map(str::to_string), from, to };
                    let want: Vec<&Event> = events.iter().filter(|e| filter.matches(e)).collect();
                    for skip in [0, 1, 5, 39, 40, 100] {
                        for limit in [0, 1, 7, 100] {
                            let (total, rows) = catalog.tail_matching(&filter, skip, limit);
                            assert_eq!(total, want.len() as u64, "{filter:?}");
                            let expected: Vec<&Event> = want.iter().skip(skip).take(limit).copied().collect();
                            assert_eq!(rows.iter().collect::<Vec<_>>(), expected, "{filter:?} skip {skip} limit {limit}");
                        }
                    }
                }
            }
        }
    }
}
