//! Start-up recovery (R8, R9): rebuild last-known prices, the sequence and the query catalog
//! from `results/`, then complete any open window left in `wal/` by a crash.

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::product::ProductMap;
use crate::error::StorageError;
use crate::event::Event;
use crate::product::LastPrice;
use crate::query::catalog::Catalog;
use crate::segment::checkpoint;
use crate::segment::data_dir::{sorted_names, sync_dir, write_atomically, DataDir};
use crate::segment::format::{encode_segment, parse_segment, parse_wal, parse_wal_file_name, SegmentName};
use crate::sequencer::SequenceStart;
use crate::time::Nanos;

/// Everything the actors start from.
pub struct Recovered {
    /// Last durable price of every product.
    pub prices: ProductMap<LastPrice>,
    /// Where the Sequencer continues.
    pub start: SequenceStart,
    /// Metadata of every sealed segment.
    pub catalog: Catalog,
    /// What recovery did, for the logs.
    pub stats: RecoveryStats,
}

/// Figures logged at the end of recovery.
#[derive(Debug, Default, Clone)]
pub struct RecoveryStats {
    /// Segments restored from the checkpoint without being read.
    pub checkpoint_segments: usize,
    /// Segment files read and replayed.
    pub segments: usize,
    /// Events replayed.
    pub events: u64,
    /// Events recovered from open-window logs and sealed now.
    pub wal_events: u64,
    /// Bytes of torn records dropped from open-window logs.
    pub torn_bytes: u64,
    /// Files moved to `quarantine/` because they could not be read.
    pub quarantined: Vec<String>,
    /// Wall time taken.
    pub duration: Duration,
}

struct Replay {
    prices: ProductMap<LastPrice>,
    catalog: Catalog,
    next_seq: u64,
    last_ts: Nanos,
    last_window: Option<Nanos>,
}

impl Replay {
    fn apply(&mut self, name: SegmentName, events: &[Event], bytes: u64) {
        for e in events {
            self.prices.insert(
                Arc::clone(&e.product_id),
                LastPrice { price: e.price.clone(), timestamp: e.timestamp, seq: e.seq },
            );
        }
        if let Some(last) = events.last() {
            self.next_seq = last.seq + 1;
            self.last_ts = last.timestamp;
        }
        self.last_window = Some(name.window_start);
        self.catalog.add_sealed(name, events, bytes);
    }
}

/// Rebuilds the state from `dir`, logging progress. `window` is the current window length.
pub fn recover(dir: &DataDir, window: Duration) -> Result<Recovered, StorageError> {
    let started = Instant::now();
    let mut stats = RecoveryStats::default();
    let names = sorted_names(&dir.results)?;
    let (mut replay, covered) = from_checkpoint(dir, &names);
    stats.checkpoint_segments = covered;
    let total = names.len();
    let mut last_log = Instant::now();
    for (i, file) in names.into_iter().enumerate().skip(covered) {
        let path = dir.results.join(&file);
        let parsed = SegmentName::parse(&file).ok_or_else(|| "file name is not a segment name".to_string()).and_then(|name| {
            let bytes = fs::read(&path).map_err(|e| format!("cannot read: {e}"))?;
            let events = parse_segment(&bytes, name.first_seq).map_err(|e| e.to_string())?;
            if events.len() != name.count as usize || events.is_empty() {
                return Err(format!("holds {} records, name says {}", events.len(), name.count));
            }
            Ok((name, events, bytes.len() as u64))
        });
        match parsed {
            Ok((name, events, bytes)) => {
                if name.first_seq != replay.next_seq {
                    tracing::error!(file, expected = replay.next_seq, found = name.first_seq, "sequence gap in results/");
                }
                stats.events += events.len() as u64;
                stats.segments += 1;
                replay.apply(name, &events, bytes);
            }
            Err(reason) => {
                quarantine(dir, &file, &reason)?;
                stats.quarantined.push(file);
            }
        }
        if last_log.elapsed() >= Duration::from_secs(1) {
            tracing::info!(done = i + 1, total, "recovering segments");
            last_log = Instant::now();
        }
    }
    complete_open_windows(dir, &mut replay, &mut stats)?;
    let window_len = window.as_nanos() as Nanos;
    let floor = replay.last_window.map_or(0, |w| (w.div_euclid(window_len) + 1) * window_len);
    stats.duration = started.elapsed();
    Ok(Recovered {
        prices: replay.prices,
        start: SequenceStart { next_seq: replay.next_seq, last_timestamp: replay.last_ts, floor },
        catalog: replay.catalog,
        stats,
    })
}

