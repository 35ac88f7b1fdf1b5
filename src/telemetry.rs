//! Logs and traces (R11, R12): `tracing` with a human or JSON formatter, and an OpenTelemetry
//! exporter chosen by the standard `OTEL_*` variables.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::Error;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId, TracerProvider as _};
use actix_web::HttpMessage;
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SdkTracerProvider, ShouldSample, SpanData, SpanExporter,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use repricer_actors::telemetry::MAX_LINKS;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tracing::field::Empty;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporter alive; flushes spans when shut down.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _grpc_runtime: Option<tokio::runtime::Runtime>,
    /// Where spans go, for the start-up log.
    pub exporter: String,
    /// What the exporter delivered and lost; `serve` registers it on the admin `/metrics`.
    pub export_metrics: ExportMetrics,
}

/// The span exporter's bookkeeping on `/metrics` (R12: a dead collector costs spans, never
/// requests — and the spans it costs are counted).
///
/// opentelemetry_sdk 0.33's `BatchSpanProcessor` has no accessor for its drops: it counts
/// queue-full drops privately and only logs them (`otel_warn!` on the first drop and at
/// shutdown), and a failed export just logs an error. So the processor is wrapped:
///
/// * [`BoundedQueue`] (a `SpanProcessor` in front of the batch processor) admits at most
///   `OTEL_BSP_MAX_QUEUE_SIZE` (default 2048) spans that are queued or being exported, and
///   refuses the rest itself. The batch processor's own queue has that same capacity and never
///   holds more than we admitted, so it never refuses a span: every drop is ours, and counted.
/// * [`CountingExporter`] (a `SpanExporter` around the OTLP exporter) sees the outcome of every
///   batch the processor hands it (the exporter's own retries happen inside that call).
///
/// Not counted: spans ended after shutdown began, and spans still queued if the shutdown flush
/// times out — the process is exiting then and nothing can scrape the counters any more.
#[derive(Clone)]
pub struct ExportMetrics {
    /// `repricer_otel_spans_exported_total`: spans in batches the collector acknowledged.
    pub spans_exported: IntCounter,
    /// `repricer_otel_export_failures_total`: export calls (batches) that failed — collector
    /// unreachable, error answer, or timeout — after the exporter's retries.
    pub export_failures: IntCounter,
    /// `repricer_otel_spans_dropped_total{reason}`: spans that will never reach the collector.
    /// `queue_full`: refused at span end because the queue was full; `export_failed`: in a
    /// batch whose export failed (they are not retried later).
    pub spans_dropped: IntCounterVec,
    /// `repricer_otel_spans_pending`: spans admitted and not yet through an export (queued or
    /// in flight); at most `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub spans_pending: IntGauge,
}

impl ExportMetrics {
    fn new() -> ExportMetrics {
        let spans_dropped = IntCounterVec::new(
            Opts::new("repricer_otel_spans_dropped_total", "Spans never delivered to the OTLP collector, by reason (queue_full, export_failed)"),
            &["reason"],
        )
        .unwrap();
        // Both series exist from the start, at 0.
        spans_dropped.with_label_values(&["queue_full"]);
        spans_dropped.with_label_values(&["export_failed"]);
        ExportMetrics {
            spans_exported: IntCounter::new("repricer_otel_spans_exported_total", "Spans the OTLP collector acknowledged").unwrap(),
            export_failures: IntCounter::new(
                "repricer_otel_export_failures_total",
                "OTLP export calls (batches of spans) that failed after the exporter's retries",
            )
            .unwrap(),
            spans_dropped,
            spans_pending: IntGauge::new("repricer_otel_spans_pending", "Spans queued for or in an OTLP export").unwrap(),
        }
    }

    /// Adds the counters to `registry` (the admin `/metrics` one).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.spans_exported.clone()))?;
        registry.register(Box::new(self.export_failures.clone()))?;
        registry.register(Box::new(self.spans_dropped.clone()))?;
        registry.register(Box::new(self.spans_pending.clone()))
    }
}

impl std::fmt::Debug for ExportMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportMetrics")
    }
}

/// The batch span processor behind a bound of our own, so that its drops can be counted; see
/// [`ExportMetrics`].
#[derive(Debug)]
struct BoundedQueue {
    inner: BatchSpanProcessor,
    capacity: usize,
    /// Spans admitted and not yet through an export; shared with [`CountingExporter`].
    pending: Arc<AtomicUsize>,
    dropped: IntCounter,
    pending_gauge: IntGauge,
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.dropped.inc();
            return;
        }
        self.pending_gauge.inc();
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting the outcome of each batch; see [`ExportMetrics`].
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    pending: Arc<AtomicUsize>,
    metrics: ExportMetrics,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match result {
            Ok(()) => self.metrics.spans_exported.inc_by(spans as u64),
            Err(_) => {
                self.metrics.export_failures.inc();
                self.metrics.spans_dropped.with_label_values(&["export_failed"]).inc_by(spans as u64);
            }
        }
        self.pending.fetch_sub(spans, Ordering::AcqRel);
        self.metrics.spans_pending.sub(spans as i64);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor over `exporter`, with the bound and counters of [`ExportMetrics`].
