//! Prometheus metrics of the actor system (R12). The HTTP layer registers its own in the
//! same registry.

use prometheus::{exponential_buckets, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// Every metric the actors record, registered in one [`Registry`] served at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    /// The registry the admin endpoint renders.
    pub registry: Registry,
    /// Events given a sequence number.
    pub events_sequenced: IntCounter,
    /// Segment files sealed into `results/`.
    pub segments_sealed: IntCounter,
    /// Duration of each WAL fdatasync.
    pub fsync_seconds: Histogram,
    /// Time to write one segment file into `results/` (off the commit path).
    pub seal_seconds: Histogram,
    /// Events made durable by one group commit.
    pub events_per_commit: Histogram,
    /// Messages waiting in each actor kind's mailbox.
    pub mailbox_depth: IntGaugeVec,
    /// Seconds the last start-up recovery took (gauge, set once).
    pub recovery_seconds: prometheus::Gauge,
    /// Unix time of the last checkpoint written.
    pub checkpoint_timestamp: IntGauge,
    /// Segment files opened by queries (cache misses).
    pub segments_opened: IntCounter,
    /// Estimated memory of the parsed segments cached for queries.
    pub segment_cache_bytes: IntGauge,
}

impl Metrics {
    /// The mailbox-depth gauge of one actor kind.
    pub fn depth(&self, actor: &str) -> IntGauge {
        self.mailbox_depth.with_label_values(&[actor])
    }

    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            events_sequenced: IntCounter::new("repricer_events_sequenced_total", "Events given a sequence number").unwrap(),
            segments_sealed: IntCounter::new("repricer_segments_sealed_total", "Segment files sealed into results/").unwrap(),
            fsync_seconds: Histogram::with_opts(
                HistogramOpts::new("repricer_fsync_duration_seconds", "Duration of one group-commit fdatasync")
                    .buckets(exponential_buckets(0.0001, 2.0, 16).unwrap()),
            )
            .unwrap(),
            seal_seconds: Histogram::with_opts(
                HistogramOpts::new("repricer_segment_seal_duration_seconds", "Time to write one segment file into results/ (encode, write, fsync, rename)")
                    .buckets(exponential_buckets(0.0005, 2.0, 14).unwrap()),
            )
            .unwrap(),
            events_per_commit: Histogram::with_opts(
                HistogramOpts::new("repricer_commit_events", "Events made durable by one group commit")
                    .buckets(exponential_buckets(1.0, 2.0, 16).unwrap()),
            )
            .unwrap(),
            mailbox_depth: IntGaugeVec::new(Opts::new("repricer_mailbox_depth", "Messages waiting in actor mailboxes"), &["actor"]).unwrap(),
            recovery_seconds: prometheus::Gauge::new("repricer_recovery_duration_seconds", "Time the last start-up recovery took").unwrap(),
            checkpoint_timestamp: IntGauge::new("repricer_checkpoint_timestamp_seconds", "Unix time at which the checkpoint last covered every sealed segment").unwrap(),
            segments_opened: IntCounter::new("repricer_query_segments_opened_total", "Segment files read from disk by queries").unwrap(),
            segment_cache_bytes: IntGauge::new("repricer_query_segment_cache_bytes", "Estimated memory of the parsed segments cached for queries").unwrap(),
            registry,
        };
        m.registry.register(Box::new(m.events_sequenced.clone())).unwrap();
        m.registry.register(Box::new(m.segments_sealed.clone())).unwrap();
        m.registry.register(Box::new(m.fsync_seconds.clone())).unwrap();
        m.registry.register(Box::new(m.seal_seconds.clone())).unwrap();
        m.registry.register(Box::new(m.events_per_commit.clone())).unwrap();
        m.registry.register(Box::new(m.mailbox_depth.clone())).unwrap();
        m.registry.register(Box::new(m.recovery_seconds.clone())).unwrap();
        m.registry.register(Box::new(m.checkpoint_timestamp.clone())).unwrap();
        m.registry.register(Box::new(m.segments_opened.clone())).unwrap();
        m.registry.register(Box::new(m.segment_cache_bytes.clone())).unwrap();
        m
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
