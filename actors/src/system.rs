//! Wiring: starts the writer thread and every actor from a recovered state.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::product::{LastPrice, ProductActor};
use crate::query::{QueryPlanner, SegmentCache};
use crate::registry::{shard_of, ProductRegistry};
use crate::segment::checkpoint::{CheckpointRequest, Checkpointer};
use crate::segment::data_dir::DataDir;
use crate::segment::recovery::Recovered;
use crate::segment::writer::SegmentWriter;
use crate::segment::FileSegment;
use crate::sequencer::{SealAndFlush, Sequencer};

/// The actor system's settings (a subset of the service configuration).
#[derive(Clone, Debug)]
pub struct SystemConfig {
    /// Length of a segment window.
    pub window: Duration,
    /// Capacity of every bounded mailbox.
    pub mailbox_capacity: usize,
    /// Number of ProductActor shards.
    pub product_shards: usize,
    /// Number of QueryPlanner threads.
    pub query_threads: usize,
    /// Parsed segments kept in memory for queries.
    pub segment_cache: usize,
    /// How often the Checkpointer folds new segments into the checkpoint.
    pub checkpoint_interval: Duration,
}

/// Addresses of the running actors.
pub struct ActorSystem {
    /// Entry point for reprices and price reads.
    pub registry: Addr<ProductRegistry>,
    /// Entry point for history queries.
    pub planner: Addr<QueryPlanner>,
    /// The single Sequencer (for shutdown).
    pub sequencer: Addr<Sequencer>,
    checkpoints: mpsc::Sender<CheckpointRequest>,
}

impl ActorSystem {
    /// Starts everything on the current actix system. `recovered` comes from
    /// [`crate::segment::recovery::recover`] on the same `dir`.
    pub fn start(config: &SystemConfig, dir: DataDir, recovered: Recovered, health: Arc<Health>, metrics: Metrics) -> ActorSystem {
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
            .spawn(move || checkpointer.run(checkpoint_requests))
            .expect("spawn checkpointer thread");
        let catalog = Arc::new(RwLock::new(recovered.catalog));
        let (jobs, job_queue) = mpsc::channel();
        let writer = SegmentWriter::new(Arc::new(dir), Arc::clone(&catalog), Arc::clone(&health), metrics.clone());
        std::thread::Builder::new()
            .name("segment-writer".into())
            .spawn(move || writer.run(job_queue))
            .expect("spawn segment writer thread");
        let segment = FileSegment::new(jobs, metrics.depth("SegmentWriter")).start();
        let sequencer = Sequencer::new(recovered.start, config.window, segment, health, metrics.clone(), config.mailbox_capacity).start();
        let shards = config.product_shards.max(1);
        let mut parts: Vec<Vec<(Arc<str>, LastPrice)>> = (0..shards).map(|_| Vec::new()).collect();
        for (id, last) in recovered.prices {
            parts[shard_of(&id, shards)].push((id, last));
        }
        let shard_addrs = parts
            .into_iter()
            .map(|prices| ProductActor::new(prices, sequencer.clone(), metrics.depth("Sequencer"), config.mailbox_capacity).start())
            .collect();
        let registry = ProductRegistry::new(shard_addrs, metrics.depth("ProductActor"), config.mailbox_capacity).start();
        let cache = Arc::new(SegmentCache::new(config.segment_cache));
        let planner = SyncArbiter::start(config.query_threads.max(1), move || {
            QueryPlanner::new(Arc::clone(&catalog), Arc::clone(&cache), results.clone(), metrics.clone())
        });
        ActorSystem { registry, planner, sequencer, checkpoints }
    }

    /// Seals the open window and waits until everything acknowledged is on disk.
    pub async fn seal_and_flush(&self) {
        let _ = self.sequencer.send(SealAndFlush).await;
    }

    /// Writes a checkpoint covering every sealed segment and waits for it (shutdown).
    pub async fn checkpoint_now(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.checkpoints.send(CheckpointRequest::Now(done)).is_ok() {
            let _ = wait.await;
        }
    }
}
