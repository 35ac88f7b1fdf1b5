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

const REPRICE: &str = "/api/reprice";
const PRODUCT_PRICE: &str = "/api/product/{productId}/price";
const QUERY: &str = "/api/query";

/// Registers the API routes; a known path with another method gets 405 with `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Static paths first: the router tries resources in order, and only the product path
    // needs a pattern match.
    cfg.service(web::resource(REPRICE).route(web::post().to(reprice::reprice)).default_service(web::to(allow_post)))
        .service(web::resource(QUERY).route(web::get().to(query::query)).default_service(web::to(allow_get)))
        .service(web::resource(PRODUCT_PRICE).route(web::get().to(product::product_price)).default_service(web::to(allow_get)));
}

async fn allow_post(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::MethodNotAllowed { method: req.method().to_string(), allow: "POST" })
}

async fn allow_get(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::MethodNotAllowed { method: req.method().to_string(), allow: "GET" })
}

/// Any other path: a JSON 404.
pub async fn no_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::NoRoute(req.path().to_string()))
}

/// The route template a path belongs to, for span names and metric labels (never the raw
/// path, which would make one series per product). Cheaper than asking the router again.
pub fn route_template(path: &str) -> &'static str {
    match path {
        REPRICE => REPRICE,
        QUERY => QUERY,
        p if p.starts_with("/api/product/") && p.ends_with("/price") => PRODUCT_PRICE,
        "/healthz/live" => "/healthz/live",
        "/healthz/ready" => "/healthz/ready",
        "/metrics" => "/metrics",
        _ => "unmatched",
    }
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
