//! The HTTP API (R1–R5): thin handlers that translate requests into actor messages and the
//! answers back into responses.

pub mod admin;
pub mod admission;
pub mod error;
pub mod metrics;
pub mod product;
pub mod query;
pub mod reprice;

use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use repricer_actors::health::Health;
use repricer_actors::query::QueryPlanner;
use repricer_actors::registry::ProductRegistry;

use admission::Admission;

/// What every API handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// Routes reprices and price reads to the owning ProductActor.
    pub registry: Addr<ProductRegistry>,
    /// Answers history queries.
    pub planner: Addr<QueryPlanner>,
    /// Storage health (writes are refused after a storage failure).
    pub health: Arc<Health>,
    /// In-flight limit of `POST /api/reprice`.
    pub reprice_admission: Admission,
    /// In-flight limit of `GET /api/product/{id}/price`.
    pub product_admission: Admission,
    /// In-flight limit of `GET /api/query`.
    pub query_admission: Admission,
    /// How long a reprice waits for durability before answering 503.
    pub write_timeout: std::time::Duration,
    /// Mailbox-depth gauge of the ProductRegistry.
    pub registry_depth: prometheus::IntGauge,
    /// Mailbox-depth gauge of the QueryPlanner.
    pub planner_depth: prometheus::IntGauge,
}

/// Registers the API routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/reprice", web::post().to(reprice::reprice))
        .route("/api/product/{productId}/price", web::get().to(product::product_price))
        .route("/api/query", web::get().to(query::query));
}

/// The longest product id accepted (R1), in bytes of UTF-8.
pub const MAX_PRODUCT_ID_BYTES: usize = 256;

/// Checks the product id length rule shared by every endpoint.
pub fn check_product_id(id: &str, what: &str) -> Result<(), error::ApiError> {
    if id.is_empty() || id.len() > MAX_PRODUCT_ID_BYTES {
        return Err(error::ApiError::BadRequest(format!(
            "{what} must be 1 to {MAX_PRODUCT_ID_BYTES} bytes of UTF-8, got {} bytes",
            id.len()
        )));
    }
    Ok(())
}
