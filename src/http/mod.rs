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
        .service(web::resource(QUERY).route(get_or_head().to(query::query)).default_service(web::to(allow_get)))
        .service(web::resource(PRODUCT_PRICE).route(get_or_head().to(product::product_price)).default_service(web::to(allow_get)));
}

/// A route for GET and HEAD: HEAD is served wherever GET is (actix-web sends the headers and
/// drops the body).
pub fn get_or_head() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// A known path with a method it does not serve: 405 with `Allow: POST`.
pub async fn allow_post(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::MethodNotAllowed { method: req.method().to_string(), allow: "POST" })
}

/// A known path with a method it does not serve: 405 with `Allow: GET, HEAD`.
pub async fn allow_get(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::MethodNotAllowed { method: req.method().to_string(), allow: "GET, HEAD" })
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
        p if p.strip_prefix("/api/product/").and_then(|r| r.strip_suffix("/price")).is_some_and(|id| !id.is_empty() && !id.contains('/')) => {
            PRODUCT_PRICE
        }
        "/healthz/live" => "/healthz/live",
        "/healthz/ready" => "/healthz/ready",
        "/metrics" => "/metrics",
        _ => "unmatched",
    }
}

/// The request method as a metric label and span attribute: one of the methods HTTP defines,
/// or `_OTHER` (OpenTelemetry HTTP conventions), so that made-up methods cannot add series.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Percent-decodes one URL component strictly: a `%` not followed by two hex digits, or bytes
/// that are not UTF-8 once decoded, are a 400 naming `what` (never a lossy U+FFFD, which would
/// silently select another product).
pub fn percent_decode_strict(raw: &str, what: &str) -> Result<String, error::ApiError> {
    let bytes = raw.as_bytes();
    let bad_escape = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%' && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if bad_escape {
        return Err(error::ApiError::BadRequest(format!("{what} has a % that is not followed by two hex digits (write a literal % as %25)")));
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| error::ApiError::BadRequest(format!("{what} is not valid UTF-8 once percent-decoded")))
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
