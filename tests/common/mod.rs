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
            logs.lock().unwrap().iter().find_map(|l| l.split_once(what).map(|(_, addr)| format!("http://{}", addr.trim())))
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
