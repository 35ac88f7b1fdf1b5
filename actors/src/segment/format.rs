//! The on-disk formats: sealed segment files in `results/` and open-window logs in `wal/`.
//!
//! A segment file is a JSON array with one record per line (R7). Its name carries the window
//! start, the first sequence number and the record count, so a reader can place it in the
//! total order without opening it. A WAL file is NDJSON, one record (with its `seq`) per line,
//! appended and fsync'd by group commit; a torn last line is simply not there yet.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::Event;
use crate::price::Price;
use crate::time::{self, Nanos};

/// Metadata carried by a segment file name:
/// `20261203T150405.000Z_00000000000000000001_0000000042.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName {
    /// Start of the window the file covers.
    pub window_start: Nanos,
    /// Sequence number of the first record.
    pub first_seq: u64,
    /// Number of records.
    pub count: u32,
}

impl SegmentName {
    /// The file name; lexicographic order equals time order.
    pub fn file_name(&self) -> String {
        format!("{}_{:020}_{:010}.json", time::format_compact(self.window_start), self.first_seq, self.count)
    }

    /// Parses a name written by [`SegmentName::file_name`]; `None` for anything else.
    pub fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(".json")?;
        let mut parts = stem.split('_');
        let window_start = time::parse_compact(parts.next()?)?;
        let seq = parts.next()?;
        let count = parts.next()?;
        if parts.next().is_some() || seq.len() != 20 || count.len() != 10 {
            return None;
        }
        Some(SegmentName { window_start, first_seq: seq.parse().ok()?, count: count.parse().ok()? })
    }

    /// Sequence number one past the last record.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count)
    }
}

/// Name of the WAL file of the window starting at `window_start`.
pub fn wal_file_name(window_start: Nanos) -> String {
    format!("{}.wal", time::format_compact(window_start))
}

/// Inverse of [`wal_file_name`].
pub fn parse_wal_file_name(name: &str) -> Option<Nanos> {
    time::parse_compact(name.strip_suffix(".wal")?)
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends one segment-file record (no separator).
pub fn encode_record(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"productId\":");
    push_json_string(out, &event.product_id);
    if let Some(prev) = &event.previous_price {
        out.extend_from_slice(b",\"previousPrice\":");
        out.extend_from_slice(prev.as_str().as_bytes());
    }
    out.extend_from_slice(b",\"newPrice\":");
    out.extend_from_slice(event.price.as_str().as_bytes());
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(time::format_rfc3339(event.timestamp).as_bytes());
    out.extend_from_slice(b"\"}");
}

/// The whole content of a segment file: a JSON array, one record per line.
pub fn encode_segment(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 128 + 4);
    out.extend_from_slice(b"[\n");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",\n");
        }
        encode_record(event, &mut out);
    }
    out.extend_from_slice(b"\n]\n");
    out
}

/// Appends one WAL line: `{"seq":N,` followed by the record's fields, then `}\n`.
pub fn encode_wal_line(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{{\"seq\":{},", event.seq).as_bytes());
    let start = out.len();
    encode_record(event, out);
    out.remove(start); // drop the record's own opening brace
    out.push(b'\n');
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRecord<'a> {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    #[serde(borrow, default)]
    previous_price: Option<&'a RawValue>,
    #[serde(borrow)]
    new_price: &'a RawValue,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

/// A record that does not follow the format, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("record {index}: {reason}")]
pub struct FormatError {
    /// Position of the record in its file (0-based).
    pub index: usize,
    /// What is wrong with it.
    pub reason: String,
}

fn to_event(raw: RawRecord<'_>, seq: u64, index: usize) -> Result<Event, FormatError> {
    let bad = |reason: String| FormatError { index, reason };
    let price = Price::parse(raw.new_price.get()).map_err(|e| bad(format!("newPrice: {e}")))?;
    let previous_price = match raw.previous_price {
        Some(p) => Some(Price::parse(p.get()).map_err(|e| bad(format!("previousPrice: {e}")))?),
        None => None,
    };
    let timestamp = time::parse_rfc3339(&raw.timestamp).ok_or_else(|| bad(format!("bad timestamp {:?}", raw.timestamp)))?;
    Ok(Event { seq, timestamp, product_id: Arc::from(raw.product_id.as_ref()), price, previous_price })
}

/// Parses a sealed segment file whose first record has sequence number `first_seq`.
pub fn parse_segment(bytes: &[u8], first_seq: u64) -> Result<Vec<Event>, FormatError> {
    let raws: Vec<RawRecord<'_>> =
        serde_json::from_slice(bytes).map_err(|e| FormatError { index: 0, reason: format!("not a JSON array of records: {e}") })?;
    raws.into_iter().enumerate().map(|(i, raw)| segment_record(raw, first_seq + i as u64, i)).collect()
}

/// A segment file's record `index` as the event with sequence number `seq`: it carries no `seq`
/// of its own (its place in the file gives it; only WAL lines have one).
fn segment_record(raw: RawRecord<'_>, seq: u64, index: usize) -> Result<Event, FormatError> {
    if raw.seq.is_some() {
        return Err(FormatError { index, reason: "unexpected field seq".into() });
    }
    to_event(raw, seq, index)
}

/// Records between two sampled offsets of a [`RecordOffsets`] index.
pub const OFFSET_STRIDE: usize = 16;

/// Where the records of a segment file start, sampled every [`OFFSET_STRIDE`] records: a page
/// of a large segment is read with one `pread` of the lines it needs, not a parse of the whole
/// file (a busy second is tens of MiB of JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOffsets {
    /// Byte offset of record `k * OFFSET_STRIDE`, for every such record.
    starts: Vec<u64>,
    /// Byte offset just past the last record's line (its `\n`).
    end: u64,
    /// Number of records.
    count: usize,
}

