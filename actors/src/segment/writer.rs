//! The SegmentWriter: the one thread that touches segment files.
//!
//! It takes [`WriteJob`]s from the FileSegment actor in order and does group commit: it blocks
//! for one job, then drains every job already queued, writes them all, and issues one
//! fdatasync for the lot. Jobs that arrive during that fsync form the next batch. Only after the
//! fsync are the events published to the catalog and their requests released.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use prometheus::IntGauge;
use tokio::sync::oneshot;
use tracing::Span;

use crate::error::{ActorError, StorageError};
use crate::event::Event;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::query::catalog::Catalog;
use crate::segment::data_dir::{sync_dir, write_atomically, DataDir};
use crate::segment::format::{encode_segment, encode_wal_line, wal_file_name, SegmentName};
use crate::telemetry::{link_contexts, link_spans, span_context, MAX_LINKS};
use crate::time::Nanos;

/// Where an event's request waits for durability.
pub type Waiter = oneshot::Sender<Result<Ack, ActorError>>;

/// Sent to a waiting request once its event is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The event's sequence number.
    pub seq: u64,
    /// The event's timestamp.
    pub timestamp: Nanos,
}

/// Work for the writer thread, in sequence order.
pub enum WriteJob {
    /// Append an event to the WAL of its window.
    Append {
        /// The sequenced event.
        event: Event,
        /// Start of the window the Sequencer put it in.
        window_start: Nanos,
        /// The request to release once durable.
        waiter: Waiter,
        /// The request's span, linked from the commit span.
        span: Span,
    },
    /// Seal the window: its segment file appears in `results/`.
    Seal {
        /// Start of the window to seal.
        window_start: Nanos,
    },
    /// Shutdown: seal whatever window is open, reply once it is in `results/`, and stop.
    /// Jobs after it are refused.
    Close(oneshot::Sender<()>),
}

struct OpenWindow {
    start: Nanos,
    wal: File,
    wal_name: String,
    events: Vec<Event>,
    /// The request spans of its first events, linked from the seal span.
    links: Vec<opentelemetry::trace::SpanContext>,
}

/// The state of the writer thread.
pub struct SegmentWriter {
    dir: Arc<DataDir>,
    open: Option<OpenWindow>,
    catalog: Arc<RwLock<Catalog>>,
    health: Arc<Health>,
    metrics: Metrics,
    queue_depth: IntGauge,
    closed: bool,
}

/// Most jobs taken into one batch, so that a flood cannot delay its first acks without bound.
const MAX_BATCH: usize = 65_536;

enum Published {
    Event(Event),
    Sealed(SegmentName, u64),
}

/// Answers jobs that will not be written: appends get `error`, closes are collected.
fn refuse(jobs: impl IntoIterator<Item = WriteJob>, error: ActorError, closers: &mut Vec<oneshot::Sender<()>>) {
    for job in jobs {
        match job {
            WriteJob::Append { waiter, .. } => {
                let _ = waiter.send(Err(error.clone()));
            }
            WriteJob::Close(done) => closers.push(done),
            WriteJob::Seal { .. } => {}
        }
    }
}

impl SegmentWriter {
    /// A writer over an opened data directory; `catalog` receives what becomes durable.
    pub fn new(dir: Arc<DataDir>, catalog: Arc<RwLock<Catalog>>, health: Arc<Health>, metrics: Metrics) -> SegmentWriter {
        let queue_depth = metrics.depth("SegmentWriter");
        SegmentWriter { dir, open: None, catalog, health, metrics, queue_depth, closed: false }
    }

