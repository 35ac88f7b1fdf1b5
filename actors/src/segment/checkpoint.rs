//! Checkpoints (R9): last-known prices, the sequence position and the query catalog as of a
//! sealed-segment boundary, so that start-up replays only the segments sealed after it.
//!
//! A checkpoint is a pure function of `results/`: the Checkpointer thread folds the segments
//! sealed since the previous checkpoint into it, with a merge by product id that holds only the
//! products touched since then in memory, and writes the result atomically (staging file, fsync,
//! rename, fsync dir). It never talks to the actors, so it cannot see a state that is not on
//! disk. A checksum guards the file; a damaged or stale checkpoint is ignored and start-up falls
//! back to a full replay.
//!
//! Layout (little-endian): `RPRCKPT2`, covered segment count u64, next_seq u64, last_ts i64,
//! segment metadata count u64 then per segment (window_start i64, first_seq u64, count u32,
//! first_ts i64, last_ts i64, file size u64), product count u64 then per product sorted by id (id len u16, id,
//! price len u8, price, ts i64, seq u64, run count u32, runs (segment u32, count u32)), CRC-32.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::product::ProductMap;
use crate::metrics::Metrics;
use crate::price::Price;
use crate::product::LastPrice;
use crate::query::catalog::{ProductRun, Runs, SegmentMeta};
use crate::segment::data_dir::{sorted_names, write_atomically};
use crate::segment::format::{parse_segment, SegmentName};
use crate::time::Nanos;

const MAGIC: &[u8; 8] = b"RPRCKPT2";
/// The checkpoint's file name in the data directory.
pub const FILE_NAME: &str = "checkpoint.bin";

/// A product's state in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductEntry {
    /// Last durable price.
    pub last: LastPrice,
    /// (segment index, record count) for every segment holding the product.
    pub runs: Vec<(u32, u32)>,
}

/// The decoded checkpoint, in the shapes recovery needs.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Next sequence number after the covered segments.
    pub next_seq: u64,
    /// Timestamp of the last covered event.
    pub last_ts: Nanos,
    /// Metadata of each covered segment, in order.
    pub segments: Vec<SegmentMeta>,
    /// Last durable price of every product.
    pub prices: ProductMap<LastPrice>,
    /// Every product's runs over the covered segments.
    pub runs: ProductMap<Runs>,
}

fn catalog_runs(runs: &[(u32, u32)]) -> Runs {
    let mut before = 0u64;
    runs.iter()
        .map(|&(segment, count)| {
            let r = ProductRun { segment, count, before };
            before += u64::from(count);
            r
        })
        .collect()
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn entry(&mut self, id: &str, p: &ProductEntry) {
        self.u16(id.len() as u16);
        self.out.extend_from_slice(id.as_bytes());
        self.u8(p.last.price.as_str().len() as u8);
        self.out.extend_from_slice(p.last.price.as_str().as_bytes());
        self.i64(p.last.timestamp);
        self.u64(p.last.seq);
        self.u32(p.runs.len() as u32);
        for &(s, c) in &p.runs {
            self.u32(s);
            self.u32(c);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn str(&mut self, n: usize) -> Result<&'a str, String> {
        std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())
    }
    /// One product entry, borrowed from the file.
    fn entry(&mut self) -> Result<(&'a str, ProductEntry), String> {
        let id_len = self.u16()? as usize;
        let id = self.str(id_len)?;
        let price_len = self.u8()? as usize;
        let price = Price::from_trusted(self.str(price_len)?);
        let timestamp = self.i64()?;
        let seq = self.u64()?;
        let n = self.u32()? as usize;
        let mut runs = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            runs.push((self.u32()?, self.u32()?));
        }
        Ok((id, ProductEntry { last: LastPrice { price, timestamp, seq }, runs }))
    }
}

/// A checkpoint file read and checked, with its product section left undecoded.
struct RawCheckpoint {
    bytes: Vec<u8>,
    next_seq: u64,
    last_ts: Nanos,
    segments: Vec<SegmentMeta>,
    products: u64,
    products_at: usize,
}

