//! Configuration (R13): one typed struct per subcommand, from flags or `REPRICER_*` variables,
//! validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use repricer_actors::system::SystemConfig;

/// Price-ingest and price-history service.
#[derive(Parser, Debug)]
#[command(name = "repricer", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeConfig),
    /// Check every storage invariant of a data directory (R10).
    Verify(VerifyConfig),
}

/// Settings of `repricer serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address of the API (reprice, product price, query).
    #[arg(long, env = "REPRICER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin endpoints (/metrics, /healthz/live, /healthz/ready).
    #[arg(long, env = "REPRICER_ADMIN_LISTEN", default_value = "0.0.0.0:9102")]
    pub admin_listen: SocketAddr,
    /// Directory holding results/ (segment files) and the write-ahead log.
    #[arg(long, env = "REPRICER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Product price reads allowed in flight; the excess gets 503 at once.
    #[arg(long, env = "REPRICER_PRODUCT_MAX_INFLIGHT", default_value_t = 50)]
    pub product_max_inflight: usize,
    /// Queries allowed in flight (until the body is written); the excess gets 503 at once.
    #[arg(long, env = "REPRICER_QUERY_MAX_INFLIGHT", default_value_t = 50)]
    pub query_max_inflight: usize,
    /// Reprices allowed in flight (waiting for fsync); the excess gets 503 at once.
    #[arg(long, env = "REPRICER_REPRICE_MAX_INFLIGHT", default_value_t = 4096)]
    pub reprice_max_inflight: usize,
    /// Length of a segment window: one file in results/ per window with events (10ms..=1s).
    #[arg(long, env = "REPRICER_WINDOW", default_value = "1s", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// How long a reprice waits for its fsync before answering 503 (a stalled disk never hangs
    /// crawlers).
    #[arg(long, env = "REPRICER_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests before closing them.
    #[arg(long, env = "REPRICER_DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Capacity of each actor mailbox; a full mailbox answers 503.
    #[arg(long, env = "REPRICER_MAILBOX_CAPACITY", default_value_t = 8192)]
    pub mailbox_capacity: usize,
    /// Number of ProductActor shards owning last-known prices.
    #[arg(long, env = "REPRICER_PRODUCT_SHARDS", default_value_t = 16)]
    pub product_shards: usize,
    /// Threads that read segment files for queries whose segments are not in memory.
    #[arg(long, env = "REPRICER_QUERY_THREADS", default_value_t = 2)]
    pub query_threads: usize,
    /// Parsed segment files kept in memory for queries, at most.
    #[arg(long, env = "REPRICER_SEGMENT_CACHE", default_value_t = 256)]
    pub segment_cache: usize,
    /// Memory the parsed segments of the query cache may take, in MiB (estimated; a busy
    /// second parses to tens of MiB, so the segment count alone does not bound memory).
    #[arg(long, env = "REPRICER_SEGMENT_CACHE_MIB", default_value_t = 256)]
    pub segment_cache_mib: usize,
    /// How often the last-known prices and the catalog are checkpointed (start-up replays
    /// only what was sealed after the last checkpoint).
    #[arg(long, env = "REPRICER_CHECKPOINT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: Duration,
    /// HTTP worker threads for the API (0 = one per CPU). With one, the actors run on that
    /// worker's thread and no request crosses threads; more parse HTTP in parallel but hand
    /// every request to the actors' thread.
    #[arg(long, env = "REPRICER_HTTP_WORKERS", default_value_t = 1)]
    pub http_workers: usize,
}

/// Settings of `repricer verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyConfig {
    /// The data directory to check (the one holding results/).
    #[arg(long, env = "REPRICER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Print the outcome as one JSON object instead of text and a progress bar.
    #[arg(long)]
    pub json: bool,
}

/// A setting that cannot work, in one line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ServeConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("--product-max-inflight", self.product_max_inflight),
            ("--query-max-inflight", self.query_max_inflight),
            ("--reprice-max-inflight", self.reprice_max_inflight),
            ("--mailbox-capacity", self.mailbox_capacity),
            ("--product-shards", self.product_shards),
            ("--query-threads", self.query_threads),
            ("--segment-cache", self.segment_cache),
            ("--segment-cache-mib", self.segment_cache_mib),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("{flag} must be at least 1")));
        }
        if self.window < Duration::from_millis(10) || self.window > Duration::from_secs(1) {
            return Err(ConfigError(format!("--window must be between 10ms and 1s, got {}", humantime::format_duration(self.window))));
        }
        if self.http_workers > 512 {
            return Err(ConfigError(format!("--http-workers must be at most 512, got {}", self.http_workers)));
        }
        if self.write_timeout < Duration::from_millis(100) {
            return Err(ConfigError("--write-timeout must be at least 100ms".into()));
        }
        if self.checkpoint_interval < Duration::from_secs(1) {
            return Err(ConfigError("--checkpoint-interval must be at least 1s".into()));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError(format!("--listen and --admin-listen are both {}", self.listen)));
        }
        Ok(())
    }

    /// The part the actor system needs.
    pub fn system(&self) -> SystemConfig {
        SystemConfig {
            window: self.window,
            mailbox_capacity: self.mailbox_capacity,
            product_shards: self.product_shards,
            query_threads: self.query_threads,
            segment_cache: self.segment_cache,
            segment_cache_bytes: self.segment_cache_mib as u64 * 1024 * 1024,
            checkpoint_interval: self.checkpoint_interval,
        }
    }
}
