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

/// Middleware: observes each request's duration by route template and status.
pub async fn record(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = crate::http::method_label(req.method());
    let route = crate::http::route_template(req.path());
    let response = next.call(req).await?;
    if let Some(m) = metrics {
        m.duration
            .with_label_values(&[method, route, response.status().as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