fn read_raw(path: &PathBuf) -> Result<Option<RawCheckpoint>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    if bytes.len() < MAGIC.len() + 4 || &bytes[..8] != MAGIC {
        return Err("not a checkpoint file".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader { bytes: body, at: 8 };
    let covered = r.u64()?;
    let next_seq = r.u64()?;
    let last_ts = r.i64()?;
    let n = r.u64()?;
    if n != covered {
        return Err("segment count mismatch".into());
    }
    let mut segments = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name = SegmentName { window_start: r.i64()?, first_seq: r.u64()?, count: r.u32()? };
        segments.push(SegmentMeta { name, first_ts: r.i64()?, last_ts: r.i64()?, bytes: r.u64()? });
    }
    let products = r.u64()?;
    let products_at = r.at;
    Ok(Some(RawCheckpoint { bytes, next_seq, last_ts, segments, products, products_at }))
}

impl RawCheckpoint {
    fn entries(&self) -> impl Iterator<Item = Result<(&str, ProductEntry), String>> {
        let body = &self.bytes[..self.bytes.len() - 4];
        let mut r = Reader { bytes: body, at: self.products_at };
        (0..self.products).map(move |_| r.entry())
    }
}

/// Loads `dir/checkpoint.bin`: `Ok(None)` when there is none, `Err` when it is damaged.
pub fn load(root: &std::path::Path) -> Result<Option<Checkpoint>, String> {
    let Some(raw) = read_raw(&root.join(FILE_NAME))? else { return Ok(None) };
    let n = raw.products as usize;
    let (mut prices, mut runs) = (ProductMap::with_capacity_and_hasher(n, Default::default()), ProductMap::with_capacity_and_hasher(n, Default::default()));
    for entry in raw.entries() {
        let (id, p) = entry?;
        let id: Arc<str> = Arc::from(id);
        runs.insert(Arc::clone(&id), catalog_runs(&p.runs));
        prices.insert(id, p.last);
    }
    Ok(Some(Checkpoint { next_seq: raw.next_seq, last_ts: raw.last_ts, segments: raw.segments, prices, runs }))
}

