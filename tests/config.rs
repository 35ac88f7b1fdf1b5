//! Configuration (R13): bad settings fail at start with one clear line on stderr and exit
//! code 2; `--help` documents every `REPRICER_*` variable; a data directory serves one process.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::{run_to_exit, temp_dir, Exited, Service};

const LIMIT: Duration = Duration::from_secs(30);

/// `repricer serve` on `data_dir` with ephemeral ports unless `args` name their own.
fn serve(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Exited {
    let dir = data_dir.to_str().unwrap();
    let mut all = vec!["serve", "--data-dir", dir];
    // A flag wins over its variable: leave out the ephemeral default when either names one.
    let given = |flag: &str, var: &str| args.contains(&flag) || envs.iter().any(|(k, _)| *k == var);
    if !given("--listen", "REPRICER_LISTEN") {
        all.extend(["--listen", "127.0.0.1:0"]);
    }
    if !given("--admin-listen", "REPRICER_ADMIN_LISTEN") {
        all.extend(["--admin-listen", "127.0.0.1:0"]);
    }
    all.extend(args);
    run_to_exit(&all, envs, LIMIT)
}

/// Asserts exit code 2 and exactly one non-empty stderr line containing every one of `needles`
/// (compared case-insensitively); returns that line.
fn assert_fails_clearly(what: &str, out: &Exited, needles: &[&str]) -> String {
    assert_eq!(out.status.code(), Some(2), "{what}: exit status {} (stderr {:?})", out.status, out.stderr);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{what}: stderr must be one line, got {:?}", out.stderr);
    let line = lines[0].to_string();
    let lower = line.to_lowercase();
    for needle in needles {
        assert!(lower.contains(&needle.to_lowercase()), "{what}: {line:?} does not mention {needle:?}");
    }
    assert!(line.len() < 400, "{what}: one clear line, not {} characters: {line:?}", line.len());
    line
}

#[test]
fn window_out_of_range() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let out = serve(&data, &["--window", "5s"], &[]);
    assert_fails_clearly("--window 5s", &out, &["--window", "5s"]);
    assert!(!data.exists(), "a rejected configuration must not touch the data directory");
    let out = serve(&data, &[], &[("REPRICER_WINDOW", "1ms")]);
    assert_fails_clearly("REPRICER_WINDOW=1ms", &out, &["window"]);
    let out = serve(&data, &["--window", "soon"], &[]);
    assert_fails_clearly("--window soon", &out, &["window", "soon"]);
}

#[test]
fn zero_admission_limits() {
    let dir = temp_dir();
    let out = serve(dir.path(), &["--product-max-inflight", "0"], &[]);
    assert_fails_clearly("--product-max-inflight 0", &out, &["product-max-inflight"]);
    let out = serve(dir.path(), &[], &[("REPRICER_QUERY_MAX_INFLIGHT", "0")]);
    let line = assert_fails_clearly("REPRICER_QUERY_MAX_INFLIGHT=0", &out, &[]);
    let normalized = line.to_lowercase().replace('_', "-");
    assert!(normalized.contains("query-max-inflight"), "{line:?} does not name the setting");
    let out = serve(dir.path(), &["--product-max-inflight=-3"], &[]);
    assert_fails_clearly("--product-max-inflight=-3", &out, &["product-max-inflight"]);
}

#[test]
fn listen_address_not_an_address() {
    let dir = temp_dir();
    let out = serve(dir.path(), &["--listen", "not-an-address"], &[]);
    assert_fails_clearly("--listen not-an-address", &out, &["--listen", "not-an-address"]);
    let out = serve(dir.path(), &[], &[("REPRICER_ADMIN_LISTEN", "localhost")]);
    assert_fails_clearly("REPRICER_ADMIN_LISTEN=localhost", &out, &["admin", "localhost"]);
}

#[test]
fn data_dir_is_a_regular_file() {
    let dir = temp_dir();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let out = serve(&file, &[], &[]);
    assert_fails_clearly("--data-dir <regular file>", &out, &[file.to_str().unwrap()]);
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "the file is left alone");
}