/// The state as of the checkpoint, and how many of `names` it covers (0 without a usable one).
fn from_checkpoint(dir: &DataDir, names: &[String]) -> (Replay, usize) {
    let empty = Replay { prices: ProductMap::default(), catalog: Catalog::new(), next_seq: 1, last_ts: 0, last_window: None };
    let cp = match checkpoint::load(&dir.root) {
        Ok(Some(cp)) => cp,
        Ok(None) => return (empty, 0),
        Err(reason) => {
            tracing::warn!(reason, "ignoring damaged checkpoint; replaying every segment");
            return (empty, 0);
        }
    };
    let n = cp.segments.len();
    // Names and sizes must match: a covered file that was damaged after it was sealed is then
    // found (and quarantined) by a full replay instead of being trusted.
    let matches = n <= names.len()
        && cp.segments.iter().zip(names).all(|(meta, file)| {
            SegmentName::parse(file).as_ref() == Some(&meta.name)
                && fs::metadata(dir.results.join(file)).is_ok_and(|m| m.len() == meta.bytes)
        });
    if !matches {
        tracing::warn!("checkpoint does not match results/ (names or sizes); replaying every segment");
        return (empty, 0);
    }
    tracing::info!(segments = n, products = cp.prices.len(), "loaded checkpoint");
    let last_window = cp.segments.last().map(|s| s.name.window_start);
    let catalog = Catalog::from_parts(cp.segments, cp.runs);
    (Replay { prices: cp.prices, catalog, next_seq: cp.next_seq, last_ts: cp.last_ts, last_window }, n)
}

/// Seals the complete records of every WAL into `results/` (the window a crash left open),
/// dropping a torn last record and anything already sealed.
fn complete_open_windows(dir: &DataDir, replay: &mut Replay, stats: &mut RecoveryStats) -> Result<(), StorageError> {
    for file in sorted_names(&dir.wal)? {
        let path = dir.wal.join(&file);
        let Some(window_start) = parse_wal_file_name(&file) else {
            quarantine(dir, &file, "not a WAL file name")?;
            continue;
        };
        let bytes = fs::read(&path).map_err(StorageError::io("read WAL", &path))?;
        let (events, valid) = parse_wal(&bytes);
        stats.torn_bytes += (bytes.len() - valid) as u64;
        let mut fresh: Vec<Event> = Vec::new();
        for e in events.into_iter().filter(|e| e.seq >= replay.next_seq) {
            let expected = fresh.last().map_or(replay.next_seq, |l| l.seq + 1);
            if e.seq != expected || e.timestamp <= fresh.last().map_or(replay.last_ts, |l| l.timestamp) {
                break;
            }
            fresh.push(e);
        }
        if !fresh.is_empty() && replay.last_window.is_none_or(|w| w < window_start) {
            let name = SegmentName { window_start, first_seq: fresh[0].seq, count: fresh.len() as u32 };
            let bytes = encode_segment(&fresh);
            write_atomically(&dir.staging, &dir.results, &name.file_name(), &bytes)?;
            tracing::info!(file = name.file_name(), records = fresh.len(), "completed open window from WAL");
            stats.wal_events += fresh.len() as u64;
            replay.apply(name, &fresh, bytes.len() as u64);
        }
        fs::remove_file(&path).map_err(StorageError::io("remove recovered WAL", &path))?;
    }
    sync_dir(&dir.wal)
}

