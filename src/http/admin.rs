//! The admin port (R12): liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use prometheus::{Encoder, Registry, TextEncoder};
use repricer_actors::health::Health;

use crate::http::{allow_get, get_or_head, no_route};

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Process health.
    pub health: Arc<Health>,
    /// Every metric of the process.
    pub registry: Registry,
}

/// Registers the admin routes: GET and HEAD each; another method gets 405 with `Allow`, and an
/// unknown path the same JSON 404 as on the API port.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz/live").route(get_or_head().to(live)).default_service(web::to(allow_get)))
        .service(web::resource("/healthz/ready").route(get_or_head().to(ready)).default_service(web::to(allow_get)))
        .service(web::resource("/metrics").route(get_or_head().to(metrics)).default_service(web::to(allow_get)))
        .default_service(web::to(no_route));
}

fn status(ok: bool, what: &str) -> HttpResponse {
    let body = serde_json::json!({ "status": if ok { "ok" } else { what } }).to_string();
    if ok { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() }.content_type("application/json").body(body)
}

/// 200 while the process can do its job; 503 after a storage failure (restart to recover).
async fn live(state: web::Data<AdminState>) -> HttpResponse {
    status(state.health.is_live(), "storage failed; restart to recover")
}

/// 200 once recovered, until shutdown starts or storage fails.
async fn ready(state: web::Data<AdminState>) -> HttpResponse {
    status(state.health.is_ready(), "not ready")
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let mut out = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut out) {
        Ok(()) => HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}
