//! The one test helper: spawns the real `repricer` binary on port 0 with its own data
//! directory, waits until it is ready, and offers a blocking HTTP client and file readers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A running `repricer serve`.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT` of the API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the admin endpoints.
    pub admin: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Every line it logged so far.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// A client with a short timeout.
    pub http: Client,
}

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_repricer")
}

/// A fresh temporary data directory (deleted when dropped).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("repricer-test-").tempdir().expect("temp dir")
}

impl Service {
    /// Starts the service on `data_dir` with default settings.
    pub fn start(data_dir: &Path) -> Service {
        Service::start_with(data_dir, &[], &[])
    }

    /// Starts the service with extra flags and environment variables, and waits until ready.
    pub fn start_with(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "text")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn repricer");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let find = |what: &str| -> Option<String> {
            // The address is the run of digits, dots and colons after `what` (text or JSON lines).
            let addr = |rest: &str| rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect::<String>();
            logs.lock().unwrap().iter().find_map(|l| l.split_once(what).map(|(_, rest)| format!("http://{}", addr(rest))))
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let (api, admin) = loop {
            if let (Some(api), Some(admin)) = (find("repricer api listening on "), find("repricer admin listening on ")) {
                break (api, admin);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("repricer exited with {status} before listening:\n{}", logs.lock().unwrap().join("\n"));
            }
            assert!(Instant::now() < deadline, "repricer did not start:\n{}", logs.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        };
        let http = Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(64).build().unwrap();
        let service = Service { child, api, admin, data_dir: data_dir.to_path_buf(), logs, http };
        service.wait_ready();
        service
    }

    /// Blocks until `/healthz/ready` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.http.get(format!("{}/healthz/ready", self.admin)).send().is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("never ready:\n{}", self.log_text());
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// POSTs a reprice with `price` written verbatim; returns the status.
    pub fn reprice(&self, product_id: &str, price: &str) -> u16 {
        let body = format!("{{\"productId\":{},\"price\":{price}}}", serde_json::to_string(product_id).unwrap());
        self.post_raw(&body, "application/json").status().as_u16()
    }

    /// POSTs any body to `/api/reprice`.
    pub fn post_raw(&self, body: &str, content_type: &str) -> Response {
        self.http
            .post(format!("{}/api/reprice", self.api))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .expect("POST /api/reprice")
    }

    /// GET `/api/product/{id}/price` with the id percent-encoded as one segment.
    pub fn get_price(&self, product_id: &str) -> Response {
        let enc = percent_encoding::utf8_percent_encode(product_id, percent_encoding::NON_ALPHANUMERIC);
        self.http.get(format!("{}/api/product/{enc}/price", self.api)).send().expect("GET price")
    }

    /// GET `/api/query?{query}` (the query string as given).
    pub fn query(&self, query: &str) -> Response {
        self.http.get(format!("{}/api/query?{query}", self.api)).send().expect("GET query")
    }

    /// Sends SIGKILL and waits.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        wait_timeout(&mut self.child, Duration::from_secs(60))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal without waiting.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        signal(&self.child, sig);
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> ExitStatus {
        wait_timeout(&mut self.child, Duration::from_secs(60))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("send signal");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "repricer did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One record of a segment file, prices kept as their exact literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The file it is in.
    pub file: String,
    /// `productId`.
    pub product_id: String,
    /// `previousPrice` literal, if present.
    pub previous_price: Option<String>,
    /// `newPrice` literal.
    pub new_price: String,
    /// `timestamp` text.
    pub timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRecord<'a> {
    product_id: String,
    #[serde(borrow, default)]
    previous_price: Option<&'a RawValue>,
    #[serde(borrow)]
    new_price: &'a RawValue,
    timestamp: String,
}

/// Every record in `results/`, in file-name order; panics on a file that is not valid JSON.
pub fn read_records(data_dir: &Path) -> Vec<Record> {
    let results = data_dir.join("results");
    let mut names: Vec<String> =
        std::fs::read_dir(&results).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let bytes = std::fs::read(results.join(&name)).unwrap();
        let raws: Vec<RawRecord<'_>> = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!raws.is_empty(), "{name} is empty");
        for r in raws {
            out.push(Record {
                file: name.clone(),
                product_id: r.product_id,
                previous_price: r.previous_price.map(|p| p.get().to_string()),
                new_price: r.new_price.get().to_string(),
                timestamp: r.timestamp,
            });
        }
    }
    out
}

