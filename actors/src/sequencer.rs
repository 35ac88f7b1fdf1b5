//! Sequencer: the one actor that gives every event its place in the total order (R6).
//!
//! Sequence number and timestamp are assigned synchronously inside `handle`, so the order of
//! handling is the order of the log. The Sequencer also decides window boundaries: it tells the
//! FileSegment to seal a window when time moves past it, and afterwards never hands out a
//! timestamp inside a sealed window, so a file name is never reused, even when the wall clock
//! steps backwards or the process restarts within the same second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use prometheus::IntGauge;

use crate::error::ActorError;
use crate::event::Event;
use crate::health::Health;
use crate::hop_span;
use crate::metrics::Metrics;
use crate::price::Price;
use crate::segment::writer::Waiter;
use crate::segment::{Append, FileSegment, SealWindow};
use crate::telemetry::Traced;
use crate::time::{now_nanos, Nanos};

/// Give an event its sequence number and timestamp, then store it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sequence {
    /// The product (shared with the ProductActor's key).
    pub product_id: Arc<str>,
    /// The new price.
    pub price: Price,
    /// The product's previous price in sequence order.
    pub previous_price: Option<Price>,
    /// Released once the event is durable.
    pub reply: Waiter,
}

/// The timestamp rule of R6: strictly increasing, never inside a sealed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceClock {
    last: Nanos,
    floor: Nanos,
}

impl SequenceClock {
    /// A clock that continues after `last` and never goes below `floor`.
    pub fn new(last: Nanos, floor: Nanos) -> SequenceClock {
        SequenceClock { last, floor }
    }

    /// The timestamp for an event seen when the wall clock reads `now`.
    pub fn next(&mut self, now: Nanos) -> Nanos {
        let t = now.max(self.last + 1).max(self.floor);
        self.last = t;
        t
    }

    /// No timestamp before `floor` from now on (a window ending there was sealed).
    pub fn raise_floor(&mut self, floor: Nanos) {
        self.floor = self.floor.max(floor);
    }
}

/// Where the Sequencer starts: restored from disk.
#[derive(Clone, Copy, Debug)]
pub struct SequenceStart {
    /// Next sequence number to assign.
    pub next_seq: u64,
    /// Timestamp of the last stored event (or 0).
    pub last_timestamp: Nanos,
    /// End of the last sealed window: new events start at or after it.
    pub floor: Nanos,
}

/// The Sequencer actor.
pub struct Sequencer {
    next_seq: u64,
    clock: SequenceClock,
    window_len: Nanos,
    open_window: Option<(Nanos, Instant)>,
    segment: Addr<FileSegment>,
    segment_depth: IntGauge,
    health: Arc<Health>,
    metrics: Metrics,
    mailbox_capacity: usize,
}

impl Sequencer {
    /// A Sequencer continuing from `start`, rolling windows of `window`.
    pub fn new(
        start: SequenceStart,
        window: Duration,
        segment: Addr<FileSegment>,
        health: Arc<Health>,
        metrics: Metrics,
        mailbox_capacity: usize,
    ) -> Sequencer {
        Sequencer {
            next_seq: start.next_seq,
            clock: SequenceClock::new(start.last_timestamp, start.floor),
            window_len: window.as_nanos() as Nanos,
            open_window: None,
            segment,
            segment_depth: metrics.depth("FileSegment"),
            health,
            metrics,
            mailbox_capacity,
        }
    }

    fn seal_open_window(&mut self) {
        if let Some((start, _)) = self.open_window.take() {
            self.segment.do_send(Traced::new(SealWindow { window_start: start }, &self.segment_depth));
            self.clock.raise_floor(start + self.window_len);
        }
    }

    /// Seals the open window once the clock passed its end, or once it has been open a window
    /// and a half by the monotonic clock (the wall clock may have stepped back).
    fn seal_if_due(&mut self) {
        if let Some((start, opened)) = self.open_window {
            let elapsed = opened.elapsed().as_nanos() as Nanos;
            if now_nanos() >= start + self.window_len || elapsed >= self.window_len + self.window_len / 2 {
                self.seal_open_window();
            }
        }
    }
}

impl Actor for Sequencer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        let tick = Duration::from_nanos((self.window_len / 10).clamp(1_000_000, 100_000_000) as u64);
        ctx.run_interval(tick, |act, _| act.seal_if_due());
    }
}

impl Handler<Traced<Sequence>> for Sequencer {
    type Result = ();

    fn handle(&mut self, traced: Traced<Sequence>, _: &mut Self::Context) {
        let span = hop_span!(traced, "Sequencer handle Sequence", event.seq = tracing::field::Empty);
        let _entered = span.enter();
        let Sequence { product_id, price, previous_price, reply } = traced.msg;
        if self.health.storage_failed() {
            let _ = reply.send(Err(ActorError::StorageUnavailable));
            return;
        }
        let timestamp = self.clock.next(now_nanos());
        let window_start = timestamp - timestamp.rem_euclid(self.window_len);
        if self.open_window.is_some_and(|(w, _)| w != window_start) {
            self.seal_open_window();
        }
        if self.open_window.is_none() {
            self.open_window = Some((window_start, Instant::now()));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        span.record("event.seq", seq as i64);
        self.metrics.events_sequenced.inc();
        let event = Event { seq, timestamp, product_id, price, previous_price };
        self.segment.do_send(Traced::new(Append { event, window_start, waiter: reply }, &self.segment_depth));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_increase_when_the_clock_steps_back() {
        let mut clock = SequenceClock::new(0, 0);
        assert_eq!(clock.next(1_000), 1_000);
        assert_eq!(clock.next(500), 1_001);
        assert_eq!(clock.next(1_001), 1_002);
        assert_eq!(clock.next(5_000), 5_000);
    }

    #[test]
    fn never_stamps_inside_a_sealed_window() {
        let mut clock = SequenceClock::new(1_500, 2_000);
        assert_eq!(clock.next(1_600), 2_000);
        clock.raise_floor(3_000);
        assert_eq!(clock.next(2_100), 3_000);
        clock.raise_floor(1_000);
        assert_eq!(clock.next(2_100), 3_001);
    }
}