fn counted_batch_processor(exporter: opentelemetry_otlp::SpanExporter, metrics: &ExportMetrics) -> BoundedQueue {
    // Parsed as the SDK parses it; passed to the SDK too, so both bounds are the same.
    let capacity = env("OTEL_BSP_MAX_QUEUE_SIZE").and_then(|v| v.parse::<usize>().ok()).unwrap_or(2048);
    let pending = Arc::new(AtomicUsize::new(0));
    let exporter = CountingExporter { inner: exporter, pending: Arc::clone(&pending), metrics: metrics.clone() };
    let config = BatchConfigBuilder::default().with_max_queue_size(capacity).build();
    BoundedQueue {
        inner: BatchSpanProcessor::builder(exporter).with_batch_config(config).build(),
        capacity,
        pending,
        dropped: metrics.spans_dropped.with_label_values(&["queue_full"]),
        pending_gauge: metrics.spans_pending.clone(),
    }
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
fn build_provider(
    metrics: &ExportMetrics,
) -> Result<(Option<SdkTracerProvider>, Option<tokio::runtime::Runtime>, String), String> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok((None, None, "none (OTEL_SDK_DISABLED=true)".into()));
    }
    if env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return Ok((None, None, "none (OTEL_TRACES_EXPORTER=none)".into()));
    }
    // Checked with or without an endpoint: a bad sampler fails at start either way, not only
    // once a collector is configured.
    sampler_from_env()?;
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
    let sampler = sampler_from_env()?;
    // The configured sampler decides once per request, before any span exists (see
    // `ServerSpan`); whatever reaches the SDK afterwards belongs to a sampled request, or is
    // batch work (commit, seal, checkpoint) that is only traced when it served one.
    let _ = HEAD_SAMPLER.set(sampler);
    // Batch spans link up to MAX_LINKS requests; OTEL_SPAN_LINK_COUNT_LIMIT may lower that.
    let max_links = env("OTEL_SPAN_LINK_COUNT_LIMIT").and_then(|v| v.parse::<usize>().ok()).unwrap_or(MAX_LINKS).min(MAX_LINKS);
    let provider = SdkTracerProvider::builder()
        .with_max_links_per_span(max_links as u32)
        .with_sampler(Sampler::AlwaysOn)
        .with_span_processor(counted_batch_processor(exporter, metrics))
        .with_resource(resource)
        .build();
    Ok((Some(provider), runtime, format!("OTLP {protocol} to {endpoint}")))
}

/// The sampler of `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, applied by [`ServerSpan`]
/// to each request before its first span: a request left out builds no span at all, so at 10%
/// sampling nine requests in ten pay almost nothing for tracing.
static HEAD_SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// The sampler the OpenTelemetry variables name (the SDK's default is `parentbased_always_on`).
fn sampler_from_env() -> Result<Sampler, String> {
    let ratio = || match env("OTEL_TRACES_SAMPLER_ARG") {
        None => Ok(1.0),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got {v:?}")),
    };
    let name = env("OTEL_TRACES_SAMPLER").unwrap_or_else(|| "parentbased_always_on".into());
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?))),
        _ => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio; got {name:?}"
            ))
        }
    })
}

/// The trace id of a request the sampler left out: its response still carries a `traceparent`
/// (flags `00`), so the caller can log the id it was given or that was drawn for it.
#[derive(Clone, Copy)]
struct UnsampledTrace(TraceId);

/// Installs the global subscriber: `RUST_LOG` filter, `LOG_FORMAT=json|text`, OTel layer.
pub fn init() -> Result<Telemetry, String> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let export_metrics = ExportMetrics::new();
    let (provider, runtime, exporter) = build_provider(&export_metrics)?;
    // Each layer filters for itself. The log layer takes events (RUST_LOG), plus the request
    // span when spans are exported, so that lines inside a request carry its trace id; the
    // actor-hop spans exist for the exporter alone. Without an exporter no layer wants a span,
    // and spans cost nothing on the hot path.
    let with_request_span = provider.is_some();
    let log_filter = || {
        let levels = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        // The hint keeps the `log` records of dependencies (actix logs at trace level on every
        // request) from being built and handed over only to be filtered out.
        let hint = levels.max_level_hint().unwrap_or(LevelFilter::TRACE);
        levels.and(filter_fn(move |m| m.is_event() || (with_request_span && m.name() == "HTTP request")).with_max_level_hint(hint))
    };
    // A plain list of layers: an absent exporter must add no layer at all (an `Option` layer
    // that is `None` declares interest in every span, so each would be built and dropped).
    let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> = Vec::new();
    if let Some(p) = provider.as_ref() {
        // Only what a trace of this service needs: the per-span extras (source location, thread,
        // target, busy/idle timings) and making each entered span the current OTel context are
        // a few allocations and clock reads per hop, on every request.
        let otel = tracing_opentelemetry::layer()
            .with_tracer(p.tracer("repricer"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false);
        layers.push(otel.with_filter(LevelFilter::INFO).boxed());
    }
    let json = env("LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    layers.push(if json {
        tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(true).with_filter(log_filter()).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .fmt_fields(LogFields)
            .with_filter(log_filter())
            .boxed()
    });
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
    .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(Telemetry { provider, _grpc_runtime: runtime, exporter, export_metrics })
}

