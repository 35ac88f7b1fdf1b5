//! `repricer verify` (R10): checks every storage invariant of R6–R8 over a data directory.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::price::Price;
use crate::segment::format::{parse_segment, SegmentName};
use crate::time::Nanos;

/// The first invariant found broken, and where.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {invariant}")]
pub struct Violation {
    /// The file that breaks it.
    pub file: PathBuf,
    /// What is broken.
    pub invariant: String,
}

/// What a passing verification covered.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Segment files checked.
    pub files: usize,
    /// Records checked.
    pub events: u64,
    /// Distinct products seen.
    pub products: usize,
    /// Open-window logs present (recovered at next start).
    pub open_wal_files: usize,
}

/// Checks `data_dir/results`; `progress(done, total)` is called after each file.
pub fn verify(data_dir: &Path, mut progress: impl FnMut(usize, usize)) -> Result<VerifyReport, Violation> {
    let results = data_dir.join("results");
    let fail = |file: &Path, invariant: String| Violation { file: file.to_path_buf(), invariant };
    let mut names: Vec<String> = fs::read_dir(&results)
        .map_err(|e| fail(&results, format!("cannot list: {e}")))?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    names.sort();
    let total = names.len();
    let mut report = VerifyReport::default();
    let mut next_seq = 1u64;
    let mut last_ts: Option<Nanos> = None;
    let mut last_window: Option<Nanos> = None;
    let mut last_price: HashMap<Arc<str>, Price> = HashMap::new();
    for (i, file) in names.iter().enumerate() {
        let path = results.join(file);
        let name = SegmentName::parse(file).ok_or_else(|| fail(&path, "file name is not <window>_<firstSeq>_<count>.json".into()))?;
        if last_window.is_some_and(|w| w >= name.window_start) {
            return Err(fail(&path, "window does not come after the previous file's window (name order = time order)".into()));
        }
        if name.first_seq != next_seq {
            return Err(fail(&path, format!("sequence gap: expected first sequence number {next_seq}, name says {}", name.first_seq)));
        }
        let bytes = fs::read(&path).map_err(|e| fail(&path, format!("cannot read: {e}")))?;
        let events = parse_segment(&bytes, name.first_seq).map_err(|e| fail(&path, format!("not a valid segment: {e}")))?;
        if events.is_empty() {
            return Err(fail(&path, "holds no records (every file must hold at least one)".into()));
        }
        if events.len() != name.count as usize {
            return Err(fail(&path, format!("holds {} records, name says {}", events.len(), name.count)));
        }
        for (j, e) in events.iter().enumerate() {
            if last_ts.is_some_and(|t| t >= e.timestamp) {
                return Err(fail(&path, format!("record {j}: timestamp does not increase")));
            }
            if e.timestamp < name.window_start {
                return Err(fail(&path, format!("record {j}: timestamp before the file's window")));
            }
            let expected = last_price.get(&*e.product_id);
            if expected != e.previous_price.as_ref() {
                return Err(fail(
                    &path,
                    format!(
                        "record {j}: previousPrice of {:?} is {:?}, expected {:?}",
                        e.product_id,
                        e.previous_price.as_ref().map(Price::as_str),
                        expected.map(Price::as_str)
                    ),
                ));
            }
            last_price.insert(Arc::clone(&e.product_id), e.price.clone());
            last_ts = Some(e.timestamp);
        }
        if let (Some(f), Some(l)) = (events.first(), events.last()) {
            if l.timestamp - f.timestamp >= crate::time::NANOS_PER_SEC {
                return Err(fail(&path, "records span a second or more (one file per window)".into()));
            }
        }
        next_seq = name.end_seq();
        last_window = Some(name.window_start);
        report.files += 1;
        report.events += events.len() as u64;
        progress(i + 1, total);
    }
    report.products = last_price.len();
    report.open_wal_files = fs::read_dir(data_dir.join("wal")).map(|d| d.count()).unwrap_or(0);
    Ok(report)
}
