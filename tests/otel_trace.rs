//! R11 end to end: the real binary exports its spans over OTLP/HTTP to a receiver running in
//! this test, and the exported tree is checked — server spans continuing the caller's W3C
//! `traceparent`, one child span per actor hop, the group commit and the window seal as spans
//! of their own linked to the requests they served, spans flushed on SIGTERM. Also: a dead
//! collector does not slow requests down, and `OTEL_SDK_DISABLED=true` turns export off.
//! The same tree over OTLP/gRPC to a tonic receiver; the exporter's counters on `/metrics`
//! (spans exported, failed exports, spans dropped by a full queue or a failed export).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{temp_dir, Service};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;
use reqwest::blocking::Response;

/// OTLP `SPAN_KIND_SERVER`.
const KIND_SERVER: i32 = 2;

/// One exported span, ids as lower-case hex (`parent` empty for a root).
#[derive(Clone, Debug)]
struct Got {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attrs: BTreeMap<String, String>,
    /// Keys of the attributes exported as integers (`int_value`).
    int_attrs: BTreeSet<String>,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
    service: String,
}

impl Got {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value_text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), value_text(&kv.value))).collect()
}

/// A minimal OTLP/HTTP receiver: `POST /v1/traces` with a protobuf body, answered 200.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<Got>>>,
    errors: Arc<Mutex<Vec<String>>>,
    exports: Arc<Mutex<usize>>,
    /// The tokio runtime serving a gRPC receiver (stopped when the collector is dropped).
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind collector");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let exports = Arc::new(Mutex::new(0));
        let (s, e, x) = (Arc::clone(&spans), Arc::clone(&errors), Arc::clone(&exports));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, e, x) = (Arc::clone(&s), Arc::clone(&e), Arc::clone(&x));
                std::thread::spawn(move || {
                    if let Err(err) = serve_connection(conn, &s, &x) {
                        e.lock().unwrap().push(err);
                    }
                });
            }
        });
        Collector { endpoint, spans, errors, exports, _runtime: None }
    }

    /// A real OTLP/gRPC receiver: tonic's `TraceServiceServer` on a runtime of its own.
    fn start_grpc() -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("grpc-collector")
            .enable_all()
            .build()
            .expect("collector runtime");
        let incoming = {
            let _entered = runtime.enter();
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("bind gRPC collector")
        };
        let endpoint = format!("http://{}", incoming.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let exports = Arc::new(Mutex::new(0));
        let receiver = GrpcReceiver { spans: Arc::clone(&spans), exports: Arc::clone(&exports) };
        let e = Arc::clone(&errors);
        runtime.spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver))
                .serve_with_incoming(incoming)
                .await;
            if let Err(err) = served {
                e.lock().unwrap().push(format!("gRPC server: {err}"));
            }
        });
        Collector { endpoint, spans, errors, exports, _runtime: Some(runtime) }
    }

    fn spans(&self) -> Vec<Got> {
        assert!(self.errors.lock().unwrap().is_empty(), "collector errors: {:?}", self.errors.lock().unwrap());
        self.spans.lock().unwrap().clone()
    }

    fn exports(&self) -> usize {
        *self.exports.lock().unwrap()
    }

    /// Polls until `done` holds for the spans received, or panics after `limit`.
    fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + limit;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; received:\n{}", dump(&spans));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The spans of one OTLP export request (either transport).
fn received(request: ExportTraceServiceRequest) -> Vec<Got> {
    let mut got = Vec::new();
    for rs in request.resource_spans {
        let resource = rs.resource.map(|r| attrs(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                got.push(Got {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attrs: attrs(&s.attributes),
                    int_attrs: s
                        .attributes
                        .iter()
                        .filter(|kv| matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(Value::IntValue(_))))
                        .map(|kv| kv.key.clone())
                        .collect(),
                    links: s.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                    service: service.clone(),
                });
            }
        }
    }
    got
}

/// The OTLP/gRPC `TraceService` of [`Collector::start_grpc`]: records every span, answers OK.
struct GrpcReceiver {
    spans: Arc<Mutex<Vec<Got>>>,
    exports: Arc<Mutex<usize>>,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.spans.lock().unwrap().extend(received(request.into_inner()));
        *self.exports.lock().unwrap() += 1;
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Serves HTTP/1.1 requests on one keep-alive connection until the client closes it.
fn serve_connection(conn: TcpStream, spans: &Mutex<Vec<Got>>, exports: &Mutex<usize>) -> Result<(), String> {
    let mut writer = conn.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).map_err(|e| e.to_string())? == 0 {
            return Ok(());
        }
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse::<usize>().map_err(|e| e.to_string())?),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "content-encoding" if !value.trim().eq_ignore_ascii_case("identity") => {
                    return Err(format!("unexpected content-encoding {value:?}"));
                }
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).map_err(|e| e.to_string())?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).map_err(|e| e.to_string())?;
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "POST" || path != "/v1/traces" {
            writer.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").map_err(|e| e.to_string())?;
            return Err(format!("unexpected request {method} {path}"));
        }
        let request = ExportTraceServiceRequest::decode(body.as_slice()).map_err(|e| format!("undecodable export: {e}"))?;
        spans.lock().unwrap().extend(received(request));
        *exports.lock().unwrap() += 1;
        writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .map_err(|e| e.to_string())?;
    }
}