impl RecordOffsets {
    /// Number of records in the file.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The byte range of the file that holds records `from..to` (plus at most
    /// `OFFSET_STRIDE - 1` records before them), and how many records it starts before `from`.
    pub fn byte_range(&self, from: usize, to: usize) -> (std::ops::Range<u64>, usize) {
        let first = from / OFFSET_STRIDE;
        let last = to.div_ceil(OFFSET_STRIDE);
        let end = self.starts.get(last).copied().unwrap_or(self.end);
        (self.starts[first]..end, from - first * OFFSET_STRIDE)
    }

    /// Estimated memory it takes.
    pub fn bytes(&self) -> u64 {
        (self.starts.len() * std::mem::size_of::<u64>() + std::mem::size_of::<Self>()) as u64
    }
}

/// Indexes a segment file's records by byte offset (the file must have the layout that
/// [`encode_segment`] writes: `[`, one record per line, `]`).
pub fn index_records(bytes: &[u8]) -> Result<RecordOffsets, FormatError> {
    let bad = |reason: &str| FormatError { index: 0, reason: reason.to_string() };
    if !bytes.starts_with(b"[\n") || !bytes.ends_with(b"\n]\n") {
        return Err(bad("not a segment file: it must start with \"[\" and end with \"]\" on lines of their own"));
    }
    let mut starts = Vec::new();
    let mut count = 0;
    let mut start = 2;
    let body_end = bytes.len() - 2;
    for nl in memchr::memchr_iter(b'\n', &bytes[2..body_end]).map(|i| i + 2) {
        if count % OFFSET_STRIDE == 0 {
            starts.push(start as u64);
        }
        count += 1;
        start = nl + 1;
    }
    if start != body_end {
        return Err(bad("the last record is not followed by a line break"));
    }
    Ok(RecordOffsets { starts, end: body_end as u64, count })
}

/// Parses `take` records of a segment file's lines after skipping `skip` of them; `chunk` is a
/// byte range from [`RecordOffsets::byte_range`] and `first_seq` the sequence number of its
/// first line's record.
pub fn parse_record_lines(chunk: &[u8], first_seq: u64, skip: usize, take: usize) -> Result<Vec<Event>, FormatError> {
    let mut events = Vec::with_capacity(take);
    let mut line_breaks = memchr::memchr_iter(b'\n', chunk);
    let mut start = match skip.checked_sub(1) {
        Some(last_skipped) => line_breaks.nth(last_skipped).map_or(chunk.len(), |nl| nl + 1),
        None => 0,
    };
    for i in skip..skip + take {
        let Some(nl) = line_breaks.next() else { break };
        let line = &chunk[start..nl];
        let line = line.strip_suffix(b",").unwrap_or(line);
        let raw: RawRecord<'_> =
            serde_json::from_slice(line).map_err(|e| FormatError { index: i, reason: format!("not a record: {e}") })?;
        events.push(segment_record(raw, first_seq + i as u64, i)?);
        start = nl + 1;
    }
    if events.len() < take {
        return Err(FormatError { index: skip + events.len(), reason: "fewer records than the index holds".into() });
    }
    Ok(events)
}

