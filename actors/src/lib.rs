//! The repricer actor system and its segment storage.
//!
//! ```text
//! HTTP ──► ProductRegistry ──► ProductActor (shard)  last-known prices, previousPrice
//!                                   ▼
//!                               Sequencer             seq#, timestamp, window boundaries
//!                                   ▼
//!                               FileSegment ──► SegmentWriter thread (WAL, group commit, seal)
//! HTTP ──► QueryPlanner ──► Catalog (segment metadata + durable tail) + cached segments
//!               └──────► SegmentReader threads (pages that open segment files)
//! ```

pub mod error;
pub mod event;
pub mod health;
pub mod metrics;
pub mod price;
pub mod product;
pub mod query;
pub mod registry;
pub mod segment;
pub mod sequencer;
pub mod system;
pub mod telemetry;
pub mod time;
pub mod verify;