/// The spans as an indented tree: children under their parents, links and foreign parents noted.
fn dump(spans: &[Got]) -> String {
    let ids: HashMap<&str, &Got> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let names: HashMap<&str, &str> = spans.iter().map(|s| (s.span_id.as_str(), s.name.as_str())).collect();
    let mut out = String::new();
    fn walk(out: &mut String, s: &Got, depth: usize, spans: &[Got], names: &HashMap<&str, &str>) {
        let keys = [
            "http.route",
            "http.request.method",
            "http.response.status_code",
            "product.id",
            "event.seq",
            "events",
            "records",
            "query.segments_planned",
            "query.segments_opened",
        ];
        let shown: Vec<String> = keys.iter().filter_map(|k| s.attr(k).map(|v| format!("{k}={v}"))).collect();
        out.push_str(&format!("{}{} [span {}]", "  ".repeat(depth), s.name, s.span_id));
        if !shown.is_empty() {
            out.push_str(&format!(" {{{}}}", shown.join(", ")));
        }
        for (t, l) in &s.links {
            out.push_str(&format!(" -> link to {} [trace {t} span {l}]", names.get(l.as_str()).copied().unwrap_or("?")));
        }
        out.push('\n');
        for c in spans.iter().filter(|c| c.parent == s.span_id && c.trace_id == s.trace_id) {
            walk(out, c, depth + 1, spans, names);
        }
    }
    for root in spans.iter().filter(|s| !ids.contains_key(s.parent.as_str())) {
        out.push_str(&format!(
            "trace {}{}\n",
            root.trace_id,
            if root.parent.is_empty() { String::new() } else { format!(" (remote parent {})", root.parent) }
        ));
        walk(&mut out, root, 1, spans, &names);
    }
    out
}

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

fn reprice_traced(svc: &Service, product: &str, price: &str, tp: &str) -> Response {
    svc.http
        .post(format!("{}/api/reprice", svc.api))
        .header("content-type", "application/json")
        .header("traceparent", tp)
        .body(format!("{{\"productId\":\"{product}\",\"price\":{price}}}"))
        .send()
        .expect("POST /api/reprice")
}

fn query_traced(svc: &Service, product: &str, tp: &str) -> Response {
    svc.http.get(format!("{}/api/query?productId={product}", svc.api)).header("traceparent", tp).send().expect("GET /api/query")
}

/// The `traceparent` response header split into (trace id, span id).
fn response_traceparent(r: &Response) -> Option<(String, String)> {
    let v = r.headers().get("traceparent")?.to_str().ok()?.to_string();
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "malformed traceparent {v:?}");
    assert_eq!(parts[0], "00", "traceparent version in {v:?}");
    Some((parts[1].to_string(), parts[2].to_string()))
}

fn otel_envs(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ]
}

/// [`otel_envs`] with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`.
fn otel_grpc_envs(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut envs = otel_envs(endpoint);
    envs.retain(|(k, _)| *k != "OTEL_EXPORTER_OTLP_PROTOCOL");
    envs.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()));
    envs
}

/// The sum of the samples of `selector` on the admin `/metrics`: a bare metric name sums every
/// label set, `name{labels}` (exactly as rendered) picks one sample; `None` if there is none.
fn metric(svc: &Service, selector: &str) -> Option<f64> {
    let text = svc.http.get(format!("{}/metrics", svc.admin)).send().expect("GET /metrics").text().expect("metrics body");
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or("");
        if series == selector || (!selector.contains('{') && name == selector) {
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad sample {line:?}"));
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Polls [`metric`] until `done` holds for it, or panics after `limit`.
fn wait_metric(svc: &Service, selector: &str, limit: Duration, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let v = metric(svc, selector).unwrap_or_else(|| panic!("{selector} is not on /metrics"));
        if done(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{selector} = {v} after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const EXPORTED: &str = "repricer_otel_spans_exported_total";
const EXPORT_FAILURES: &str = "repricer_otel_export_failures_total";
const DROPPED: &str = "repricer_otel_spans_dropped_total";
const DROPPED_QUEUE_FULL: &str = "repricer_otel_spans_dropped_total{reason=\"queue_full\"}";
const DROPPED_EXPORT_FAILED: &str = "repricer_otel_spans_dropped_total{reason=\"export_failed\"}";
const PENDING: &str = "repricer_otel_spans_pending";

fn start(dir: &std::path::Path, envs: &[(&'static str, String)]) -> Service {
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start_with(dir, &[], &envs)
}

const REPRICE_HOPS: [&str; 4] =
    ["ProductRegistry route Reprice", "ProductActor handle Reprice", "Sequencer handle Sequence", "FileSegment handle Append"];
const GROUP_COMMIT: &str = "FileSegment group commit";
const SEAL: &str = "FileSegment seal window";

fn in_trace<'a>(spans: &'a [Got], trace: &str) -> Vec<&'a Got> {
    spans.iter().filter(|s| s.trace_id == trace).collect()
}

fn named<'a>(spans: &[&'a Got], name: &str) -> Vec<&'a Got> {
    spans.iter().copied().filter(|s| s.name == name).collect()
}

/// Exactly one span called `name` in `spans`.
fn one<'a>(spans: &[&'a Got], name: &str, all: &[Got]) -> &'a Got {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "expected one {name:?} span in the trace, got {}:\n{}", found.len(), dump(all));
    found[0]
}