/// Moves an unreadable file out of the way so that start-up never loops on it.
fn quarantine(dir: &DataDir, file: &str, reason: &str) -> Result<(), StorageError> {
    let qdir = dir.root.join("quarantine");
    fs::create_dir_all(&qdir).map_err(StorageError::io("create", &qdir))?;
    let from = if dir.results.join(file).exists() { dir.results.join(file) } else { dir.wal.join(file) };
    let to = qdir.join(file);
    tracing::error!(file, reason, "moving unreadable file to quarantine/");
    fs::rename(&from, &to).map_err(StorageError::io("quarantine", &from))?;
    sync_dir(from.parent().unwrap_or(&dir.root))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use super::*;
    use crate::price::Price;
    use crate::segment::checkpoint::{Checkpointer, FILE_NAME};
    use crate::segment::format::encode_segment;

    const SEC: i64 = 1_000_000_000;

    /// The events of window `w` (1 to 5 of them, chained through `last`).
    fn window_events(w: i64, next_seq: &mut u64, last: &mut HashMap<String, Price>) -> Vec<Event> {
        let mut events = Vec::new();
        for k in 0..(w % 5 + 1) {
            let id = format!("p{}", (w * 7 + k) % 11);
            let price = Price::parse(&format!("{w}.{k}0")).unwrap();
            events.push(Event {
                seq: *next_seq,
                timestamp: w * SEC + k,
                product_id: Arc::from(id.as_str()),
                price: price.clone(),
                previous_price: last.insert(id, price),
            });
            *next_seq += 1;
        }
        events
    }

    fn write_segment(dir: &DataDir, w: i64, events: &[Event]) {
        let name = SegmentName { window_start: w * SEC, first_seq: events[0].seq, count: events.len() as u32 };
        fs::write(dir.results.join(name.file_name()), encode_segment(events)).unwrap();
    }

    fn write_wal(dir: &DataDir, w: i64, events: &[Event]) {
        let mut bytes = Vec::new();
        for e in events {
            crate::segment::format::encode_wal_line(e, &mut bytes);
        }
        fs::write(dir.wal.join(crate::segment::format::wal_file_name(w * SEC)), bytes).unwrap();
    }

    fn write_segments(dir: &DataDir, windows: std::ops::Range<i64>, next_seq: &mut u64, last: &mut HashMap<String, Price>) {
        for w in windows {
            let events = window_events(w, next_seq, last);
            write_segment(dir, w, &events);
        }
    }

    /// The sealer seals finished windows behind the writer, so a crash can leave several WALs:
    /// finished windows not sealed yet (or sealed, with the WAL not yet removed) before the open
    /// one. Recovery seals each exactly once, in order.
    #[test]
    fn several_wals_behind_the_sealer_are_each_sealed_once_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let (mut seq, mut last) = (1, HashMap::new());
        write_segments(&dir, 100..103, &mut seq, &mut last);
        // 103: sealed, but the crash came before its WAL was removed.
        let sealed_wal = window_events(103, &mut seq, &mut last);
        write_segment(&dir, 103, &sealed_wal);
        write_wal(&dir, 103, &sealed_wal);
        // 104 and 105: finished, waiting for the sealer. 106: the open window.
        let mut expected: Vec<Event> = Vec::new();
        for w in 104..107 {
            let events = window_events(w, &mut seq, &mut last);
            write_wal(&dir, w, &events);
            expected.extend(events);
        }
        let r = recover(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!(r.stats.wal_events, expected.len() as u64);
        assert_eq!(r.start.next_seq, seq);
        assert_eq!(r.catalog.segment_count(), 7);
        assert!(sorted_names(&dir.wal).unwrap().is_empty(), "every WAL is removed");
        let names = sorted_names(&dir.results).unwrap();
        assert_eq!(names.len(), 7);
        let mut replayed = Vec::new();
        for file in &names[4..] {
            let name = SegmentName::parse(file).unwrap();
            replayed.extend(parse_segment(&fs::read(dir.results.join(file)).unwrap(), name.first_seq).unwrap());
        }
        assert_eq!(replayed, expected, "the WALs' events, each once, in sequence order");
        let again = recover(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!(summary(&again), summary(&r), "a second start changes nothing");
    }

    fn checkpointer_for(dir: &DataDir) -> Checkpointer {
        Checkpointer {
            root: dir.root.clone(),
            staging: dir.staging.clone(),
            results: dir.results.clone(),
            interval: Duration::from_secs(60),
            metrics: crate::metrics::Metrics::new(),
        }
    }

    fn summary(r: &Recovered) -> (Vec<(String, String, i64, u64, usize, u64)>, u64, i64, usize) {
        let mut v: Vec<_> = r
            .prices
            .iter()
            .map(|(id, p)| {
                let (runs, count) = r.catalog.product_extent(id, r.catalog.segment_count());
                (id.to_string(), p.price.to_string(), p.timestamp, p.seq, runs, count)
            })
            .collect();
        v.sort();
        (v, r.start.next_seq, r.start.floor, r.catalog.segment_count())
    }

    #[test]
    fn checkpoint_plus_tail_equals_full_replay() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let (mut seq, mut last) = (1, HashMap::new());
        let checkpointer = checkpointer_for(&dir);
        write_segments(&dir, 100..120, &mut seq, &mut last);
        checkpointer.checkpoint();
        write_segments(&dir, 120..150, &mut seq, &mut last);
        checkpointer.checkpoint();
        write_segments(&dir, 150..160, &mut seq, &mut last);
        let with = recover(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!(with.stats.checkpoint_segments, 50);
        assert_eq!(with.stats.segments, 10);
        fs::remove_file(dir.root.join(FILE_NAME)).unwrap();
        let without = recover(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!(without.stats.segments, 60);
        assert_eq!(summary(&with), summary(&without));
    }

    #[test]
    fn damaged_or_stale_checkpoint_falls_back_to_full_replay() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let (mut seq, mut last) = (1, HashMap::new());
        let checkpointer = checkpointer_for(&dir);
        write_segments(&dir, 100..110, &mut seq, &mut last);
        checkpointer.checkpoint();
        let path = dir.root.join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let r = recover(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!((r.stats.checkpoint_segments, r.stats.segments), (0, 10));
        checkpointer.checkpoint();
        let first = fs::read_dir(&dir.results).unwrap().map(|e| e.unwrap().path()).min().unwrap();
        fs::remove_file(first).unwrap();
        let r = recover(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!((r.stats.checkpoint_segments, r.stats.segments), (0, 9));
    }

    #[test]
    fn a_covered_segment_damaged_after_the_checkpoint_is_found_and_quarantined() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let (mut seq, mut last) = (1, HashMap::new());
        write_segments(&dir, 100..105, &mut seq, &mut last);
        let checkpointer = checkpointer_for(&dir);
        checkpointer.checkpoint();
        let newest = fs::read_dir(&dir.results).unwrap().map(|e| e.unwrap().path()).max().unwrap();
        fs::write(&newest, b"").unwrap();
        let r = recover(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!((r.stats.checkpoint_segments, r.stats.segments, r.stats.quarantined.len()), (0, 4, 1));
        assert!(!newest.exists());
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_refused_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let err = DataDir::open(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
