//! Carrying a request's span across actor hops (R11).
//!
//! The actix mailbox does not carry the sender's span, so every message travels in a
//! [`Traced`] envelope holding the span current at the send site and the time it was queued.
//! The handler opens its own span as a child of it, named after actor and message, with the
//! mailbox wait as an attribute.

use std::time::Instant;

use actix::Message;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use prometheus::IntGauge;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A message plus the span of the request that caused it.
pub struct Traced<M> {
    /// The message itself.
    pub msg: M,
    /// The sender's span: the parent of the handler's span.
    pub span: Span,
    /// When it was queued, to show the mailbox wait.
    pub enqueued_at: Instant,
    _queued: QueueSlot,
}

/// Counts a message in its receiver's mailbox-depth gauge from send until it is handled (or
/// dropped because the mailbox was full).
struct QueueSlot(IntGauge);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<M> Traced<M> {
    /// Wraps `msg` with the current span, counted in `depth` (the receiver's mailbox gauge)
    /// until handled.
    pub fn new(msg: M, depth: &IntGauge) -> Traced<M> {
        depth.inc();
        Traced { msg, span: sampled(Span::current()), enqueued_at: Instant::now(), _queued: QueueSlot(depth.clone()) }
    }

    /// Microseconds the message waited in the mailbox (an `i64`: tracing-opentelemetry exports
    /// `u64` fields as strings, `i64` as integers).
    pub fn mailbox_wait_us(&self) -> i64 {
        self.enqueued_at.elapsed().as_micros() as i64
    }
}

impl<M: Message> Message for Traced<M> {
    type Result = M::Result;
}

/// `span` if it will be exported, else `Span::none()`: a request the sampler left out carries
/// no span, so its hops build none (at 10% sampling, nine requests in ten cost no tracing).
fn sampled(span: Span) -> Span {
    if span.is_disabled() || !span.context().span().span_context().is_sampled() {
        return Span::none();
    }
    span
}

/// Opens the handler span of a traced message: `$name` as child of the sender's span, or no
/// span when the sender's request is not traced.
#[macro_export]
macro_rules! hop_span {
    ($traced:expr, $name:literal $(, $($field:tt)*)?) => {
        if $traced.span.is_disabled() {
            tracing::Span::none()
        } else {
            tracing::info_span!(parent: &$traced.span, $name, mailbox.wait_us = $traced.mailbox_wait_us() $(, $($field)*)?)
        }
    };
}

/// Most links recorded on one batch span. The OpenTelemetry SDK's default of 128 would leave
/// most requests of a busy group commit or window seal unlinked; beyond this many the span's
/// count attribute (`events`, `records`) still says how many it served.
pub const MAX_LINKS: usize = 1024;

/// The OpenTelemetry identity of `span`, if it is exported: kept instead of the span itself
/// where holding the span would keep it open (and unexported) for too long.
pub fn span_context(span: &Span) -> Option<SpanContext> {
    if span.is_disabled() {
        return None;
    }
    Some(span.context().span().span_context().clone()).filter(SpanContext::is_valid)
}

/// Links a batch span (group commit, seal) to the request spans it served, known by their
/// [`span_context`].
pub fn link_contexts(batch: &Span, requests: &[SpanContext]) {
    if batch.is_disabled() {
        return;
    }
    for cx in requests.iter().take(MAX_LINKS) {
        batch.add_link(cx.clone());
    }
}
