//! HTTP server metrics (OpenTelemetry semantic conventions, in Prometheus form).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Metrics the HTTP layer records.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `http_server_request_duration_seconds{http_request_method,http_route,http_response_status_code}`.
    pub duration: HistogramVec,
    /// Requests refused by admission control, by endpoint.
    pub rejections: IntCounterVec,
}

impl HttpMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> HttpMetrics {
        let duration = HistogramVec::new(
            HistogramOpts::new("http_server_request_duration_seconds", "Duration of HTTP server requests")
                .buckets(exponential_buckets(0.0001, 2.0, 18).expect("valid buckets")),
            &["http_request_method", "http_route", "http_response_status_code"],
        )
        .expect("valid histogram");
        let rejections = IntCounterVec::new(
            Opts::new("repricer_admission_rejections_total", "Requests refused with 503 by admission control"),
            &["endpoint"],
        )
        .expect("valid counter");
        // Every endpoint's series exists from the start (at 0), so a rate() over it is 0, not
        // absent, until the first rejection.
        for endpoint in ["reprice", "product", "query"] {
            rejections.with_label_values(&[endpoint]);
        }
        registry.register(Box::new(duration.clone())).expect("register duration");
        registry.register(Box::new(rejections.clone())).expect("register rejections");
        HttpMetrics { duration, rejections }
    }
}

/// Logs a request that failed, inside its request span (so a sampled one's line carries its
/// `trace_id`): a server error at `error`, except overload (`503`: counted in the metrics, and
/// possibly thousands a second) and client errors at `debug`.
fn log_failure<B>(response: &ServiceResponse<B>, method: &str, route: &str) {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return;
    }
    let error = response.response().error().map(ToString::to_string).unwrap_or_default();
    let status = status.as_u16();
    if status >= 500 && status != 503 {
        tracing::error!(method, route, status, %error, "request failed");
    } else {
        tracing::debug!(method, route, status, %error, "request refused");
    }
}

/// Middleware: observes each request's duration by route template and status (and logs the
/// failed ones).
pub async fn record(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = crate::http::method_label(req.method());
    let route = crate::http::route_template(req.path());
    let response = next.call(req).await?;
    log_failure(&response, method, route);
    if let Some(m) = metrics {
        m.duration
            .with_label_values(&[method, route, response.status().as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