#[test]
fn listen_port_already_in_use() {
    let dir = temp_dir();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = serve(dir.path(), &["--listen", &addr], &[]);
    assert_fails_clearly("--listen <port in use>", &out, &[&addr]);
    let out = serve(dir.path(), &["--admin-listen", &addr], &[]);
    assert_fails_clearly("--admin-listen <port in use>", &out, &[&addr]);
    drop(taken);
}

#[test]
fn bogus_otlp_protocol() {
    let dir = temp_dir();
    let out = serve(
        dir.path(),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "bogus")],
    );
    assert_fails_clearly("OTEL_EXPORTER_OTLP_PROTOCOL=bogus", &out, &["OTEL_EXPORTER_OTLP_PROTOCOL", "bogus"]);
}

#[test]
fn bogus_sampler_settings() {
    for (sampler, arg, needles) in [
        ("sometimes", None, ["OTEL_TRACES_SAMPLER", "sometimes"]),
        ("traceidratio", Some("1.5"), ["OTEL_TRACES_SAMPLER_ARG", "1.5"]),
        ("parentbased_traceidratio", Some("half"), ["OTEL_TRACES_SAMPLER_ARG", "half"]),
    ] {
        // With a collector configured and without one: a bad setting is caught either way.
        for endpoint in [Some("http://127.0.0.1:4318"), None] {
            let dir = temp_dir();
            let mut envs = vec![("OTEL_TRACES_SAMPLER", sampler)];
            envs.extend(endpoint.map(|e| ("OTEL_EXPORTER_OTLP_ENDPOINT", e)));
            envs.extend(arg.map(|a| ("OTEL_TRACES_SAMPLER_ARG", a)));
            let out = serve(dir.path(), &[], &envs);
            assert_fails_clearly(&format!("OTEL_TRACES_SAMPLER={sampler} ARG={arg:?} endpoint {endpoint:?}"), &out, &needles);
        }
    }
}

/// Every `REPRICER_*` variable named in src/config.rs.
fn variables_in_config_source() -> Vec<String> {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs")).unwrap();
    let mut vars: Vec<String> = source
        .match_indices("\"REPRICER_")
        .map(|(i, _)| {
            let rest = &source[i + 1..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect();
    vars.sort();
    vars.dedup();
    assert!(vars.len() >= 10, "found only {vars:?} in src/config.rs");
    for must in ["REPRICER_LISTEN", "REPRICER_ADMIN_LISTEN", "REPRICER_DATA_DIR", "REPRICER_WINDOW"] {
        assert!(vars.iter().any(|v| v == must), "{must} missing from src/config.rs");
    }
    vars
}

#[test]
fn help_documents_every_variable() {
    let vars = variables_in_config_source();
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let out = run_to_exit(args, &[], LIMIT);
        assert!(out.status.success(), "repricer {args:?}: {}", out.status);
        let missing: Vec<&String> = vars.iter().filter(|v| !out.stdout.contains(v.as_str())).collect();
        assert!(missing.is_empty(), "repricer {} does not mention {missing:?}:\n{}", args.join(" "), out.stdout);
    }
    let out = run_to_exit(&["verify", "--help"], &[], LIMIT);
    assert!(out.status.success());
    assert!(out.stdout.contains("REPRICER_DATA_DIR"), "verify --help:\n{}", out.stdout);
}

#[test]
fn second_service_on_the_same_data_dir_fails_on_the_lock() {
    let dir = temp_dir();
    let first = Service::start(dir.path());
    assert_eq!(first.reprice("lock-1", "1.5"), 202);
    let out = serve(dir.path(), &[], &[]);
    let line = assert_fails_clearly("second service on the same data dir", &out, &[dir.path().to_str().unwrap()]);
    let lower = line.to_lowercase();
    assert!(lower.contains("lock") || lower.contains("in use"), "{line:?} does not say the directory is locked");
    // The first one is unharmed.
    assert_eq!(first.reprice("lock-1", "2.5"), 202);
    assert_eq!(first.price_of("lock-1").as_deref(), Some("2.5"));
    assert!(first.terminate().success());
    assert!(common::verify(dir.path()).0);
}

#[test]
fn too_many_http_workers() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let out = serve(&data, &["--http-workers", "513"], &[]);
    assert_fails_clearly("--http-workers 513", &out, &["--http-workers", "512"]);
    assert!(!data.exists(), "a rejected configuration must not touch the data directory");
}