/// A reprice trace is complete once its server span, every hop and a commit linking it are in.
fn reprice_trace_complete(spans: &[Got], trace: &str) -> bool {
    let t = in_trace(spans, trace);
    let has = |n: &str| t.iter().any(|s| s.name == n);
    has("POST /api/reprice")
        && REPRICE_HOPS.iter().all(|n| has(n))
        && spans.iter().any(|s| s.name == GROUP_COMMIT && s.links.iter().any(|(lt, _)| lt == trace))
}

fn query_trace_complete(spans: &[Got], trace: &str) -> bool {
    let t = in_trace(spans, trace);
    t.iter().any(|s| s.name == "GET /api/query") && t.iter().any(|s| s.name == "QueryPlanner handle RunQuery")
}

/// Every span of `trace` except the server span has its parent in the trace; the server
/// span's parent is the caller's span; everything descends from the server span.
fn assert_tree(all: &[Got], trace: &str, caller_span: &str, server: &Got) {
    let t = in_trace(all, trace);
    let by_id: HashMap<&str, &Got> = t.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    assert_eq!(server.parent, caller_span, "server span's parent must be the caller's span:\n{}", dump(all));
    assert_eq!(server.kind, KIND_SERVER, "{:?} must be a server span", server.name);
    for s in &t {
        if s.span_id == server.span_id {
            continue;
        }
        let mut cur = *s;
        let mut depth = 0;
        while cur.span_id != server.span_id {
            cur = by_id.get(cur.parent.as_str()).copied().unwrap_or_else(|| {
                panic!("parent {} of {:?} is not in the export of trace {trace}:\n{}", cur.parent, cur.name, dump(all))
            });
            depth += 1;
            assert!(depth < 64, "parent cycle in trace {trace}");
        }
    }
}