/// Asserts that every product's `previousPrice` chain in `records` is exact.
pub fn assert_chains(records: &[Record]) {
    let mut last: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for r in records {
        assert_eq!(r.previous_price.as_deref(), last.get(r.product_id.as_str()).copied(), "chain broken at {r:?}");
        last.insert(&r.product_id, &r.new_price);
    }
}

/// Runs `repricer verify --json` on `data_dir`; returns (success, output).
pub fn verify(data_dir: &Path) -> (bool, serde_json::Value) {
    let out = Command::new(binary()).args(["verify", "--json", "--data-dir"]).arg(data_dir).output().expect("run verify");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), v)
}

impl Service {
    /// GET `{api}{path_and_query}` (e.g. a `Link` header target such as `/api/query?...`).
    pub fn get_path(&self, path_and_query: &str) -> Response {
        self.http.get(format!("{}{path_and_query}", self.api)).send().expect("GET")
    }
}

/// Asserts `resp` has status `status` and a JSON body `{"error": "<non-empty text>"}`;
/// returns the error text.
pub fn expect_json_error(resp: Response, status: u16) -> String {
    let got = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = resp.text().expect("error body");
    assert_eq!(got, status, "status (body {text:?})");
    assert!(ctype.starts_with("application/json"), "content-type {ctype:?} of error {text:?}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body {text:?} is not JSON: {e}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("error body {text:?} is not an object"));
    assert_eq!(obj.len(), 1, "error body {text:?} must hold only \"error\"");
    let msg = obj.get("error").and_then(|m| m.as_str()).unwrap_or_else(|| panic!("error body {text:?} has no string \"error\""));
    assert!(!msg.trim().is_empty(), "empty error message");
    msg.to_string()
}

// ---- process and load helpers (lifecycle, config, crash, storage-fault tests) ----

/// How a process that was expected to exit ended.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Exited {
    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

/// Runs `repricer` with exactly `args` (and `envs`, no OTLP endpoint unless given) and waits
/// up to `limit` for it to exit; panics (after killing it) if it is still running then.
pub fn run_to_exit(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Exited {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn repricer");
    let mut readers = Vec::new();
    for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        readers.push(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stream).read_to_string(&mut s);
            s
        }));
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            panic!("repricer {args:?} still running after {limit:?}; stdout:\n{}\nstderr:\n{}", out[0], out[1]);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = readers.into_iter().map(|r| r.join().unwrap());
    Exited { status, stdout: out.next().unwrap(), stderr: out.next().unwrap() }
}

use std::io::Read as _;

impl Service {
    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Status of GET `{admin}{path}`, or `None` if the admin port does not answer.
    pub fn admin_status(&self, path: &str) -> Option<u16> {
        self.http.get(format!("{}{path}", self.admin)).timeout(Duration::from_secs(5)).send().ok().map(|r| r.status().as_u16())
    }

    /// The last durable price of `product_id` as its exact literal, `None` on 404.
    pub fn price_of(&self, product_id: &str) -> Option<String> {
        let resp = self.get_price(product_id);
        match resp.status().as_u16() {
            404 => None,
            200 => {
                let text = resp.text().unwrap();
                #[derive(Deserialize)]
                struct Body<'a> {
                    #[serde(borrow)]
                    price: &'a RawValue,
                }
                let body: Body<'_> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("price body {text:?}: {e}"));
                Some(body.price.get().to_string())
            }
            other => panic!("GET price of {product_id:?}: status {other}"),
        }
    }
}

/// What a [`Load`] did: every reprice sent and the ones answered 202, as (productId, price).
#[derive(Debug, Default, Clone)]
pub struct LoadOutcome {
    /// Every reprice attempted (whatever the outcome).
    pub sent: Vec<(String, String)>,
    /// The reprices answered `202`.
    pub acked: Vec<(String, String)>,
    /// Count of answers by status (0 = no answer: connection error or timeout).
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

impl LoadOutcome {
    /// Merges another outcome into this one.
    pub fn extend(&mut self, other: LoadOutcome) {
        self.sent.extend(other.sent);
        self.acked.extend(other.acked);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }
}

/// Threads posting reprices to one API until stopped. Every price is unique (a random integer
/// part and a process-wide counter in the fraction), so (productId, price) names one request.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<LoadOutcome>>,
    /// Number of 202s so far, across threads.
    pub acked: Arc<std::sync::atomic::AtomicU64>,
}

