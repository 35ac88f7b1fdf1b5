//! ProductRegistry: routes every product id to the ProductActor that owns it.
//!
//! Routing is a stable hash of the id, so the same product always reaches the same actor and
//! its updates stay in order. The registry never waits: a full shard mailbox is answered with
//! `Overloaded` at once (the caller turns it into a 503).

use std::hash::BuildHasher;

use actix::dev::SendError;
use actix::prelude::*;
use prometheus::IntGauge;

use crate::error::ActorError;
use crate::hop_span;
use crate::product::{GetPrice, ProductActor, Reprice};
use crate::telemetry::Traced;

/// The registry actor, holding the address of every shard.
pub struct ProductRegistry {
    shards: Vec<Addr<ProductActor>>,
    shard_depth: IntGauge,
    mailbox_capacity: usize,
}

/// Which of `shards` shards owns `product_id`.
pub fn shard_of(product_id: &str, shards: usize) -> usize {
    (foldhash::fast::FixedState::with_seed(0x7265_7072_6963_6572).hash_one(product_id) % shards as u64) as usize
}

impl ProductRegistry {
    /// A registry over started shards.
    pub fn new(shards: Vec<Addr<ProductActor>>, shard_depth: IntGauge, mailbox_capacity: usize) -> ProductRegistry {
        assert!(!shards.is_empty(), "at least one product shard");
        ProductRegistry { shards, shard_depth, mailbox_capacity }
    }

    fn shard(&self, product_id: &str) -> &Addr<ProductActor> {
        &self.shards[shard_of(product_id, self.shards.len())]
    }
}

impl Actor for ProductRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Traced<Reprice>> for ProductRegistry {
    type Result = ();

    fn handle(&mut self, traced: Traced<Reprice>, _: &mut Self::Context) {
        let span = hop_span!(traced, "ProductRegistry route Reprice");
        let _entered = span.enter();
        let forwarded = Traced::new(traced.msg, &self.shard_depth);
        if let Err(SendError::Full(m) | SendError::Closed(m)) = self.shard(&forwarded.msg.product_id).try_send(forwarded) {
            let _ = m.msg.reply.send(Err(ActorError::Overloaded));
        }
    }
}

impl Handler<Traced<GetPrice>> for ProductRegistry {
    type Result = ();

    fn handle(&mut self, traced: Traced<GetPrice>, _: &mut Self::Context) {
        let span = hop_span!(traced, "ProductRegistry route GetPrice");
        let _entered = span.enter();
        let forwarded = Traced::new(traced.msg, &self.shard_depth);
        // A dropped reply tells the caller the read could not be queued.
        let _ = self.shard(&forwarded.msg.product_id).try_send(forwarded);
    }
}
