//! The SegmentSealer: the thread that turns a finished window into its segment file (R7).
//!
//! Sealing a busy second (encode its records as JSON, write, fsync, rename into `results/`,
//! remove the WAL) takes tens of milliseconds. Its records are already durable in the window's
//! WAL and acknowledged, so no request waits for the seal: the SegmentWriter hands the finished
//! window over and goes on committing the next one. Windows are sealed one at a time, in the
//! order they were handed over, so `results/` grows in time order without gaps; the catalog
//! moves a window's events from its tail into a sealed segment only once the file is in place.
//! A crash before the seal leaves the WAL, which recovery completes.

use std::fs;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use opentelemetry::trace::SpanContext;
use prometheus::IntGauge;
use tracing::Span;

use crate::error::StorageError;
use crate::event::Event;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::query::catalog::{Catalog, SealedSegment};
use crate::segment::data_dir::{write_atomically, DataDir};
use crate::segment::format::{encode_segment, SegmentName};
use crate::telemetry::link_contexts;
use crate::time::Nanos;

/// A window whose events are all durable in its WAL and published to the catalog's tail.
pub struct FinishedWindow {
    /// Window start.
    pub start: Nanos,
    /// Its WAL file in `wal/`, removed once the segment is in `results/`.
    pub wal_name: String,
    /// Its records in sequence order (at least one).
    pub events: Vec<Event>,
    /// The request spans of its first events, linked from the seal span.
    pub links: Vec<SpanContext>,
}

/// The sealer thread's state.
struct SegmentSealer {
    dir: Arc<DataDir>,
    catalog: Arc<RwLock<Catalog>>,
    health: Arc<Health>,
    metrics: Metrics,
    queue_depth: IntGauge,
}

/// The writer's end of the sealer thread.
pub struct SealerHandle {
    windows: Sender<FinishedWindow>,
    queue_depth: IntGauge,
    thread: JoinHandle<()>,
}

impl SealerHandle {
    /// Starts the sealer thread over an opened data directory.
    pub fn start(dir: Arc<DataDir>, catalog: Arc<RwLock<Catalog>>, health: Arc<Health>, metrics: Metrics) -> SealerHandle {
        let queue_depth = metrics.depth("SegmentSealer");
        let sealer = SegmentSealer { dir, catalog, health, metrics, queue_depth: queue_depth.clone() };
        let (windows, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("segment-sealer".into())
            .spawn(move || sealer.run(queue))
            .expect("spawn segment sealer thread");
        SealerHandle { windows, queue_depth, thread }
    }

    /// Queues a finished window for sealing (after every earlier one).
    pub fn seal(&self, window: FinishedWindow) {
        self.queue_depth.inc();
        if self.windows.send(window).is_err() {
            // The sealer stopped after a storage failure; the WAL stays for recovery.
            self.queue_depth.dec();
        }
    }

    /// Waits until every queued window is sealed (or sealing has failed), then stops the thread.
    pub fn finish(self) {
        drop(self.windows);
        let _ = self.thread.join();
    }
}

impl SegmentSealer {
    fn run(self, windows: Receiver<FinishedWindow>) {
        for window in windows {
            self.queue_depth.dec();
            if self.health.storage_failed() {
                continue;
            }
            if let Err(error) = self.seal_window(window) {
                tracing::error!(%error, "storage write failed while sealing a window; refusing writes until restart");
                self.health.mark_storage_failed();
            }
        }
    }

    /// Writes the window's segment file into `results/`, removes its WAL, and tells the catalog.
    fn seal_window(&self, window: FinishedWindow) -> Result<(), StorageError> {
        let started = Instant::now();
        let span = if window.links.is_empty() {
            Span::none()
        } else {
            tracing::info_span!("FileSegment seal window", records = window.events.len() as i64)
        };
        link_contexts(&span, &window.links);
        let _span = span.entered();
        let name = SegmentName { window_start: window.start, first_seq: window.events[0].seq, count: window.events.len() as u32 };
        let bytes = encode_segment(&window.events);
        write_atomically(&self.dir.staging, &self.dir.results, &name.file_name(), &bytes)?;
        let wal_path = self.dir.wal.join(&window.wal_name);
        fs::remove_file(&wal_path).map_err(StorageError::io("remove sealed WAL", &wal_path))?;
        let sealed = SealedSegment::new(name, &window.events, bytes.len() as u64);
        let moved = self.catalog.write().expect("catalog lock poisoned").seal_tail(sealed);
        drop(moved);
        self.metrics.segments_sealed.inc();
        self.metrics.seal_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}