#[test]
fn exports_the_request_span_tree_over_otlp() {
    const REPRICE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const REPRICE_CALLER: &str = "00f067aa0ba902b7";
    const QUERY_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const QUERY_CALLER: &str = "b7ad6b7169203331";
    const LAST_TRACE: &str = "5a6b7c8d9e0f11223344556677889900";
    const LAST_CALLER: &str = "1122334455667788";

    let collector = Collector::start();
    let dir = temp_dir();
    let svc = start(dir.path(), &otel_envs(&collector.endpoint));

    let r = reprice_traced(&svc, "p-otel", "19.990", &traceparent(REPRICE_TRACE, REPRICE_CALLER));
    assert_eq!(r.status(), 202);
    let (rt, reprice_server_id) = response_traceparent(&r).expect("reprice response carries traceparent");
    assert_eq!(rt, REPRICE_TRACE, "response traceparent must carry the caller's trace id");
    let q = query_traced(&svc, "p-otel", &traceparent(QUERY_TRACE, QUERY_CALLER));
    assert_eq!(q.status(), 200);
    let (qt, query_server_id) = response_traceparent(&q).expect("query response carries traceparent");
    assert_eq!(qt, QUERY_TRACE, "response traceparent must carry the caller's trace id");
    let page: serde_json::Value = q.json().unwrap();
    assert!(page.to_string().contains("p-otel"), "query must find the reprice: {page}");

    let all = collector.wait_for(Duration::from_secs(30), "the reprice and query spans", |s| {
        reprice_trace_complete(s, REPRICE_TRACE) && query_trace_complete(s, QUERY_TRACE)
    });

    // The reprice: server span continuing the caller's trace, one span per actor hop.
    let rt = in_trace(&all, REPRICE_TRACE);
    let server = one(&rt, "POST /api/reprice", &all);
    assert_eq!(server.span_id, reprice_server_id, "response traceparent names the server span");
    assert_eq!(server.attr("http.route"), Some("/api/reprice"));
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.response.status_code"), Some("202"));
    assert_eq!(server.attr("product.id"), Some("p-otel"));
    assert_eq!(server.service, "repricer", "resource service.name");
    for hop in REPRICE_HOPS {
        one(&rt, hop, &all);
    }
    assert_eq!(one(&rt, "ProductActor handle Reprice", &all).attr("product.id"), Some("p-otel"));
    assert!(one(&rt, "Sequencer handle Sequence", &all).attr("event.seq").is_some(), "Sequencer span records event.seq");
    assert_tree(&all, REPRICE_TRACE, REPRICE_CALLER, server);

    // No hop of either request started a trace of its own.
    for s in all.iter().filter(|s| REPRICE_HOPS.contains(&s.name.as_str()) || s.name == "QueryPlanner handle RunQuery") {
        assert!(
            s.trace_id == REPRICE_TRACE || s.trace_id == QUERY_TRACE,
            "{:?} left the request's trace:\n{}",
            s.name,
            dump(&all)
        );
    }

    // The group commit is its own root span, linked to the request it made durable.
    let append = one(&rt, "FileSegment handle Append", &all);
    let commits: Vec<&Got> =
        all.iter().filter(|s| s.name == GROUP_COMMIT && s.links.iter().any(|(t, _)| t == REPRICE_TRACE)).collect();
    assert_eq!(commits.len(), 1, "one group commit links the reprice:\n{}", dump(&all));
    let commit = commits[0];
    assert_ne!(commit.trace_id, REPRICE_TRACE, "the group commit is not a child of one request");
    assert!(commit.parent.is_empty(), "the group commit is a root span");
    for (t, l) in commit.links.iter().filter(|(t, _)| t == REPRICE_TRACE) {
        assert!(rt.iter().any(|s| &s.span_id == l), "commit links span {l} of trace {t} that was not exported");
    }
    assert!(commit.links.iter().any(|(_, l)| *l == append.span_id), "commit links the FileSegment handle Append span");
    assert_eq!(commit.attr("events"), Some("1"));

    // The query.
    let qt = in_trace(&all, QUERY_TRACE);
    let qserver = one(&qt, "GET /api/query", &all);
    assert_eq!(qserver.span_id, query_server_id, "response traceparent names the server span");
    assert_eq!(qserver.attr("http.route"), Some("/api/query"));
    assert_eq!(qserver.attr("http.request.method"), Some("GET"));
    assert_eq!(qserver.attr("http.response.status_code"), Some("200"));
    assert_eq!(qserver.attr("product.id"), Some("p-otel"));
    let planner = one(&qt, "QueryPlanner handle RunQuery", &all);
    for key in ["query.segments_planned", "query.segments_opened"] {
        let v = planner.attr(key).unwrap_or_else(|| panic!("{key} missing on the planner span: {planner:?}"));
        v.parse::<u64>().unwrap_or_else(|_| panic!("{key} = {v:?} is not a count"));
    }
    assert_tree(&all, QUERY_TRACE, QUERY_CALLER, qserver);

    // Numbers are exported as integers, so a backend can compare them (status >= 500).
    let int_keys = [
        (server, "http.response.status_code"),
        (qserver, "http.response.status_code"),
        (one(&rt, "Sequencer handle Sequence", &all), "event.seq"),
        (one(&rt, "ProductActor handle Reprice", &all), "mailbox.wait_us"),
        (commit, "events"),
        (planner, "query.segments_planned"),
        (planner, "query.segments_opened"),
        (planner, "query.total"),
    ];
    for (span, key) in int_keys {
        assert!(span.int_attrs.contains(key), "{key} of {:?} is not an integer attribute: {:?}", span.name, span.attrs.get(key));
    }

    // The window's seal (about a second later, on the sealer thread) is a root span of its own
    // trace, linked to the reprice it stored: no request waits for it.
    let all = collector.wait_for(Duration::from_secs(30), "the seal of the reprice's window", |s| {
        s.iter().any(|x| x.name == SEAL && x.links.iter().any(|(t, _)| t == REPRICE_TRACE))
    });
    println!("exported span tree (one reprice, one query, the seal of its window):\n{}", dump(&all));
    let seal = all.iter().find(|x| x.name == SEAL && x.links.iter().any(|(t, _)| t == REPRICE_TRACE)).unwrap();
    assert!(seal.links.iter().any(|(_, l)| *l == append.span_id), "seal links the FileSegment handle Append span");
    assert_eq!(seal.attr("records"), Some("1"));
    assert!(seal.int_attrs.contains("records"), "records of the seal is an integer attribute");
    assert!(seal.parent.is_empty() && seal.trace_id != REPRICE_TRACE, "the seal is a root span of its own trace:\n{}", dump(&all));

    // One more reprice right before SIGTERM: its spans must still arrive.
    assert_eq!(reprice_traced(&svc, "p-otel", "20.000", &traceparent(LAST_TRACE, LAST_CALLER)).status(), 202);
    let status = svc.terminate();
    assert!(status.success(), "exit status {status}");
    let all = collector
        .wait_for(Duration::from_secs(10), "the last reprice's spans after exit", |s| reprice_trace_complete(s, LAST_TRACE));
    let lt = in_trace(&all, LAST_TRACE);
    assert_tree(&all, LAST_TRACE, LAST_CALLER, one(&lt, "POST /api/reprice", &all));
}

/// With a long schedule delay nothing is exported before shutdown: what arrives after SIGTERM
/// was flushed by the shutdown.
#[test]
fn spans_are_flushed_on_sigterm() {
    const TRACE: &str = "7e57f1a5000000000000000000000001";
    const CALLER: &str = "a1b2c3d4e5f60718";
    let collector = Collector::start();
    let dir = temp_dir();
    let mut envs = otel_envs(&collector.endpoint);
    envs.retain(|(k, _)| *k != "OTEL_BSP_SCHEDULE_DELAY");
    envs.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".to_string()));
    let svc = start(dir.path(), &envs);
    assert_eq!(reprice_traced(&svc, "p-flush", "1.5", &traceparent(TRACE, CALLER)).status(), 202);
    // A negative check needs a pause: the batch processor holds the spans for ten minutes.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(collector.exports(), 0, "nothing is exported before the schedule delay or shutdown");
    let status = svc.terminate();
    assert!(status.success(), "exit status {status}");
    let all = collector.wait_for(Duration::from_secs(10), "spans flushed at shutdown", |s| reprice_trace_complete(s, TRACE));
    let t = in_trace(&all, TRACE);
    assert_tree(&all, TRACE, CALLER, one(&t, "POST /api/reprice", &all));
}

