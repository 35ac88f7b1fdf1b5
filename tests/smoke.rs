//! The service starts, takes a reprice and reads it back.

mod common;

use common::{read_records, temp_dir, Service};

#[test]
fn reprice_then_read_back() {
    let dir = temp_dir();
    let svc = Service::start(dir.path());
    assert_eq!(svc.reprice("p-1", "19.990"), 202);
    let got: serde_json::Value = svc.get_price("p-1").json().unwrap();
    assert_eq!(got["productId"], "p-1");
    assert!(svc.terminate().success());
    let records = read_records(dir.path());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].new_price, "19.990");
}
