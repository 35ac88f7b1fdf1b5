//! Wiring: starts the storage threads and every actor from a recovered state.
//!
//! The two are started apart: the storage threads first, from the thread that recovered, and
//! the actors later on the arbiter that will send them most messages (the HTTP worker), so that
//! a request does not cross threads on its way through the actors.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;

use crate::health::Health;
use crate::metrics::Metrics;

use crate::product::{LastPrice, ProductActor, ProductMap};
use crate::query::pages::{PagePlanner, SegmentCache};
use crate::query::reader::SegmentReader;
use crate::query::QueryPlanner;
use crate::registry::{shard_of, ProductRegistry};
use crate::segment::checkpoint::{CheckpointRequest, Checkpointer};
use crate::segment::data_dir::DataDir;
use crate::query::catalog::Catalog;
use crate::segment::writer::{SegmentWriter, WriteJob};
use crate::segment::FileSegment;
use crate::sequencer::{SequenceStart, Sequencer};

/// The actor system's settings (a subset of the service configuration).
#[derive(Clone, Debug)]
pub struct SystemConfig {
    /// Length of a segment window.
    pub window: Duration,
    /// Capacity of every bounded mailbox.
    pub mailbox_capacity: usize,
    /// Number of ProductActor shards.
    pub product_shards: usize,
    /// Number of SegmentReader threads (queries that open segment files).
    pub query_threads: usize,
    /// Parsed segments kept in memory for queries.
    pub segment_cache: usize,
    /// Estimated memory those parsed segments may take.
    pub segment_cache_bytes: u64,
    /// How often the Checkpointer folds new segments into the checkpoint.
    pub checkpoint_interval: Duration,
}

/// The threads that own the files: the SegmentWriter and the Checkpointer.
pub struct StorageThreads {
    jobs: mpsc::Sender<WriteJob>,
    checkpoints: mpsc::Sender<CheckpointRequest>,
    catalog: Arc<RwLock<Catalog>>,
    results: PathBuf,
}

/// Lowers the calling thread's scheduling priority to nice 10: background work (file reads
/// for queries, checkpoints) then yields the cores to request handling when they are busy, and
/// still runs at full speed when they are not.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id only changes its scheduling weight.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

impl StorageThreads {
    /// Starts both threads on an opened, recovered data directory; `catalog` is the recovered
    /// segment metadata.
    pub fn start(config: &SystemConfig, dir: DataDir, catalog: Catalog, health: Arc<Health>, metrics: Metrics) -> StorageThreads {
        let results: PathBuf = dir.results.clone();
        let checkpointer = Checkpointer {
            root: dir.root.clone(),
            staging: dir.staging.clone(),
            results: dir.results.clone(),
            interval: config.checkpoint_interval,
            metrics: metrics.clone(),
        };
        let (checkpoints, checkpoint_requests) = mpsc::channel();
        std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || {
                // Folding a busy half-minute into the checkpoint takes seconds of CPU; under
                // contention requests go first (the checkpoint only bounds start-up time).
                lower_thread_priority();
                checkpointer.run(checkpoint_requests)
            })
            .expect("spawn checkpointer thread");
        let catalog = Arc::new(RwLock::new(catalog));
        let (jobs, job_queue) = mpsc::channel();
        let writer = SegmentWriter::new(Arc::new(dir), Arc::clone(&catalog), health, metrics);
        std::thread::Builder::new()
            .name("segment-writer".into())
            .spawn(move || writer.run(job_queue))
            .expect("spawn segment writer thread");
        StorageThreads { jobs, checkpoints, catalog, results }
    }

    /// Shutdown, once no request is in flight: seals the open window and waits until it is in
    /// `results/`. The writer refuses every later job.
    pub async fn seal_and_stop(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.jobs.send(WriteJob::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes a checkpoint covering every sealed segment and waits for it (shutdown).
    pub async fn checkpoint_now(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.checkpoints.send(CheckpointRequest::Now(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Addresses of the running actors.
#[derive(Clone)]
pub struct ActorSystem {
    /// Entry point for reprices and price reads.
    pub registry: Addr<ProductRegistry>,
    /// Entry point for history queries.
    pub planner: Addr<QueryPlanner>,
    /// The same planner, not started: [`ActorSystem::start_planner`] starts copies of it.
    unstarted_planner: QueryPlanner,
}

impl ActorSystem {
    /// Starts every actor on the current arbiter (the SegmentReaders on threads of their own),
    /// from the recovered `prices` and sequence `start`, writing through `storage`.
    pub fn start(
        config: &SystemConfig,
        storage: &StorageThreads,
        prices: ProductMap<LastPrice>,
        start: SequenceStart,
        health: Arc<Health>,
        metrics: Metrics,
    ) -> ActorSystem {
        let segment = FileSegment::new(storage.jobs.clone(), metrics.depth("SegmentWriter")).start();
        let sequencer = Sequencer::new(start, config.window, segment, health, metrics.clone(), config.mailbox_capacity).start();
        let shards = config.product_shards.max(1);
        let mut parts: Vec<Vec<(Arc<str>, LastPrice)>> = (0..shards).map(|_| Vec::new()).collect();
        for (id, last) in prices {
            parts[shard_of(&id, shards)].push((id, last));
        }
        let shard_addrs = parts
            .into_iter()
            .map(|prices| ProductActor::new(prices, sequencer.clone(), metrics.depth("Sequencer"), config.mailbox_capacity).start())
            .collect();
        let registry = ProductRegistry::new(shard_addrs, metrics.depth("ProductActor"), config.mailbox_capacity).start();
        let cache = Arc::new(SegmentCache::new(config.segment_cache, config.segment_cache_bytes, metrics.segment_cache_bytes.clone()));
        let pages = Arc::new(PagePlanner::new(Arc::clone(&storage.catalog), cache, storage.results.clone(), metrics.clone()));
        let reader_pages = Arc::clone(&pages);
        let readers = SyncArbiter::start(config.query_threads.max(1), move || SegmentReader::new(Arc::clone(&reader_pages)));
        let unstarted_planner = QueryPlanner::new(pages, readers, metrics.depth("SegmentReader"), config.mailbox_capacity);
        let planner = unstarted_planner.clone().start();
        ActorSystem { registry, planner, unstarted_planner }
    }

    /// Starts another QueryPlanner, on the current arbiter, over the same catalog, cache and
    /// readers: an HTTP worker that does not run the actors plans its own pages with it.
    pub fn start_planner(&self) -> Addr<QueryPlanner> {
        self.unstarted_planner.clone().start()
    }
}