/// How the text log writes fields: `name=value`, and of the request span only the fields a
/// log reader needs (the span's OpenTelemetry attributes would be formatted, at some cost, on
/// every request for lines that rarely come).
struct LogFields;

impl<'writer> FormatFields<'writer> for LogFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut visitor = LogFieldVisitor { writer: &mut writer, result: Ok(()), first: true };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LogFieldVisitor<'a, 'writer> {
    writer: &'a mut Writer<'writer>,
    result: std::fmt::Result,
    first: bool,
}

impl Visit for LogFieldVisitor<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        const REQUEST_ATTRIBUTES: [&str; 9] = [
            "otel.name",
            "otel.kind",
            "otel.status_code",
            "http.request.method",
            "http.request.method_original",
            "url.path",
            "url.scheme",
            "http.response.status_code",
            "error.type",
        ];
        if self.result.is_err() || REQUEST_ATTRIBUTES.contains(&field.name()) {
            return;
        }
        let separator = if std::mem::take(&mut self.first) { "" } else { " " };
        self.result = match field.name() {
            "message" => write!(self.writer, "{separator}{value:?}"),
            name => write!(self.writer, "{separator}{name}={value:?}"),
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
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
        let Some(sampler) = HEAD_SAMPLER.get() else { return Span::none() };
        let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
        let caller = parent.span().span_context().clone();
        let trace_id = if caller.is_valid() { caller.trace_id() } else { RandomIdGenerator::default().new_trace_id() };
        let decision = sampler.should_sample(Some(&parent), trace_id, "HTTP request", &SpanKind::Server, &[], &[]).decision;
        if !matches!(decision, SamplingDecision::RecordAndSample) {
            request.extensions_mut().insert(UnsampledTrace(trace_id));
            return Span::none();
        }
        // Named as the HTTP semantic conventions say: `{method} {route}`; a method HTTP does
        // not define is `_OTHER` (its text in `http.request.method_original`) and names the span
        // `HTTP`; a path no route matches has no `http.route` and names the span by its method.
        let route = crate::http::route_template(request.path());
        let method = crate::http::method_label(request.method());
        let name_method = if method == "_OTHER" { "HTTP" } else { method };
        let name = if route == "unmatched" { name_method.to_string() } else { format!("{name_method} {route}") };
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %name,
            otel.kind = "server",
            http.request.method = %method,
            http.request.method_original = Empty,
            http.route = Empty,
            url.path = %request.path(),
            url.scheme = "http",
            http.response.status_code = Empty,
            error.type = Empty,
            otel.status_code = Empty,
            product.id = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        if route != "unmatched" {
            span.record("http.route", route);
        }
        if method == "_OTHER" {
            span.record("http.request.method_original", request.method().as_str());
        }
        if caller.is_valid() {
            let _ = span.set_parent(parent);
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        // The ids go into the log lines of the request; one the sampler left out is in no
        // trace, and its caller has its id from the `traceparent` of the response.
        if sc.is_sampled() {
            span.record("trace_id", format_args!("{}", sc.trace_id()));
            span.record("span_id", format_args!("{}", sc.span_id()));
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            let status = response.status();
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_server_error() {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", status.as_str());
            }
        } else {
            DefaultRootSpanBuilder::on_request_end(span, outcome);
        }
    }
}

/// Middleware: answers with `traceparent` so a crawler can log the trace id.
pub async fn traceparent(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut response = next.call(req).await?;
    let span = Span::current();
    let value = if !span.is_disabled() {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return Ok(response);
        }
        format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
    } else {
        let unsampled = response.request().extensions().get::<UnsampledTrace>().copied();
        let Some(UnsampledTrace(trace_id)) = unsampled else { return Ok(response) };
        format!("00-{trace_id}-{}-00", RandomIdGenerator::default().new_span_id())
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(HeaderName::from_static("traceparent"), v);
    }
    Ok(response)
}