/// The same over OTLP/gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, a tonic exporter) to a tonic
/// `TraceService` receiver: the reprice's tree arrives, the export counters agree with what the
/// receiver got, and a last reprice's spans are flushed by SIGTERM.
#[test]
fn exports_the_reprice_span_tree_over_otlp_grpc() {
    const TRACE: &str = "9c0ffee0000000000000000000000001";
    const CALLER: &str = "0102030405060708";
    const LAST_TRACE: &str = "9c0ffee0000000000000000000000002";
    const LAST_CALLER: &str = "1112131415161718";

    let collector = Collector::start_grpc();
    let dir = temp_dir();
    let svc = start(dir.path(), &otel_grpc_envs(&collector.endpoint));
    assert!(
        svc.log_text().contains(&format!("OTLP grpc to {}", collector.endpoint)),
        "start-up log names the gRPC exporter:\n{}",
        svc.log_text()
    );

    let r = reprice_traced(&svc, "p-grpc", "7.125", &traceparent(TRACE, CALLER));
    assert_eq!(r.status(), 202);
    let (rt, server_id) = response_traceparent(&r).expect("reprice response carries traceparent");
    assert_eq!(rt, TRACE, "response traceparent must carry the caller's trace id");

    let all = collector.wait_for(Duration::from_secs(30), "the reprice's spans over gRPC", |s| reprice_trace_complete(s, TRACE));
    println!("exported over OTLP/gRPC:\n{}", dump(&all));
    let t = in_trace(&all, TRACE);
    let server = one(&t, "POST /api/reprice", &all);
    assert_eq!(server.span_id, server_id, "response traceparent names the server span");
    assert_eq!(server.attr("http.route"), Some("/api/reprice"));
    assert_eq!(server.attr("http.response.status_code"), Some("202"));
    assert_eq!(server.attr("product.id"), Some("p-grpc"));
    assert_eq!(server.service, "repricer", "resource service.name");
    for hop in REPRICE_HOPS {
        one(&t, hop, &all);
    }
    assert_tree(&all, TRACE, CALLER, server);

    // The counters: every span the receiver got was counted as exported (the exporter counts
    // after the receiver answered, so wait until the two agree), nothing failed or was dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exported = metric(&svc, EXPORTED).expect("exported counter");
        let received = collector.spans().len() as f64;
        if exported == received {
            break;
        }
        assert!(exported < received, "{EXPORTED} = {exported} > {received} spans received");
        assert!(Instant::now() < deadline, "{EXPORTED} = {exported}, receiver got {received} spans");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&svc, EXPORT_FAILURES), Some(0.0));
    assert_eq!(metric(&svc, DROPPED), Some(0.0));

    // One more reprice right before SIGTERM: its spans must still arrive.
    assert_eq!(reprice_traced(&svc, "p-grpc", "7.250", &traceparent(LAST_TRACE, LAST_CALLER)).status(), 202);
    let status = svc.terminate();
    assert!(status.success(), "exit status {status}");
    let all = collector
        .wait_for(Duration::from_secs(10), "the last reprice's spans after exit", |s| reprice_trace_complete(s, LAST_TRACE));
    let lt = in_trace(&all, LAST_TRACE);
    assert_tree(&all, LAST_TRACE, LAST_CALLER, one(&lt, "POST /api/reprice", &all));
}

/// Over gRPC too, what is still queued at SIGTERM is flushed by the shutdown (which runs off
/// the actix threads; on one it would time out).
#[test]
fn grpc_spans_are_flushed_on_sigterm() {
    const TRACE: &str = "9c0ffee0000000000000000000000003";
    const CALLER: &str = "2122232425262728";
    let collector = Collector::start_grpc();
    let dir = temp_dir();
    let mut envs = otel_grpc_envs(&collector.endpoint);
    envs.retain(|(k, _)| *k != "OTEL_BSP_SCHEDULE_DELAY");
    envs.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".to_string()));
    let svc = start(dir.path(), &envs);
    assert_eq!(reprice_traced(&svc, "p-grpc-flush", "1.5", &traceparent(TRACE, CALLER)).status(), 202);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(collector.exports(), 0, "nothing is exported before the schedule delay or shutdown");
    assert!(wait_metric(&svc, PENDING, Duration::from_secs(5), |v| v >= 5.0) >= 5.0);
    let status = svc.terminate();
    assert!(status.success(), "exit status {status}");
    let all = collector.wait_for(Duration::from_secs(10), "spans flushed at shutdown", |s| reprice_trace_complete(s, TRACE));
    let t = in_trace(&all, TRACE);
    assert_tree(&all, TRACE, CALLER, one(&t, "POST /api/reprice", &all));
}

/// A collector that accepts connections and never answers.
fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    endpoint
}

/// An endpoint where nothing listens (connections are refused).
fn refused() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    endpoint
}