static PRICE_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh unique price literal such as `4711.000000123`.
pub fn unique_price() -> String {
    use rand::Rng as _;
    let n = PRICE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.{n:09}", rand::rng().random_range(1..100_000u32))
}

impl Load {
    /// Starts `threads` threads posting to `api` for products `{prefix}0 .. {prefix}{products-1}`.
    /// A connection error makes a thread pause 5 ms and go on (the process may be gone).
    pub fn start(api: &str, threads: usize, products: usize, prefix: &str) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, acked, api, prefix) = (Arc::clone(&stop), Arc::clone(&acked), api.to_string(), prefix.to_string());
                std::thread::spawn(move || {
                    use rand::Rng as _;
                    let http = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                    let mut out = LoadOutcome::default();
                    while !stop.load(Ordering::Relaxed) {
                        let product = format!("{prefix}{}", rand::rng().random_range(0..products));
                        let price = unique_price();
                        let body = format!("{{\"productId\":\"{product}\",\"price\":{price}}}");
                        out.sent.push((product.clone(), price.clone()));
                        let status = match http
                            .post(format!("{api}/api/reprice"))
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                        {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        };
                        *out.statuses.entry(status).or_default() += 1;
                        match status {
                            202 => {
                                out.acked.push((product, price));
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            0 => std::thread::sleep(Duration::from_millis(5)),
                            _ => {}
                        }
                    }
                    out
                })
            })
            .collect();
        Load { stop, threads, acked }
    }

    /// Blocks until at least `n` reprices were acknowledged (panics after 60 s).
    pub fn wait_acked(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "fewer than {n} reprices acknowledged in 60 s");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the threads and returns what they did.
    pub fn finish(self) -> LoadOutcome {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadOutcome::default();
        for t in self.threads {
            total.extend(t.join().expect("load thread panicked"));
        }
        total
    }
}

/// Asserts that every acknowledged (productId, price) is in `records` exactly once and that no
/// reprice of `sent` is in `records` twice.
pub fn assert_acked_exactly_once(records: &[Record], acked: &[(String, String)], sent: &[(String, String)]) {
    use std::collections::{HashMap, HashSet};
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for r in records {
        *seen.entry((r.product_id.as_str(), r.new_price.as_str())).or_default() += 1;
    }
    let sent: HashSet<(&str, &str)> = sent.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    for (key, n) in &seen {
        assert!(*n == 1 || !sent.contains(key), "{key:?} is in results/ {n} times");
    }
    let mut missing = Vec::new();
    for (p, v) in acked {
        match seen.get(&(p.as_str(), v.as_str())) {
            Some(1) => {}
            Some(n) => panic!("acknowledged ({p}, {v}) is in results/ {n} times"),
            None => missing.push((p.clone(), v.clone())),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged reprices are missing from results/ (first: {:?})",
        missing.len(),
        acked.len(),
        missing.first()
    );
}

/// Asserts that every record is one of the reprices `sent` (nothing invented).
pub fn assert_records_from(records: &[Record], sent: &[(String, String)]) {
    let sent: std::collections::HashSet<(&str, &str)> = sent.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    for r in records {
        assert!(sent.contains(&(r.product_id.as_str(), r.new_price.as_str())), "record {r:?} was never sent");
    }
}

/// The API's socket address (for raw TCP clients).
pub fn api_addr(svc: &Service) -> std::net::SocketAddr {
    svc.api.strip_prefix("http://").unwrap().parse().unwrap()
}

/// A reader that sends a `pagesize=rows` query on a connection with tiny buffers and reads only
/// the status line: the service cannot finish writing the page, so the request keeps its
/// admission slot until the stream is dropped. Returns the stream and the status line.
pub fn stalled_reader(addr: std::net::SocketAddr, rows: usize) -> (std::net::TcpStream, String) {
    use std::io::Write as _;
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_tcp_mss(536).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!("GET /api/query?pagesize={rows} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        std::io::Read::read_exact(&mut stream, &mut byte).expect("status line");
        line.push(byte[0]);
    }
    (stream, String::from_utf8(line).unwrap().trim_end().to_string())
}