/// Folds the segments named in `names[from..]` into the checkpoint at `root` (or into an empty
/// one) and writes it atomically. Returns how many segments the new checkpoint covers.
fn fold(root: &std::path::Path, staging: &std::path::Path, results: &std::path::Path) -> Result<Option<usize>, String> {
    let names: Vec<String> = sorted_names(results).map_err(|e| e.to_string())?.into_iter().filter(|n| SegmentName::parse(n).is_some()).collect();
    let raw = match read_raw(&root.join(FILE_NAME)) {
        Ok(raw) => raw,
        Err(reason) => {
            tracing::warn!(reason, "ignoring damaged checkpoint; rebuilding it from results/");
            None
        }
    };
    let raw = raw.filter(|r| {
        let n = r.segments.len();
        n <= names.len() && (n == 0 || SegmentName::parse(&names[n - 1]).as_ref() == Some(&r.segments[n - 1].name))
    });
    let covered = raw.as_ref().map_or(0, |r| r.segments.len());
    if covered == names.len() && raw.is_some() {
        return Ok(None);
    }
    let mut segments = raw.as_ref().map(|r| r.segments.clone()).unwrap_or_default();
    let mut next_seq = raw.as_ref().map_or(1, |r| r.next_seq);
    let mut last_ts = raw.as_ref().map_or(0, |r| r.last_ts);
    let mut delta: BTreeMap<Arc<str>, ProductEntry> = BTreeMap::new();
    for (i, file) in names.iter().enumerate().skip(covered) {
        let name = SegmentName::parse(file).expect("filtered above");
        let bytes = fs::read(results.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let events = parse_segment(&bytes, name.first_seq).map_err(|e| format!("{file}: {e}"))?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else { continue };
        segments.push(SegmentMeta { name: name.clone(), first_ts: first.timestamp, last_ts: last.timestamp, bytes: bytes.len() as u64 });
        next_seq = name.end_seq();
        last_ts = last.timestamp;
        for e in &events {
            let entry = delta
                .entry(Arc::clone(&e.product_id))
                .or_insert_with(|| ProductEntry { last: LastPrice { price: e.price.clone(), timestamp: 0, seq: 0 }, runs: Vec::new() });
            entry.last = LastPrice { price: e.price.clone(), timestamp: e.timestamp, seq: e.seq };
            match entry.runs.last_mut() {
                Some((s, c)) if *s == i as u32 => *c += 1,
                _ => entry.runs.push((i as u32, 1)),
            }
        }
    }
    let mut w = Writer { out: Vec::with_capacity(raw.as_ref().map_or(1 << 16, |r| r.bytes.len() + delta.len() * 64)) };
    w.out.extend_from_slice(MAGIC);
    w.u64(segments.len() as u64);
    w.u64(next_seq);
    w.i64(last_ts);
    w.u64(segments.len() as u64);
    for s in &segments {
        w.i64(s.name.window_start);
        w.u64(s.name.first_seq);
        w.u32(s.name.count);
        w.i64(s.first_ts);
        w.i64(s.last_ts);
        w.u64(s.bytes);
    }
    let count_at = w.out.len();
    w.u64(0);
    let mut count = 0u64;
    let mut fresh = delta.into_iter().peekable();
    if let Some(raw) = &raw {
        for entry in raw.entries() {
            let (id, mut old) = entry?;
            while let Some((new_id, new)) = fresh.next_if(|(n, _)| &**n < id) {
                w.entry(&new_id, &new);
                count += 1;
            }
            if let Some((_, new)) = fresh.next_if(|(n, _)| &**n == id) {
                old.last = new.last;
                old.runs.extend(new.runs);
            }
            w.entry(id, &old);
            count += 1;
        }
    }
    for (id, new) in fresh {
        w.entry(&id, &new);
        count += 1;
    }
    w.out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&w.out);
    w.u32(crc);
    drop(raw);
    write_atomically(staging, root, FILE_NAME, &w.out).map_err(|e| e.to_string())?;
    Ok(Some(segments.len()))
}

/// Requests to the Checkpointer thread.
pub enum CheckpointRequest {
    /// Write a checkpoint now and reply when done (shutdown).
    Now(tokio::sync::oneshot::Sender<()>),
}

/// The background thread that keeps `checkpoint.bin` close to the head of `results/`.
pub struct Checkpointer {
    /// The data directory root.
    pub root: PathBuf,
    /// Its staging directory.
    pub staging: PathBuf,
    /// Its results directory.
    pub results: PathBuf,
    /// How often to fold new segments in.
    pub interval: Duration,
    /// Where the last checkpoint time is reported.
    pub metrics: Metrics,
}

impl Checkpointer {
    /// Writes one checkpoint covering every segment sealed so far.
    pub fn checkpoint(&self) {
        let started = Instant::now();
        let _span = tracing::info_span!("Checkpointer write checkpoint").entered();
        match fold(&self.root, &self.staging, &self.results) {
            Ok(Some(covered)) => {
                self.metrics.checkpoint_timestamp.set(chrono::Utc::now().timestamp());
                tracing::info!(covered_segments = covered as i64, seconds = started.elapsed().as_secs_f64(), "checkpoint written");
            }
            Ok(None) => self.metrics.checkpoint_timestamp.set(chrono::Utc::now().timestamp()),
            Err(error) => tracing::error!(%error, "checkpoint failed; start-up will replay more"),
        }
    }

    /// Runs until the request channel closes. The first fold runs at once: it folds in what
    /// recovery sealed (or, after a clean stop, finds the checkpoint current), so that
    /// `repricer_checkpoint_timestamp_seconds` is right from the start, not 0 for an interval.
    pub fn run(self, requests: Receiver<CheckpointRequest>) {
        self.checkpoint();
        loop {
            match requests.recv_timeout(self.interval) {
                Ok(CheckpointRequest::Now(done)) => {
                    self.checkpoint();
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => self.checkpoint(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}