/// A dead or hung collector must not slow requests down: the exporter runs off the request
/// path. The services run side by side and take turns, so machine noise hits them alike.
#[test]
fn a_dead_collector_does_not_slow_reprices() {
    const N: usize = 200;
    let dirs = [temp_dir(), temp_dir(), temp_dir()];
    let disabled = {
        let mut e = otel_envs(&refused());
        e.push(("OTEL_SDK_DISABLED", "true".to_string()));
        start(dirs[0].path(), &e)
    };
    let services = [
        ("disabled", disabled),
        ("refused", start(dirs[1].path(), &otel_envs(&refused()))),
        ("black hole", start(dirs[2].path(), &otel_envs(&black_hole()))),
    ];
    let mut totals = [Duration::ZERO; 3];
    for i in 0..N + 10 {
        for (k, (name, svc)) in services.iter().enumerate() {
            let tp = traceparent(&format!("{:032x}", i + 1), "0000000000000001");
            let started = Instant::now();
            let r = reprice_traced(svc, &format!("p-{}", i % 17), &format!("{}.5", i + 1), &tp);
            assert_eq!(r.status(), 202, "{name}");
            if i >= 10 {
                totals[k] += started.elapsed();
            }
        }
    }
    println!(
        "{N} sequential reprices: disabled {:?}, refused endpoint {:?}, black-hole endpoint {:?}",
        totals[0], totals[1], totals[2]
    );
    for k in 1..3 {
        let bound = totals[0] * 3 + Duration::from_secs(2);
        assert!(
            totals[k] < bound,
            "{} collector: {N} reprices took {:?}, exporter off: {:?}",
            services[k].0,
            totals[k],
            totals[0]
        );
    }
    // R12: what the exporter loses is counted on /metrics. Exporter off: nothing. Connection
    // refused: exports fail at once (after the exporter's own retries). Black hole: each
    // export fails when it times out (5 s).
    let disabled = &services[0].1;
    for m in [EXPORTED, EXPORT_FAILURES, DROPPED] {
        assert_eq!(metric(disabled, m), Some(0.0), "{m} with the exporter off");
    }
    for (name, svc) in &services[1..] {
        let failures = wait_metric(svc, EXPORT_FAILURES, Duration::from_secs(30), |v| v > 0.0);
        let dropped = wait_metric(svc, DROPPED_EXPORT_FAILED, Duration::from_secs(5), |v| v > 0.0);
        assert_eq!(metric(svc, EXPORTED), Some(0.0), "{name}: nothing can have been exported");
        println!("{name}: {failures} failed exports, {dropped} spans dropped with them");
    }
    for (name, svc) in services {
        let started = Instant::now();
        let status = svc.terminate();
        assert!(status.success(), "{name}: exit status {status}");
        println!("{name}: shutdown took {:?}", started.elapsed());
    }
}

/// The export queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`): while a hung collector holds the
/// exporter, spans beyond the bound are dropped and counted, and requests are still answered.
#[test]
fn a_full_export_queue_drops_spans_and_counts_them() {
    let dir = temp_dir();
    let mut envs = otel_envs(&black_hole());
    envs.push(("OTEL_BSP_MAX_QUEUE_SIZE", "16".to_string()));
    let svc = start(dir.path(), &envs);
    for i in 0..20 {
        let tp = traceparent(&format!("{:032x}", 0xf000 + i), "0000000000000001");
        assert_eq!(reprice_traced(&svc, "p-queue", &format!("{i}.5"), &tp).status(), 202);
    }
    let dropped = wait_metric(&svc, DROPPED_QUEUE_FULL, Duration::from_secs(10), |v| v > 0.0);
    let pending = metric(&svc, PENDING).expect("pending gauge");
    assert!(pending > 0.0 && pending <= 16.0, "{PENDING} = {pending} with a queue of 16");
    assert_eq!(metric(&svc, EXPORTED), Some(0.0));
    println!("queue of 16, hung collector: {dropped} spans dropped, {pending} pending");
    assert!(svc.terminate().success());
}

/// `OTEL_SDK_DISABLED=true`: no exporter, the service works; an endpoint set alongside it gets
/// nothing.
#[test]
fn otel_sdk_disabled_exports_nothing() {
    const TRACE: &str = "d15ab1ed000000000000000000000001";
    let dir = temp_dir();
    let svc = start(dir.path(), &[("OTEL_SDK_DISABLED", "true".to_string())]);
    let r = reprice_traced(&svc, "p-off", "3.25", &traceparent(TRACE, "0000000000000002"));
    assert_eq!(r.status(), 202);
    // No traceparent is required without an SDK; one that is sent must continue the caller's trace.
    if let Some((t, _)) = response_traceparent(&r) {
        assert_eq!(t, TRACE);
    }
    assert_eq!(query_traced(&svc, "p-off", &traceparent(TRACE, "0000000000000003")).status(), 200);
    assert!(svc.terminate().success());

    let collector = Collector::start();
    let dir = temp_dir();
    let mut envs = otel_envs(&collector.endpoint);
    envs.push(("OTEL_SDK_DISABLED", "true".to_string()));
    let svc = start(dir.path(), &envs);
    assert_eq!(reprice_traced(&svc, "p-off", "3.25", &traceparent(TRACE, "0000000000000002")).status(), 202);
    assert!(svc.terminate().success());
    assert_eq!(collector.exports(), 0, "OTEL_SDK_DISABLED=true must export nothing");
}