/// The complete records at the start of a WAL file and the byte length they occupy together
/// with the file's trailing NUL padding (the writer zero-fills ahead of its records, see
/// `SegmentWriter`): the file's length minus this is the torn part. Parsing stops at the first
/// line that is torn or unreadable: only the tail that was never acknowledged can be in that
/// state.
pub fn parse_wal(bytes: &[u8]) -> (Vec<Event>, usize) {
    let padding = bytes.iter().rev().take_while(|&&b| b == 0).count();
    let bytes = &bytes[..bytes.len() - padding];
    let mut events = Vec::new();
    let mut offset = 0;
    while let Some(nl) = bytes[offset..].iter().position(|&b| b == b'\n') {
        let line = &bytes[offset..offset + nl];
        let parsed = serde_json::from_slice::<RawRecord<'_>>(line)
            .ok()
            .and_then(|raw| raw.seq.map(|seq| (seq, raw)))
            .and_then(|(seq, raw)| to_event(raw, seq, events.len()).ok());
        match parsed {
            Some(event) => events.push(event),
            None => break,
        }
        offset += nl + 1;
    }
    (events, offset + padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, prev: Option<&str>, price: &str) -> Event {
        Event {
            seq,
            timestamp: 1_764_774_245_000_000_000 + seq as i64,
            product_id: Arc::from("p/ü \"1\""),
            price: Price::parse(price).unwrap(),
            previous_price: prev.map(|p| Price::parse(p).unwrap()),
        }
    }

    #[test]
    fn segment_round_trips() {
        let events = vec![event(7, None, "19.990"), event(8, Some("19.990"), "1e2")];
        let bytes = encode_segment(&events);
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(parsed[0].get("previousPrice").is_none());
        assert_eq!(parse_segment(&bytes, 7).unwrap(), events);
    }

    #[test]
    fn wal_drops_torn_tail() {
        let mut bytes = Vec::new();
        encode_wal_line(&event(1, None, "1.5"), &mut bytes);
        encode_wal_line(&event(2, Some("1.5"), "2.5"), &mut bytes);
        let full = bytes.len();
        encode_wal_line(&event(3, Some("2.5"), "3.5"), &mut bytes);
        bytes.truncate(bytes.len() - 3);
        let (events, len) = parse_wal(&bytes);
        assert_eq!(events.len(), 2);
        assert_eq!(len, full);
        bytes.truncate(full);
        bytes.extend_from_slice(&[0u8; 40]);
        bytes.push(b'\n');
        assert_eq!(parse_wal(&bytes).1, full);
        // Zero padding after complete records is not torn; a torn line inside it is.
        bytes.truncate(full);
        bytes.extend_from_slice(&[0u8; 4096]);
        assert_eq!(parse_wal(&bytes), (parse_wal(&bytes[..full]).0, bytes.len()));
        bytes.truncate(full);
        encode_wal_line(&event(3, Some("2.5"), "3.5"), &mut bytes);
        bytes.truncate(bytes.len() - 3);
        bytes.extend_from_slice(&[0u8; 4096]);
        let (events, len) = parse_wal(&bytes);
        assert_eq!((events.len(), bytes.len() - len), (2, bytes.len() - full - 4096));
    }

    #[test]
    fn record_offsets_read_exactly_the_records_of_any_range() {
        for n in [1usize, 2, OFFSET_STRIDE - 1, OFFSET_STRIDE, OFFSET_STRIDE + 1, 3 * OFFSET_STRIDE + 5] {
            let events: Vec<Event> = (0..n).map(|i| event(100 + i as u64, Some("1"), &format!("{}.5", i))).collect();
            let bytes = encode_segment(&events);
            let offsets = index_records(&bytes).unwrap();
            assert_eq!(offsets.count(), n);
            for from in 0..n {
                for to in from + 1..=n {
                    let (range, skip) = offsets.byte_range(from, to);
                    let chunk = &bytes[range.start as usize..range.end as usize];
                    let first_seq = 100 + (from - skip) as u64;
                    let got = parse_record_lines(chunk, first_seq, skip, to - from).unwrap();
                    assert_eq!(got, events[from..to], "records {from}..{to} of {n}");
                }
            }
        }
        assert!(index_records(b"[\n{}\n]").is_err());
        assert!(index_records(b"{}").is_err());
        let bytes = encode_segment(&[event(1, None, "1")]);
        let offsets = index_records(&bytes).unwrap();
        let (range, _) = offsets.byte_range(0, 1);
        assert!(parse_record_lines(&bytes[range.start as usize..range.end as usize - 3], 1, 0, 1).is_err());
    }

    #[test]
    fn names_sort_and_parse() {
        let a = SegmentName { window_start: 1_764_774_245_000_000_000, first_seq: 1, count: 42 };
        let b = SegmentName { window_start: 1_764_774_246_000_000_000, first_seq: 43, count: 1 };
        assert!(a.file_name() < b.file_name());
        assert_eq!(SegmentName::parse(&a.file_name()), Some(a.clone()));
        assert_eq!(parse_wal_file_name(&wal_file_name(a.window_start)), Some(a.window_start));
        assert_eq!(SegmentName::parse("x.json"), None);
    }
}
