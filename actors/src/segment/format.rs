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
    raws.into_iter()
        .enumerate()
        .map(|(i, raw)| {
            if raw.seq.is_some() {
                return Err(FormatError { index: i, reason: "unexpected field seq".into() });
            }
            to_event(raw, first_seq + i as u64, i)
        })
        .collect()
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
    fn names_sort_and_parse() {
        let a = SegmentName { window_start: 1_764_774_245_000_000_000, first_seq: 1, count: 42 };
        let b = SegmentName { window_start: 1_764_774_246_000_000_000, first_seq: 43, count: 1 };
        assert!(a.file_name() < b.file_name());
        assert_eq!(SegmentName::parse(&a.file_name()), Some(a.clone()));
        assert_eq!(parse_wal_file_name(&wal_file_name(a.window_start)), Some(a.window_start));
        assert_eq!(SegmentName::parse("x.json"), None);
    }
}
