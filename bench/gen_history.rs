//! Writes a synthetic history straight into `DIR/results/` (valid segment files, exact chains)
//! so that start-up and query benchmarks can run against millions of events without waiting
//! for them to be posted.
//!
//! `gen-history DIR EVENTS PRODUCTS [EVENTS_PER_SEGMENT]`

use std::collections::HashMap;
use std::sync::Arc;

use repricer_actors::event::Event;
use repricer_actors::price::Price;
use repricer_actors::segment::format::{encode_segment, SegmentName};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: gen-history DIR EVENTS PRODUCTS [EVENTS_PER_SEGMENT]");
        std::process::exit(2);
    }
    let dir = std::path::Path::new(&args[1]).join("results");
    let events: u64 = args[2].parse().expect("EVENTS");
    let products: u64 = args[3].parse().expect("PRODUCTS");
    let per_segment: u64 = args.get(4).map_or(10_000, |s| s.parse().expect("EVENTS_PER_SEGMENT"));
    std::fs::create_dir_all(&dir).expect("create results/");
    let ids: Vec<Arc<str>> = (0..products).map(|i| Arc::from(format!("product-{i:07}"))).collect();
    let mut last: HashMap<u64, Price> = HashMap::new();
    let start_sec: i64 = 1_700_000_000;
    let mut seq = 1u64;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut window = 0i64;
    while seq <= events {
        let n = per_segment.min(events - seq + 1);
        let window_start = (start_sec + window) * 1_000_000_000;
        let step = 1_000_000_000 / (n as i64 + 1);
        let mut batch = Vec::with_capacity(n as usize);
        for k in 0..n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let p = rng % products;
            let price = Price::parse(&format!("{}.{:02}", 1 + rng % 1000, (rng >> 20) % 100)).expect("valid price");
            batch.push(Event {
                seq,
                timestamp: window_start + (k as i64 + 1) * step,
                product_id: Arc::clone(&ids[p as usize]),
                price: price.clone(),
                previous_price: last.insert(p, price),
            });
            seq += 1;
        }
        let name = SegmentName { window_start, first_seq: batch[0].seq, count: n as u32 };
        std::fs::write(dir.join(name.file_name()), encode_segment(&batch)).expect("write segment");
        window += 1;
    }
    println!("wrote {} events over {} products in {} segments to {}", events, products, window, dir.display());
}
