//! The sequenced price event: the unit the Sequencer orders and the FileSegment stores.

use std::sync::Arc;

use crate::price::Price;
use crate::time::Nanos;

/// One accepted reprice, after the Sequencer gave it its place in the total order (R6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Gap-free sequence number, starting at 1.
    pub seq: u64,
    /// Strictly increasing UTC timestamp.
    pub timestamp: Nanos,
    /// Shared with the owning product's state, so a million products keep one copy of each id.
    pub product_id: Arc<str>,
    /// The new price.
    pub price: Price,
    /// The price of the previous event of the same product; `None` on its first event.
    pub previous_price: Option<Price>,
}
