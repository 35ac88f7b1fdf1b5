//! Logs and traces (R11, R12): `tracing` with a human or JSON formatter, and an OpenTelemetry
//! exporter chosen by the standard `OTEL_*` variables.

use std::io::IsTerminal;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::Error;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{global, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::field::Empty;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Keeps the exporter alive; flushes spans when shut down.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _grpc_runtime: Option<tokio::runtime::Runtime>,
    /// Where spans go, for the start-up log.
    pub exporter: String,
}

impl Telemetry {
    /// Flushes and stops the exporter (blocking; call off the actix threads).
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("repricer: flushing spans failed: {e}");
            }
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The OTLP exporter the environment asks for, if any.
fn build_provider() -> Result<(Option<SdkTracerProvider>, Option<tokio::runtime::Runtime>, String), String> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok((None, None, "none (OTEL_SDK_DISABLED=true)".into()));
    }
    if env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return Ok((None, None, "none (OTEL_TRACES_EXPORTER=none)".into()));
    }
    let Some(endpoint) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT")) else {
        return Ok((None, None, "none (no OTEL_EXPORTER_OTLP_ENDPOINT)".into()));
    };
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    let mut resource = Resource::builder().with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("repricer");
    }
    let resource = resource.build();
    let (exporter, runtime) = match protocol.as_str() {
        "grpc" => {
            // tonic needs a tokio reactor of its own; actix's runtime is single-threaded.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-grpc")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the OTLP gRPC runtime: {e}"))?;
            let _guard = runtime.enter();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| format!("OTLP gRPC exporter for {endpoint}: {e}"))?;
            (exporter, Some(runtime))
        }
        "http/protobuf" => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("OTLP HTTP exporter for {endpoint}: {e}"))?;
            (exporter, None)
        }
        other => return Err(format!("OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf, got {other:?}")),
    };
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    Ok((Some(provider), runtime, format!("OTLP {protocol} to {endpoint}")))
}

/// Installs the global subscriber: `RUST_LOG` filter, `LOG_FORMAT=json|text`, OTel layer.
pub fn init() -> Result<Telemetry, String> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let (provider, runtime, exporter) = build_provider()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("repricer")));
    let json = env("LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(true))
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false).with_ansi(std::io::stdout().is_terminal()))
            .try_init()
    }
    .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(Telemetry { provider, _grpc_runtime: runtime, exporter })
}

struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The server span of each request: named `"{METHOD} {route}"`, HTTP semantic-convention
/// attributes, continuing the caller's W3C `traceparent`.
pub struct ServerSpan;

impl RootSpanBuilder for ServerSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
        let method = request.method().as_str().to_owned();
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            url.path = %request.path(),
            url.scheme = %request.connection_info().scheme(),
            http.response.status_code = Empty,
            otel.status_code = Empty,
            product.id = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            span.record("trace_id", sc.trace_id().to_string());
            span.record("span_id", sc.span_id().to_string());
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            let status = response.status();
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
        } else {
            DefaultRootSpanBuilder::on_request_end(span, outcome);
        }
    }
}

/// Middleware: answers with `traceparent` so a crawler can log the trace id.
pub async fn traceparent(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut response = next.call(req).await?;
    let cx = Span::current().context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        let value = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static("traceparent"), v);
        }
    }
    Ok(response)
}
