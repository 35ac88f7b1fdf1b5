//! Edges of the HTTP layer: wrong methods, unknown paths and stalled bodies all get a JSON error
//! with the right status; nothing is written for them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{read_records, temp_dir, Service};

fn json_error(resp: reqwest::blocking::Response) -> (u16, Option<String>, String) {
    let status = resp.status().as_u16();
    let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = resp.json().expect("a JSON error body");
    (status, allow, body["error"].as_str().expect("an error string").to_string())
}

#[test]
fn wrong_methods_get_405_with_allow_and_unknown_paths_a_json_404() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    let cases = [
        (reqwest::Method::GET, "/api/reprice", "POST"),
        (reqwest::Method::PUT, "/api/reprice", "POST"),
        (reqwest::Method::DELETE, "/api/reprice", "POST"),
        (reqwest::Method::POST, "/api/product/x/price", "GET, HEAD"),
        (reqwest::Method::POST, "/api/query", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let resp = svc.http.request(method.clone(), format!("{}{path}", svc.api)).send().unwrap();
        let (status, allowed, error) = json_error(resp);
        assert_eq!((status, allowed.as_deref()), (405, Some(allow)), "{method} {path}: {error}");
        assert!(error.contains(method.as_str()), "{error}");
    }
    for path in ["/", "/api", "/api/products/x/price", "/api/product//price"] {
        let (status, _, error) = json_error(svc.http.get(format!("{}{path}", svc.api)).send().unwrap());
        assert_eq!(status, 404, "{path}: {error}");
    }
    // The admin port answers the same way.
    for path in ["/metrics", "/healthz/live", "/healthz/ready"] {
        let resp = svc.http.post(format!("{}{path}", svc.admin)).send().unwrap();
        let (status, allowed, error) = json_error(resp);
        assert_eq!((status, allowed.as_deref()), (405, Some("GET, HEAD")), "POST {path} on the admin port: {error}");
    }
    for path in ["/", "/nope", "/healthz", "/healthz/ready/"] {
        let (status, _, error) = json_error(svc.http.get(format!("{}{path}", svc.admin)).send().unwrap());
        assert_eq!(status, 404, "{path} on the admin port: {error}");
    }
    assert!(svc.terminate().success());
    assert!(read_records(dir.path()).is_empty());
}

/// HEAD is answered wherever GET is: the same status and headers, no body.
#[test]
fn head_is_served_wherever_get_is() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    assert_eq!(svc.reprice("head-1", "19.990"), 202);
    let urls = [
        format!("{}/api/product/head-1/price", svc.api),
        format!("{}/api/product/unknown/price", svc.api),
        format!("{}/api/query?productId=head-1", svc.api),
        format!("{}/api/query?pageNumber=0", svc.api),
        format!("{}/metrics", svc.admin),
        format!("{}/healthz/live", svc.admin),
        format!("{}/healthz/ready", svc.admin),
    ];
    for url in urls {
        let get = svc.http.get(&url).send().unwrap();
        let head = svc.http.head(&url).send().unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {url}");
        for name in ["content-type", "x-total-count", "link"] {
            assert_eq!(head.headers().get(name), get.headers().get(name), "{name} of HEAD {url}");
        }
        assert!(!get.bytes().unwrap().is_empty(), "GET {url} has a body");
        assert!(head.bytes().unwrap().is_empty(), "HEAD {url} has no body");
    }
    assert!(svc.terminate().success());
}

#[test]
fn a_body_that_stops_arriving_gets_408_and_writes_nothing() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    let addr = svc.api.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"POST /api/reprice HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"productId\":")
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("\"error\"") {
        let n = stream.read(&mut buf).expect("an answer before the read timeout");
        assert!(n > 0, "connection closed without an answer");
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(9), "answered after {:?}", started.elapsed());
    assert_eq!(svc.reprice("after", "1.5"), 202, "the service still takes writes");
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].product_id, "after");
}
