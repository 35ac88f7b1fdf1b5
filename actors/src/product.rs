//! ProductActor: owns the last-known prices of one shard of products (R3, R6).
//!
//! One actor per product would cost a mailbox and a context per product (gigabytes at a
//! million products), so each ProductActor owns many products and the ProductRegistry routes
//! every id to the same one. Per-product order holds because one actor handles all updates of a
//! product and actix delivers its messages to the Sequencer in order.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use prometheus::IntGauge;
use tokio::sync::oneshot;

use crate::error::ActorError;
use crate::hop_span;
use crate::price::Price;
use crate::segment::writer::Ack;
use crate::sequencer::{Sequence, Sequencer};
use crate::telemetry::Traced;
use crate::time::Nanos;

/// Record a new observed price. Answered once the event is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reprice {
    /// The product.
    pub product_id: String,
    /// The exact price literal.
    pub price: Price,
    /// Gets the outcome.
    pub reply: oneshot::Sender<Result<Ack, ActorError>>,
}

/// Read a product's last durable price.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GetPrice {
    /// The product.
    pub product_id: String,
    /// Gets the price, or `None` for an unknown product.
    pub reply: oneshot::Sender<Option<LastPrice>>,
}

/// A map keyed by product id, with a fast seeded hash (it is looked up on every event).
pub type ProductMap<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

/// A product's last durable price and when it was sequenced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastPrice {
    /// The price literal.
    pub price: Price,
    /// Its event's timestamp.
    pub timestamp: Nanos,
    /// Its event's sequence number.
    pub seq: u64,
}

struct ProductState {
    /// Price of the last event sent to the Sequencer: the next event's `previousPrice`.
    assigned: Option<Price>,
    /// What reads return: only ever a durable price.
    durable: Option<LastPrice>,
}

/// The actor owning one shard of products.
pub struct ProductActor {
    products: ProductMap<ProductState>,
    sequencer: Addr<Sequencer>,
    sequencer_depth: IntGauge,
    mailbox_capacity: usize,
}

impl ProductActor {
    /// A shard restored with `prices` from disk.
    pub fn new(prices: Vec<(Arc<str>, LastPrice)>, sequencer: Addr<Sequencer>, sequencer_depth: IntGauge, mailbox_capacity: usize) -> ProductActor {
        let products: ProductMap<ProductState> = prices
            .into_iter()
            .map(|(id, last)| (id, ProductState { assigned: Some(last.price.clone()), durable: Some(last) }))
            .collect();
        ProductActor { products, sequencer, sequencer_depth, mailbox_capacity }
    }
}

impl Actor for ProductActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Traced<Reprice>> for ProductActor {
    type Result = ();

    fn handle(&mut self, traced: Traced<Reprice>, ctx: &mut Self::Context) {
        let span = hop_span!(traced, "ProductActor handle Reprice", product.id = %traced.msg.product_id);
        let _entered = span.enter();
        let Reprice { product_id, price, reply } = traced.msg;
        let key = match self.products.get_key_value(product_id.as_str()) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(product_id),
        };
        let state = self.products.entry(Arc::clone(&key)).or_insert(ProductState { assigned: None, durable: None });
        let previous = state.assigned.replace(price.clone());
        let (tx, rx) = oneshot::channel();
        let sequence = Sequence { product_id: Arc::clone(&key), price: price.clone(), previous_price: previous.clone(), reply: tx };
        if self.sequencer.try_send(Traced::new(sequence, &self.sequencer_depth)).is_err() {
            state.assigned = previous;
            if state.assigned.is_none() {
                self.products.remove(&key);
            }
            let _ = reply.send(Err(ActorError::Overloaded));
            return;
        }
        let fut = async move { rx.await.unwrap_or(Err(ActorError::ShuttingDown)) };
        ctx.spawn(fut.into_actor(self).map(move |outcome, act, _| {
            if let (Ok(ack), Some(state)) = (&outcome, act.products.get_mut(&key)) {
                if state.durable.as_ref().is_none_or(|d| d.seq < ack.seq) {
                    state.durable = Some(LastPrice { price, timestamp: ack.timestamp, seq: ack.seq });
                }
            }
            let _ = reply.send(outcome);
        }));
    }
}

impl Handler<Traced<GetPrice>> for ProductActor {
    type Result = ();

    fn handle(&mut self, traced: Traced<GetPrice>, _: &mut Self::Context) {
        let _span = hop_span!(traced, "ProductActor handle GetPrice", product.id = %traced.msg.product_id).entered();
        let last = self.products.get(traced.msg.product_id.as_str()).and_then(|s| s.durable.clone());
        let _ = traced.msg.reply.send(last);
    }
}