/// The sampler decides once per request, before its first span: a request it leaves out exports
/// no span at all (no orphan hop spans, no group commit of its own), still answers with a
/// `traceparent` (flags `00`) the caller can log, and a sampled caller's trace is exported whole.
#[test]
fn requests_the_sampler_leaves_out_export_no_span() {
    const SAMPLED_TRACE: &str = "5a3b1e0d0c0b0a090807060504030201";
    const SAMPLED_CALLER: &str = "0102030405060708";
    const UNSAMPLED_TRACE: &str = "0badc0ffee0000000000000000000001";

    let collector = Collector::start();
    let dir = temp_dir();
    let mut envs = otel_envs(&collector.endpoint);
    envs.retain(|(k, _)| *k != "OTEL_TRACES_SAMPLER");
    // Root requests are left out; a caller's sampled flag is followed.
    envs.push(("OTEL_TRACES_SAMPLER", "parentbased_always_off".to_string()));
    let svc = start(dir.path(), &envs);

    let mut drawn = Vec::new();
    for i in 0..20 {
        let r = svc
            .http
            .post(format!("{}/api/reprice", svc.api))
            .header("content-type", "application/json")
            .body(format!("{{\"productId\":\"p-unsampled-{i}\",\"price\":1.5}}"))
            .send()
            .expect("POST /api/reprice");
        assert_eq!(r.status(), 202);
        let header = r.headers().get("traceparent").expect("an unsampled request still gets a traceparent").to_str().unwrap().to_string();
        assert!(header.ends_with("-00"), "an unsampled request's traceparent has flags 00: {header}");
        drawn.push(response_traceparent(&r).unwrap().0);
    }
    let unsampled_caller = format!("00-{UNSAMPLED_TRACE}-{SAMPLED_CALLER}-00");
    let r = reprice_traced(&svc, "p-unsampled-caller", "2.5", &unsampled_caller);
    assert_eq!(r.status(), 202);
    assert_eq!(response_traceparent(&r).unwrap().0, UNSAMPLED_TRACE, "an unsampled caller's trace id is kept");
    let r = reprice_traced(&svc, "p-sampled", "3.5", &traceparent(SAMPLED_TRACE, SAMPLED_CALLER));
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("traceparent").unwrap().to_str().unwrap().ends_with("-01"));

    collector.wait_for(Duration::from_secs(20), "the sampled reprice's trace", |s| reprice_trace_complete(s, SAMPLED_TRACE));
    assert!(svc.terminate().success());
    let all = collector.spans();
    let st = in_trace(&all, SAMPLED_TRACE);
    assert_tree(&all, SAMPLED_TRACE, SAMPLED_CALLER, one(&st, "POST /api/reprice", &all));
    for span in &all {
        assert!(
            span.trace_id != UNSAMPLED_TRACE && !drawn.contains(&span.trace_id),
            "span {:?} belongs to a request the sampler left out:\n{}",
            span.name,
            dump(&all)
        );
        let batch_work = [GROUP_COMMIT, SEAL, "Checkpointer write checkpoint"].contains(&span.name.as_str());
        assert!(span.trace_id == SAMPLED_TRACE || batch_work, "unexpected span {:?} outside the sampled trace:\n{}", span.name, dump(&all));
        if span.name == GROUP_COMMIT {
            assert!(
                span.links.iter().all(|(t, _)| t == SAMPLED_TRACE) || span.links.is_empty() && span.parent.is_empty(),
                "a group commit links only traced requests: {span:?}"
            );
        }
    }
}

/// A batch span links every request it served (up to 1,024), not the SDK's default 128: 300
/// reprices posted within about one window give seal spans whose link count equals their
/// record count, one of them over 128, and group commits whose link count equals their events.
#[test]
fn batch_spans_link_every_request_they_served() {
    let collector = Collector::start();
    let dir = temp_dir();
    let svc = start(dir.path(), &otel_envs(&collector.endpoint));
    const N: usize = 300;
    for i in 0..N {
        assert_eq!(svc.reprice(&format!("link-{}", i % 7), &format!("{}.5", i + 1)), 202);
    }
    let count = |s: &Got, key: &str| s.attr(key).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    let all = collector.wait_for(Duration::from_secs(30), "seal spans covering every reprice", |spans| {
        spans.iter().filter(|s| s.name == SEAL).map(|s| count(s, "records")).sum::<usize>() >= N
    });
    let seals: Vec<&Got> = all.iter().filter(|s| s.name == SEAL).collect();
    for seal in &seals {
        assert_eq!(seal.links.len(), count(seal, "records"), "links of a seal of {} records", count(seal, "records"));
    }
    assert!(seals.iter().any(|s| count(s, "records") > 128), "one window held over 128 reprices: {:?}", seals.iter().map(|s| count(s, "records")).collect::<Vec<_>>());
    let commits: Vec<&Got> = all.iter().filter(|s| s.name == GROUP_COMMIT).collect();
    assert_eq!(commits.iter().map(|s| count(s, "events")).sum::<usize>(), N);
    for commit in commits {
        assert_eq!(commit.links.len(), count(commit, "events"), "links of a group commit");
    }
    assert!(svc.terminate().success());
}