    /// Runs until a [`WriteJob::Close`] or until every sender of `jobs` is gone.
    pub fn run(mut self, jobs: Receiver<WriteJob>) {
        let mut batch = Vec::new();
        while !self.closed {
            let Ok(first) = jobs.recv() else { break };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                }
            }
            self.queue_depth.sub(batch.len() as i64);
            self.commit(&mut batch);
        }
    }

    fn commit(&mut self, batch: &mut Vec<WriteJob>) {
        let mut waiters: Vec<(Waiter, Ack)> = Vec::new();
        let mut closers = Vec::new();
        let mut published = Vec::new();
        let mut spans = Vec::new();
        // Jobs a failed write left unprocessed; they are answered below rather than dropped.
        let mut unwritten = Vec::new();
        let result = if self.health.storage_failed() {
            Err(None)
        } else {
            let traced = self.serves_traced_request(batch);
            let commit_span =
                if traced { tracing::info_span!("FileSegment group commit", events = tracing::field::Empty) } else { Span::none() };
            let mut jobs = batch.drain(..);
            // Entered, so that the seal of a window done in this batch nests under it.
            let r = commit_span.in_scope(|| self.write_batch(&mut jobs, &mut waiters, &mut closers, &mut published, &mut spans));
            unwritten.extend(jobs);
            commit_span.record("events", waiters.len());
            link_spans(&commit_span, &spans);
            r.map_err(Some)
        };
        match result {
            Ok(()) => {
                // A batch that only sealed a window made no event durable: not a commit of events.
                if !waiters.is_empty() {
                    self.metrics.events_per_commit.observe(waiters.len() as f64);
                }
                let mut catalog = self.catalog.write().expect("catalog lock poisoned");
                for p in published {
                    match p {
                        Published::Event(e) => catalog.push_tail(e),
                        Published::Sealed(name, bytes) => catalog.seal_tail(name, bytes),
                    }
                }
                drop(catalog);
                for (waiter, ack) in waiters {
                    let _ = waiter.send(Ok(ack));
                }
                refuse(unwritten, ActorError::ShuttingDown, &mut closers);
            }
            Err(error) => {
                if let Some(error) = error {
                    tracing::error!(%error, "storage write failed; refusing writes until restart");
                }
                self.health.mark_storage_failed();
                for (waiter, _) in waiters {
                    let _ = waiter.send(Err(ActorError::StorageUnavailable));
                }
                refuse(unwritten.into_iter().chain(batch.drain(..)), ActorError::StorageUnavailable, &mut closers);
            }
        }
        if !closers.is_empty() {
            self.closed = true;
        }
        for done in closers {
            let _ = done.send(());
        }
    }

    /// Whether the batch serves a traced (sampled) request: it appends one, or it seals the open
    /// window, which holds one. Only then is its group commit traced.
    fn serves_traced_request(&self, batch: &[WriteJob]) -> bool {
        let open_traced = self.open.as_ref().filter(|w| !w.links.is_empty()).map(|w| w.start);
        batch.iter().any(|job| match job {
            WriteJob::Append { span, window_start, .. } => !span.is_disabled() || open_traced.is_some_and(|s| s != *window_start),
            WriteJob::Seal { window_start } => open_traced == Some(*window_start),
            WriteJob::Close(_) => open_traced.is_some(),
        })
    }

    fn write_batch(
        &mut self,
        jobs: &mut impl Iterator<Item = WriteJob>,
        waiters: &mut Vec<(Waiter, Ack)>,
        closers: &mut Vec<oneshot::Sender<()>>,
        published: &mut Vec<Published>,
        spans: &mut Vec<Span>,
    ) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        for job in jobs.by_ref() {
            match job {
                WriteJob::Append { event, window_start, waiter, span } => {
                    if self.open.as_ref().is_none_or(|w| w.start != window_start) {
                        self.flush_wal(&mut buf)?;
                        if let Some(stale) = self.open.as_ref().map(|w| w.start) {
                            published.extend(self.seal(stale)?.map(|(n, b)| Published::Sealed(n, b)));
                        }
                        self.open_window(window_start)?;
                    }
                    encode_wal_line(&event, &mut buf);
                    waiters.push((waiter, Ack { seq: event.seq, timestamp: event.timestamp }));
                    let window = self.open.as_mut().expect("window opened above");
                    if window.links.len() < MAX_LINKS {
                        window.links.extend(span_context(&span));
                    }
                    spans.push(span);
                    window.events.push(event.clone());
                    published.push(Published::Event(event));
                }
                WriteJob::Seal { window_start } => {
                    self.flush_wal(&mut buf)?;
                    published.extend(self.seal(window_start)?.map(|(n, b)| Published::Sealed(n, b)));
                }
                WriteJob::Close(done) => {
                    self.flush_wal(&mut buf)?;
                    if let Some(open) = self.open.as_ref().map(|w| w.start) {
                        published.extend(self.seal(open)?.map(|(n, b)| Published::Sealed(n, b)));
                    }
                    closers.push(done);
                    // What follows a Close stays in `jobs` and is refused by the caller.
                    return Ok(());
                }
            }
        }
        self.flush_wal(&mut buf)
    }

    fn open_window(&mut self, start: Nanos) -> Result<(), StorageError> {
        let wal_name = wal_file_name(start);
        let path = self.dir.wal.join(&wal_name);
        let wal = OpenOptions::new().create(true).append(true).open(&path).map_err(StorageError::io("create WAL", &path))?;
        sync_dir(&self.dir.wal)?;
        self.open = Some(OpenWindow { start, wal, wal_name, events: Vec::new(), links: Vec::new() });
        Ok(())
    }

    /// Writes `buf` to the open WAL and fdatasyncs it.
    fn flush_wal(&mut self, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        if buf.is_empty() {
            return Ok(());
        }
        let window = self.open.as_mut().expect("events imply an open window");
        let path = self.dir.wal.join(&window.wal_name);
        window.wal.write_all(buf).map_err(StorageError::io("append to WAL", &path))?;
        let started = Instant::now();
        window.wal.sync_data().map_err(StorageError::io("fdatasync WAL", &path))?;
        self.metrics.fsync_seconds.observe(started.elapsed().as_secs_f64());
        buf.clear();
        Ok(())
    }

    /// Seals the open window if it starts at `start`: segment file into `results/`, WAL removed.
    fn seal(&mut self, start: Nanos) -> Result<Option<(SegmentName, u64)>, StorageError> {
        if self.open.as_ref().is_none_or(|w| w.start != start) {
            return Ok(None);
        }
        let window = self.open.take().expect("checked above");
        let span = if window.links.is_empty() {
            Span::none()
        } else {
            tracing::info_span!("FileSegment seal window", records = window.events.len())
        };
        link_contexts(&span, &window.links);
        let _span = span.entered();
        let name = SegmentName { window_start: start, first_seq: window.events[0].seq, count: window.events.len() as u32 };
        let bytes = encode_segment(&window.events);
        write_atomically(&self.dir.staging, &self.dir.results, &name.file_name(), &bytes)?;
        let wal_path = self.dir.wal.join(&window.wal_name);
        fs::remove_file(&wal_path).map_err(StorageError::io("remove sealed WAL", &wal_path))?;
        self.metrics.segments_sealed.inc();
        Ok(Some((name, bytes.len() as u64)))
    }
}