/// `LOG_FORMAT=json` gives one JSON object per line; `RUST_LOG` sets the level; a line logged
/// inside a sampled request (here a refused reprice, logged at debug) carries the request's
/// `trace_id` and `span_id`.
#[test]
fn json_log_lines_inside_a_request_carry_its_trace_id() {
    const TRACE: &str = "6e0c63257de34c926f9efcd03899c0a1";
    const CALLER: &str = "53995c3f42cd8ad8";
    let collector = Collector::start();
    let dir = temp_dir();
    let mut envs = otel_envs(&collector.endpoint);
    envs.push(("LOG_FORMAT", "json".to_string()));
    envs.push(("RUST_LOG", "info,repricer=debug".to_string()));
    let svc = start(dir.path(), &envs);
    let resp = svc
        .http
        .post(format!("{}/api/reprice", svc.api))
        .header("content-type", "application/json")
        .header("traceparent", traceparent(TRACE, CALLER))
        .body(r#"{"productId":"log-1","price":-1}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (_, server_span) = response_traceparent(&resp).expect("traceparent on the 400");
    let logs = Arc::clone(&svc.logs);
    assert!(svc.terminate().success());
    // The log reader threads may trail the exit by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs.lock().unwrap().iter().any(|l| l.contains("stopped cleanly")) {
        assert!(Instant::now() < deadline, "no \"stopped cleanly\" line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = logs.lock().unwrap().join("\n");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(lines.len() >= 3, "JSON lines: {text}");
    let refused: Vec<&serde_json::Value> = lines.iter().filter(|l| l["fields"]["message"] == "request refused").collect();
    assert_eq!(refused.len(), 1, "one debug line for the refused reprice:\n{text}");
    let line = refused[0].to_string();
    assert!(line.contains(TRACE), "the line carries the caller's trace id: {line}");
    assert!(line.contains(&server_span), "the line carries the request span's id: {line}");
    assert!(line.contains("price"), "the line says what was wrong: {line}");

    // RUST_LOG directives: warn, but info for repricer::serve (which logs the addresses the
    // test needs): no info line of any other target (actix_server logs its workers at info).
    let dir = temp_dir();
    let svc = start(dir.path(), &[("LOG_FORMAT", "json".to_string()), ("RUST_LOG", "warn,repricer::serve=info".to_string())]);
    assert_eq!(svc.reprice("log-2", "1.5"), 202);
    let logs = Arc::clone(&svc.logs);
    assert!(svc.terminate().success());
    std::thread::sleep(Duration::from_millis(300));
    let lines: Vec<serde_json::Value> = logs.lock().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "ready"), "repricer::serve=info kept");
    let others: Vec<&serde_json::Value> = lines.iter().filter(|l| l["level"] == "INFO" && l["target"] != "repricer::serve").collect();
    assert!(others.is_empty(), "RUST_LOG=warn,... still logged info lines of other targets: {others:?}");
}

/// Server spans follow the HTTP conventions at the edges too: a made-up method is `_OTHER`
/// with its text in `http.request.method_original` and names the span `HTTP {route}`; a path
/// no route matches has no `http.route` and names the span by its method alone.
#[test]
fn server_spans_of_odd_methods_and_unknown_paths() {
    const ODD_TRACE: &str = "7d1c2b3a4f5e60718293a4b5c6d7e8f9";
    const LOST_TRACE: &str = "8e2d3c4b5a6f70819203b4c5d6e7f809";
    let collector = Collector::start();
    let dir = temp_dir();
    let svc = start(dir.path(), &otel_envs(&collector.endpoint));
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let r = svc.http.request(brew, format!("{}/api/reprice", svc.api)).header("traceparent", traceparent(ODD_TRACE, "1111111111111111")).send().unwrap();
    assert_eq!(r.status(), 405);
    let r = svc.http.get(format!("{}/no/such/path", svc.api)).header("traceparent", traceparent(LOST_TRACE, "2222222222222222")).send().unwrap();
    assert_eq!(r.status(), 404);
    let all = collector.wait_for(Duration::from_secs(30), "both server spans", |s| {
        s.iter().any(|x| x.trace_id == ODD_TRACE && x.kind == KIND_SERVER) && s.iter().any(|x| x.trace_id == LOST_TRACE && x.kind == KIND_SERVER)
    });
    let odd = all.iter().find(|x| x.trace_id == ODD_TRACE && x.kind == KIND_SERVER).unwrap();
    assert_eq!(odd.name, "HTTP /api/reprice");
    assert_eq!(odd.attr("http.request.method"), Some("_OTHER"));
    assert_eq!(odd.attr("http.request.method_original"), Some("BREW"));
    assert_eq!(odd.attr("http.route"), Some("/api/reprice"));
    assert_eq!(odd.attr("http.response.status_code"), Some("405"));
    assert_eq!(odd.attr("error.type"), None, "a 4xx is the client's error, not the server's");
    let lost = all.iter().find(|x| x.trace_id == LOST_TRACE && x.kind == KIND_SERVER).unwrap();
    assert_eq!(lost.name, "GET");
    assert_eq!(lost.attr("http.route"), None);
    assert_eq!(lost.attr("http.response.status_code"), Some("404"));
    assert!(svc.terminate().success());
}
